//! What the simulated users do, one goose transaction per scenario: each run
//! of a transaction is one iteration (one POST; one catalog read; one task
//! submitted and followed until done).
//!
//! In fixed-rate mode every iteration waits for its slot on a common schedule
//! (iteration `n` starts at `n / rate` seconds after the first), so the
//! schedule does not slow down when the platform does; an iteration that
//! starts late because every user was busy shows as a lower rate reached than
//! asked for. The schedule starts with the first iteration, not when the run
//! is set up: goose takes a moment to launch its users, and a schedule
//! already running would make that moment up in a burst.
//! End-to-end latencies run from the POST to the poll that saw `succeeded`.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use goose::prelude::*;
use serde_json::{json, Value};

use crate::cli::{Load, Options, Scenario};

/// Longest a task is followed before it counts as lost.
const FOLLOW_LIMIT: Duration = Duration::from_secs(60);

/// The run's shared state: the schedule and what the progress line and the
/// report read.
pub struct Run {
    /// When the first iteration started: the schedule's origin.
    first: OnceLock<Instant>,
    rate: Option<f64>,
    poll: Duration,
    follow_every: Option<u64>,
    /// Slots handed out (an iteration may still be waiting for its slot).
    slots: AtomicU64,
    /// Iterations started.
    pub iterations: AtomicU64,
    /// When the latest iteration started, in microseconds after the first.
    last_start_micros: AtomicU64,
    /// Iterations that ended in an error of any kind.
    pub failures: AtomicU64,
    /// End-to-end latencies (POST to `succeeded`), microseconds.
    pub e2e_micros: Mutex<Vec<u64>>,
    /// Tasks not done within [`FOLLOW_LIMIT`], or `failed`.
    pub unfinished: AtomicU64,
}

static RUN: OnceLock<Run> = OnceLock::new();

/// The run's state; [`start`] must have been called.
pub fn run() -> &'static Run {
    RUN.get_or_init(|| Run::new(None, Duration::from_millis(5), None))
}

impl Run {
    fn new(rate: Option<f64>, poll: Duration, follow_every: Option<u64>) -> Self {
        Self {
            first: OnceLock::new(),
            rate,
            poll,
            follow_every,
            slots: AtomicU64::new(0),
            iterations: AtomicU64::new(0),
            last_start_micros: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            e2e_micros: Mutex::new(Vec::new()),
            unfinished: AtomicU64::new(0),
        }
    }

    /// Time since the first iteration started (zero before).
    pub fn elapsed(&self) -> Duration {
        self.first.get().map_or(Duration::ZERO, Instant::elapsed)
    }

    /// How long iterations kept starting: from the first start to the latest.
    pub fn active(&self) -> Duration {
        Duration::from_micros(self.last_start_micros.load(Ordering::Relaxed))
    }

