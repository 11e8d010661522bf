//! The end-to-end harness: runs the four service binaries as processes (the
//! way users run them) against the real RabbitMQ, each test in its own vhost,
//! with an in-process OTLP receiver, and turns the spans it received into a
//! trace that assertions can walk. [`in_process`] builds the HTTP services
//! inside the test process instead, for what needs no process boundary.
//!
//! The binaries are taken from the cargo target directory this test binary was
//! built into: build them first (`cargo build --workspace --bins`), which the
//! README's test command does.

pub mod broker;
pub mod collector;
pub mod database;
pub mod in_process;
pub mod platform;
pub mod prometheus;
pub mod repo;
pub mod trace;

pub use collector::{OtlpCollector, ReceivedSpan, SpanKind};
pub use database::{DbKind, PrivatePostgres, TestDatabase};
pub use platform::{Platform, PlatformOptions, Service, ServiceProcess};
pub use trace::Trace;

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// What a condition polled by [`eventually`] returns: `true`, `Some(value)`
/// or `Ok(value)` when it holds; `false`, `None` or `Err(what it saw)` while
/// it does not.
pub trait Condition {
    /// What [`eventually`] returns once the condition holds.
    type Value;
    /// The value, or what was seen instead (shown if time runs out).
    fn outcome(self) -> Result<Self::Value, Option<String>>;
}

impl Condition for bool {
    type Value = ();
    fn outcome(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Condition for Option<T> {
    type Value = T;
    fn outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Condition for Result<T, String> {
    type Value = T;
    fn outcome(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Polls `condition` until it holds, and returns its value, or `None` once
/// `timeout` has passed (with a last try at the deadline). Polls come 20 ms
/// apart at first, backing off to 250 ms.
pub async fn within<C, Fut>(timeout: Duration, condition: impl FnMut() -> Fut) -> Option<C::Value>
where
    C: Condition,
    Fut: Future<Output = C>,
{
    poll(timeout, condition).await.ok()
}

/// Polls `condition` (as [`within`] does) until it holds, and returns its
/// value; after `timeout` panics with `what` and what the condition last
/// saw. The one deadline loop of the tests (`what` may be [`Lazy`],
/// formatted only then).
pub async fn eventually<C, Fut>(
    timeout: Duration,
    what: impl std::fmt::Display,
    condition: impl FnMut() -> Fut,
) -> C::Value
where
    C: Condition,
    Fut: Future<Output = C>,
{
    match poll(timeout, condition).await {
        Ok(value) => value,
        Err(Some(seen)) => panic!("not within {timeout:?}: {what}\nlast seen: {seen}"),
        Err(None) => panic!("not within {timeout:?}: {what}"),
    }
}

/// The value once `condition` holds, or what it saw last at the deadline.
async fn poll<C, Fut>(
    timeout: Duration,
    mut condition: impl FnMut() -> Fut,
) -> Result<C::Value, Option<String>>
where
    C: Condition,
    Fut: Future<Output = C>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let last_try = Instant::now() >= deadline;
        match condition().await.outcome() {
            Ok(value) => return Ok(value),
            Err(seen) if last_try => return Err(seen),
            Err(_) => pause = back_off(pause).await,
        }
    }
}

const FIRST_PAUSE: Duration = Duration::from_millis(20);

/// Sleeps `pause`; the next one is twice as long, up to 250 ms.
async fn back_off(pause: Duration) -> Duration {
    tokio::time::sleep(pause).await;
    (pause * 2).min(Duration::from_millis(250))
}

/// A panic message formatted only when shown: `Lazy(|| format!(..))` reads
/// logs when [`eventually`] gives up, not on every poll.
pub struct Lazy<F>(pub F);

impl<F: Fn() -> String> std::fmt::Display for Lazy<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}
