//! SIGTERM and SIGINT: services stop taking work, finish what is in flight,
//! flush their spans and exit.
//!
//! These platforms export spans only once a minute (`OTEL_BSP_SCHEDULE_DELAY`),
//! so a span that reaches the collector got there through the flush at exit.

use std::time::{Duration, Instant};

use e2e_tests::{Platform, PlatformOptions, Service};
use serde_json::json;

fn flush_only_at_exit(
    worker_concurrency: usize,
    extra: &[(Service, &str, &str)],
) -> PlatformOptions {
    PlatformOptions {
        env: vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "60000".into())],
        service_env: extra
            .iter()
            .map(|(s, k, v)| (*s, k.to_string(), v.to_string()))
            .collect(),
        worker_concurrency,
        ..PlatformOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_worker_finishes_the_task_in_hand_starts_no_other_and_flushes_spans() {
    let mut platform = Platform::start_with("worker-sigterm", flush_only_at_exit(1, &[])).await;
    let first = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 1500}}))
        .await;
    let id = first["id"].as_str().unwrap().to_string();
    platform.wait_until_processing(&id).await;

    platform.worker.terminate();
    // A task that arrives once the worker is draining is not started, even
    // though the consumer has room for it.
    e2e_tests::eventually(
        Duration::from_secs(5),
        e2e_tests::Lazy(|| format!("the worker logs the signal:\n{}", platform.worker.logs())),
        || std::future::ready(platform.worker.logs().contains("shutdown requested")),
    )
    .await;
    let second = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 10}}))
        .await;
    let status = platform
        .worker
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("worker exits after finishing its task");
    assert!(status.success(), "{status}\n{}", platform.worker.logs());

    let task = platform.wait_for_task(&id, Duration::from_secs(5)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"], json!({"slept_ms": 1500}));
    // The queued task was not started: it waits, unacknowledged work handed back.
    let waiting = platform.get_task(second["id"].as_str().unwrap()).await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(1));
    // Its spans were flushed on the way out.
    let trace = platform
        .collector
        .trace(first["trace_id"].as_str().unwrap());
    assert!(
        trace.has("worker-service", "process-task"),
        "{}",
        trace.render()
    );
    assert!(
        trace.has("worker-service", "execute-task"),
        "{}",
        trace.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_is_a_graceful_stop_too() {
    let mut platform = Platform::start_with("worker-sigint", flush_only_at_exit(1, &[])).await;
    let accepted = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 1000}}))
        .await;
    let id = accepted["id"].as_str().unwrap().to_string();
    platform.wait_until_processing(&id).await;
    platform.worker.interrupt();
    let status = platform
        .worker
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("worker exits");
    assert!(status.success(), "{status}");
    let task = platform.wait_for_task(&id, Duration::from_secs(5)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let trace = platform
        .collector
        .trace(accepted["trace_id"].as_str().unwrap());
    assert!(
        trace.has("worker-service", "process-task"),
        "{}",
        trace.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_backend_right_after_a_202_exits_promptly_and_exports_the_request_span() {
    let mut platform = Platform::start_with("backend-sigterm", flush_only_at_exit(2, &[])).await;
    let accepted = platform
        .post_task(json!({"type": "echo", "payload": {"n": 1}}))
        .await;
    let trace_id = accepted["trace_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    platform.backend.terminate();
    let status = platform
        .backend
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("backend exits within 10 s of SIGTERM");
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let trace = platform.collector.trace(&trace_id);
    let create = trace.find("backend-service", "create-task");
    assert_eq!(create.attr("task.id"), accepted["id"].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_outlasting_the_shutdown_timeout_is_left_unacknowledged_and_redelivered() {
    let mut platform = Platform::start_with(
        "worker-shutdown-timeout",
        flush_only_at_exit(1, &[(Service::Worker, "SHUTDOWN_TIMEOUT_MS", "300")]),
    )
    .await;
    let accepted = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 4000}}))
        .await;
    let id = accepted["id"].as_str().unwrap().to_string();
    platform.wait_until_processing(&id).await;
    let stopped_at = Instant::now();
    platform.worker.terminate();
    let status = platform
        .worker
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("worker gives up on the task and exits");
    assert!(status.success(), "{status}");
    assert!(
        stopped_at.elapsed() < Duration::from_millis(3500),
        "did not wait for the 4 s task: {:?}",
        stopped_at.elapsed()
    );
    assert!(platform.worker.logs().contains("did not finish in time"));

    // The broker kept the message: another worker completes it.
    let _replacement = platform.spawn_worker(&[]).await;
    let task = platform.wait_for_task(&id, Duration::from_secs(30)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"], json!({"slept_ms": 4000}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_the_service_at_once() {
    let mut platform = Platform::start_with("second-signal", flush_only_at_exit(1, &[])).await;
    let accepted = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 10000}}))
        .await;
    platform
        .wait_until_processing(accepted["id"].as_str().unwrap())
        .await;
    platform.worker.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    platform.worker.interrupt();
    let status = platform
        .worker
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("the second signal ends the worker without waiting for its task");
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The task was never acknowledged: it is still there for another worker.
    let _replacement = platform.spawn_worker(&[]).await;
    let task = platform
        .wait_for_task(accepted["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(task["status"], "succeeded");
}
