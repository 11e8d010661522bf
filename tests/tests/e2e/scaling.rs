//! Scaling the worker: more consumer actors, more processes, and CPU-heavy
//! tasks that do not stall the actors handling the rest.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use e2e_tests::{Platform, PlatformOptions};
use serde_json::{json, Value};

/// Queues `count` sleep tasks while no worker runs, then starts a worker with
/// `concurrency` actors each holding `prefetch` tasks, and returns how long it
/// took to finish them all.
async fn drain_time(
    platform: &Platform,
    count: usize,
    ms: u64,
    concurrency: usize,
    prefetch: u16,
) -> Duration {
    let mut ids = Vec::new();
    for _ in 0..count {
        let body = platform
            .post_task(json!({"type": "sleep", "payload": {"ms": ms}}))
            .await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(count as u64));
    let mut worker = platform
        .spawn_worker(&[
            ("WORKER_CONCURRENCY".into(), concurrency.to_string()),
            ("WORKER_PREFETCH".into(), prefetch.to_string()),
        ])
        .await;
    let started = Instant::now();
    for id in &ids {
        let task = platform.wait_for_task(id, Duration::from_secs(60)).await;
        assert_eq!(task["status"], "succeeded");
    }
    let elapsed = started.elapsed();
    worker.terminate();
    worker
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("worker stops");
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_consumer_actors_finish_sleep_tasks_at_least_four_times_faster_than_one() {
    let mut platform = Platform::start("throughput").await;
    // Only the workers started below consume.
    platform.worker.kill();

    // One task at a time per actor: the actors are the only concurrency.
    let one = drain_time(&platform, 24, 250, 1, 1).await;
    let eight = drain_time(&platform, 24, 250, 8, 1).await;
    assert!(
        one >= eight * 4,
        "24 x 250 ms: 1 actor {one:?}, 8 actors {eight:?} (expected at least 4x faster)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_actor_runs_the_tasks_it_prefetched_side_by_side() {
    let mut platform = Platform::start("prefetch").await;
    platform.worker.kill();
    // 24 x 250 ms one after another would take 6 s.
    let elapsed = drain_time(&platform, 24, 250, 1, 32).await;
    assert!(
        elapsed < Duration::from_secs(3),
        "24 x 250 ms with one actor holding 32: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_one_queue_without_duplicates() {
    let platform = Platform::start_with(
        "two-workers",
        PlatformOptions {
            worker_concurrency: 2,
            ..PlatformOptions::default()
        },
    )
    .await;
    let _second = platform.spawn_worker(&[]).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let body = platform
            .post_task(json!({"type": "sleep", "payload": {"ms": 100}}))
            .await;
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let task = platform.wait_for_task(id, Duration::from_secs(30)).await;
        assert_eq!(task["status"], "succeeded");
        assert_eq!(task["attempts"], 1);
    }
    let spans = platform
        .collector
        .spans_named(
            "worker-service",
            "process-task",
            ids.len(),
            Duration::from_secs(20),
        )
        .await;
    let mut per_task: HashMap<String, usize> = HashMap::new();
    let mut instances = HashSet::new();
    for span in &spans {
        *per_task
            .entry(span.attr("task.id").unwrap().to_string())
            .or_default() += 1;
        instances.insert(span.resource["service.instance.id"].clone());
    }
    assert_eq!(per_task.len(), ids.len(), "every task processed");
    assert!(
        per_task.values().all(|n| *n == 1),
        "duplicates: {per_task:?}"
    );
    assert_eq!(instances.len(), 2, "both worker processes took work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_tasks_keep_flowing_while_hash_tasks_run() {
    let platform = Platform::start_with(
        "hash-isolation",
        PlatformOptions {
            worker_concurrency: 4,
            ..PlatformOptions::default()
        },
    )
    .await;
    let mut hashes = Vec::new();
    for i in 0..2 {
        let body = platform
            .post_task(json!({"type": "hash", "payload": {"data": format!("block-{i}"), "rounds": 100000}}))
            .await;
        hashes.push(body);
    }
    let mut sleeps = Vec::new();
    for _ in 0..12 {
        sleeps.push(
            platform
                .post_task(json!({"type": "sleep", "payload": {"ms": 5}}))
                .await,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in hashes.iter().chain(&sleeps) {
        let done = platform
            .wait_for_task(task["id"].as_str().unwrap(), Duration::from_secs(60))
            .await;
        assert_eq!(done["status"], "succeeded");
    }

    // From the spans: while a hash was being computed, sleep tasks started
    // and finished on the same worker's actors.
    let execute = |task: &Value| {
        let trace_id = task["trace_id"].as_str().unwrap().to_string();
        let platform = &platform;
        async move {
            platform
                .collector
                .wait_for_trace(&trace_id, Duration::from_secs(20), |t| {
                    t.has("worker-service", "execute-task")
                })
                .await
                .find("worker-service", "execute-task")
                .clone()
        }
    };
    let mut hash_spans = Vec::new();
    for task in &hashes {
        hash_spans.push(execute(task).await);
    }
    let mut sleep_spans = Vec::new();
    for task in &sleeps {
        sleep_spans.push(execute(task).await);
    }
    let overlapped = sleep_spans
        .iter()
        .filter(|s| {
            hash_spans
                .iter()
                .any(|h| s.start_ns > h.start_ns && s.end_ns < h.end_ns)
        })
        .count();
    let longest_hash_ms = hash_spans
        .iter()
        .map(|h| (h.end_ns - h.start_ns) / 1_000_000)
        .max()
        .unwrap();
    assert!(
        overlapped >= 1,
        "no sleep task ran inside a hash task's execution ({longest_hash_ms} ms long)"
    );
}
