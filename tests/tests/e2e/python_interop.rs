//! Services in other languages on the same queues, in the same traces: the
//! Python examples (`examples/python/`, pika and the OpenTelemetry Python
//! propagators) publish a task the Rust worker runs, and consume a task the
//! backend accepted, each continuing the other side's trace.

use std::{process::Command, time::Duration};

use e2e_tests::{repo::repo_file, Platform};
use serde_json::{json, Value};

fn python(script: &str, amqp_url: &str, args: &[&str]) -> Vec<Value> {
    let output = Command::new("python3")
        .arg(repo_file(&format!("examples/python/{script}")))
        .args(args)
        .env("AMQP_URL", amqp_url)
        .output()
        .expect("python3 (scripts/ensure-python-deps.sh installs what the examples need)");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_published_from_python_is_run_by_the_rust_worker_in_the_same_trace() {
    let platform = Platform::start("python-publisher").await;
    platform.wait_for_queue("task_queue").await;
    let published = python(
        "publisher.py",
        &platform.vhost.amqp_url(),
        &[r#"{"type": "hash", "payload": {"data": "from python"}}"#],
    );
    let (id, trace_id, span_id) = (
        published[0]["id"].as_str().unwrap(),
        published[0]["trace_id"].as_str().unwrap(),
        published[0]["span_id"].as_str().unwrap(),
    );
    let trace = platform
        .collector
        .wait_for_trace(trace_id, Duration::from_secs(20), |t| {
            // The CONSUMER span ends last, after the ack.
            t.has("worker-service", "report-status")
                && t.has("worker-service", "process task_queue")
        })
        .await;
    let consumed = trace.find("worker-service", "process task_queue");
    assert_eq!(
        consumed.parent_span_id, span_id,
        "a child of Python's PRODUCER span"
    );
    assert_eq!(consumed.attr("messaging.message.id"), Some(id));
    let processed = trace.find("worker-service", "process-task");
    trace.assert_child_of(processed, consumed);
    assert!(!processed.is_error(), "{}", trace.render());
    let report = trace.find("worker-service", "report-status");
    assert_eq!(report.attr("task.status"), Some("succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_posted_to_the_backend_is_consumed_by_python_in_the_same_trace() {
    let mut platform = Platform::start("python-consumer").await;
    // Python is the only consumer.
    platform.worker.kill();
    let accepted = platform
        .post_task(json!({"type": "echo", "payload": {"to": "python"}}))
        .await;
    let consumed = python(
        "consumer.py",
        &platform.vhost.amqp_url(),
        &["--count", "1", "--timeout", "20"],
    );
    assert_eq!(consumed.len(), 1, "{consumed:?}");
    let seen = &consumed[0];
    assert_eq!(seen["id"], accepted["id"]);
    assert_eq!(seen["type"], "echo");
    let trace_id = accepted["trace_id"].as_str().unwrap();
    assert_eq!(seen["trace_id"], trace_id, "Python continued the trace");
    let trace = platform
        .collector
        .wait_for_trace(trace_id, Duration::from_secs(20), |t| {
            t.has("backend-service", "send task_queue")
        })
        .await;
    let send = trace.find("backend-service", "send task_queue");
    assert_eq!(
        seen["parent_span_id"],
        send.span_id.as_str(),
        "under the backend's PRODUCER span"
    );
}