    /// Claims the next iteration and, in fixed-rate mode, waits for its slot;
    /// returns its number and when it was due.
    async fn next_iteration(&self) -> (u64, Instant) {
        let first = *self.first.get_or_init(Instant::now);
        let n = self.slots.fetch_add(1, Ordering::Relaxed);
        let due = match self.rate {
            Some(rate) => {
                let due = first + Duration::from_secs_f64(n as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        self.iterations.fetch_add(1, Ordering::Relaxed);
        let since_first = Instant::now().saturating_duration_since(first);
        self.last_start_micros
            .fetch_max(since_first.as_micros() as u64, Ordering::Relaxed);
        (n, due)
    }

    fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sets the run up and returns the goose scenario for `options`.
pub fn start(options: &Options) -> Result<goose::goose::Scenario, GooseError> {
    let rate = match options.load {
        Load::FixedRate { rate, .. } => Some(rate as f64),
        Load::Closed { .. } => None,
    };
    // Set once, before any user runs.
    let _ = RUN.set(Run::new(rate, options.poll, options.follow_every));
    let name = options.scenario.name();
    let scenario = goose::goose::Scenario::new(name);
    Ok(match options.scenario {
        Scenario::PostTasks => scenario.register_transaction(transaction!(post_task)),
        Scenario::Products => scenario.register_transaction(transaction!(read_catalog)),
        Scenario::Mixed => scenario.register_transaction(transaction!(browse_and_submit)),
        Scenario::E2e => scenario.register_transaction(transaction!(submit_and_follow)),
    })
}

async fn post_task(user: &mut GooseUser) -> TransactionResult {
    let (i, _) = run().next_iteration().await;
    let posted = Instant::now();
    let id = submit(user).await?;
    if let (Some(id), Some(every)) = (id, run().follow_every) {
        if i % every == 0 {
            follow(user, &id, posted).await?;
        }
    }
    Ok(())
}

async fn read_catalog(user: &mut GooseUser) -> TransactionResult {
    let (i, _) = run().next_iteration().await;
    // A mix of listings (all, by category, a later page) and single products.
    let (path, name) = match i % 4 {
        0 => ("/api/products".to_string(), "GET /api/products"),
        1 => (
            format!(
                "/api/products?category={}&limit=5",
                CATEGORIES[(i / 4) as usize % CATEGORIES.len()]
            ),
            "GET /api/products?category",
        ),
        2 => (
            "/api/products?offset=10&limit=10".to_string(),
            "GET /api/products?offset",
        ),
        _ => (
            format!("/api/products/{}", 1 + i % 24),
            "GET /api/products/{id}",
        ),
    };
    let response = user.get_named(&path, name).await?;
    if !response
        .response
        .as_ref()
        .is_ok_and(|r| r.status().is_success())
    {
        run().failed();
    }
    Ok(())
}

const CATEGORIES: [&str; 5] = ["electronics", "books", "home", "sports", "grocery"];

async fn browse_and_submit(user: &mut GooseUser) -> TransactionResult {
    let (i, _) = run().next_iteration().await;
    let category = CATEGORIES[i as usize % CATEGORIES.len()];
    let _ = user
        .get_named(
            &format!("/api/products?category={category}&limit=5"),
            "GET /api/products?category",
        )
        .await?;
    let _ = user
        .get_named(
            &format!("/api/products/{}", 1 + i % 24),
            "GET /api/products/{id}",
        )
        .await?;
    let posted = Instant::now();
    if let Some(id) = submit(user).await? {
        follow(user, &id, posted).await?;
    }
    Ok(())
}

async fn submit_and_follow(user: &mut GooseUser) -> TransactionResult {
    run().next_iteration().await;
    let posted = Instant::now();
    if let Some(id) = submit(user).await? {
        follow(user, &id, posted).await?;
    }
    Ok(())
}

/// `POST /api/tasks` (echo); the task id if it was accepted.
async fn submit(user: &mut GooseUser) -> Result<Option<String>, Box<TransactionError>> {
    let task = json!({"type": "echo", "payload": {"from": "loadgen"}});
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/api/tasks")
        .name("POST /api/tasks")
        .set_request_builder(
            user.get_request_builder(&GooseMethod::Post, "/api/tasks")?
                .json(&task),
        )
        .build();
    let response = user.request(request).await?;
    match response.response {
        Ok(response) if response.status().as_u16() == 202 => {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match body["id"].as_str() {
                Some(id) => Ok(Some(id.to_string())),
                None => {
                    run().failed();
                    Ok(None)
                }
            }
        }
        _ => {
            run().failed();
            Ok(None)
        }
    }
}

/// Polls the task until it is done; records POST-to-`succeeded` from `posted`.
async fn follow(user: &mut GooseUser, id: &str, posted: Instant) -> TransactionResult {
    let path = format!("/api/tasks/{id}");
    loop {
        let response = user.get_named(&path, "GET /api/tasks/{id}").await?;
        let status = match response.response {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|body| body["status"].as_str().map(str::to_string)),
            _ => None,
        };
        match status.as_deref() {
            Some("succeeded") => {
                let micros = posted.elapsed().as_micros() as u64;
                if let Ok(mut latencies) = run().e2e_micros.lock() {
                    latencies.push(micros);
                }
                return Ok(());
            }
            Some("failed") => {
                run().unfinished.fetch_add(1, Ordering::Relaxed);
                run().failed();
                return Ok(());
            }
            _ => {}
        }
        if posted.elapsed() > FOLLOW_LIMIT {
            run().unfinished.fetch_add(1, Ordering::Relaxed);
            run().failed();
            return Ok(());
        }
        tokio::time::sleep(run().poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_first_iteration_does_not_start_with_a_burst_of_overdue_slots() {
        let run = Run::new(Some(100.0), Duration::from_millis(5), None);
        // Goose launching its users late.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let claimed = Instant::now();
        let (n, first_due) = run.next_iteration().await;
        assert_eq!(n, 0);
        assert!(
            first_due >= claimed,
            "the first slot was already overdue when it was claimed"
        );
        let (n, second_due) = run.next_iteration().await;
        assert_eq!(n, 1);
        assert_eq!(second_due - first_due, Duration::from_millis(10));
        assert!(
            Instant::now() >= second_due,
            "the second slot was not waited for"
        );
        assert_eq!(run.iterations.load(Ordering::Relaxed), 2);
        assert!(run.active() >= Duration::from_millis(10));
    }
}
