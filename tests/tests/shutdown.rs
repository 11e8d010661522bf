//! SIGTERM: services stop taking work, finish what is in flight, flush their
//! spans and exit.

use std::time::{Duration, Instant};

use e2e_tests::Platform;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_worker_lets_the_task_in_hand_finish_then_exits_with_spans_flushed() {
    let mut platform = Platform::start("worker-sigterm").await;
    let accepted = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 1500}}))
        .await;
    let id = accepted["id"].as_str().unwrap().to_string();
    let trace_id = accepted["trace_id"].as_str().unwrap().to_string();

    platform.wait_until_processing(&id).await;

    platform.worker.terminate();
    let status = platform
        .worker
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("worker exits after finishing its task");
    assert!(status.success(), "{status}\n{}", platform.worker.logs());

    let task = platform.wait_for_task(&id, Duration::from_secs(5)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"], json!({"slept_ms": 1500}));
    // Its spans were flushed before exit.
    let trace = platform.collector.trace(&trace_id);
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
    // Acknowledged: nothing waits in the queue for redelivery.
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_backend_right_after_a_202_exits_promptly_and_exports_the_request_span() {
    let mut platform = Platform::start("backend-sigterm").await;
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
        e2e_tests::PlatformOptions {
            service_env: vec![(
                e2e_tests::Service::Worker,
                "SHUTDOWN_TIMEOUT_MS".into(),
                "300".into(),
            )],
            worker_concurrency: 1,
            ..Default::default()
        },
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
