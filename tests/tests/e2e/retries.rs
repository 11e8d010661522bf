//! Failed attempts are retried after a delay without blocking the consumer;
//! the last failure is dead-lettered with its reason; poison messages go
//! straight to the dead-letter queue. Each attempt is its own span.

use std::time::Duration;

use e2e_tests::{broker::client, Platform, PlatformOptions, SpanKind};
use serde_json::{json, Value};

fn options() -> PlatformOptions {
    PlatformOptions {
        env: vec![
            ("TASK_RETRY_DELAY_MS".into(), "300".into()),
            ("TASK_MAX_ATTEMPTS".into(), "3".into()),
        ],
        worker_concurrency: 1,
        ..PlatformOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_failing_twice_succeeds_on_the_third_attempt_each_attempt_its_own_span() {
    let platform = Platform::start_with("retry-success", options()).await;
    let accepted = platform
        .post_task(json!({"type": "echo", "payload": {"fail_times": 2, "x": 1}}))
        .await;
    let id = accepted["id"].as_str().unwrap();
    let trace_id = accepted["trace_id"].as_str().unwrap();

    let task = platform.wait_for_task(id, Duration::from_secs(30)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["attempts"], 3);
    assert_eq!(task["result"], json!({"fail_times": 2, "x": 1}));
    assert!(task.get("error").is_none(), "{task}");

    let trace = platform
        .collector
        .wait_for_trace(trace_id, Duration::from_secs(20), |t| {
            t.find_all("worker-service", "process-task").len() == 3
                // queued, queued, succeeded (the attempts fail at once, within
                // PROCESSING_REPORT_DELAY_MS: no `processing` reports)
                && t.find_all("backend-service", "apply-status-update").len() >= 3
        })
        .await;
    let mut attempts = trace.find_all("worker-service", "process-task");
    attempts.sort_by_key(|s| s.int_attr("task.attempt"));
    for (i, span) in attempts.iter().enumerate() {
        let n = (i + 1).to_string();
        // An integer in the trace, not a string of digits.
        assert_eq!(span.int_attr("task.attempt"), Some(i as i64 + 1));
        assert_eq!(span.attr("task.id"), Some(id));
        let consumer = trace.by_id(&span.parent_span_id).expect("consumer span");
        assert_eq!(consumer.name, "process task_queue");
        assert_eq!(consumer.kind, SpanKind::Consumer);
        let producer = trace
            .by_id(&consumer.parent_span_id)
            .expect("producer span");
        assert_eq!(producer.kind, SpanKind::Producer);
        if i == 0 {
            assert_eq!(producer.name, "send task_queue");
            assert_eq!(producer.service, "backend-service");
        } else {
            // The retry was published from the previous attempt's span.
            assert_eq!(producer.name, format!("send task_queue.retry.{n}"));
            trace.assert_child_of(producer, attempts[i - 1]);
        }
    }
    for failed in &attempts[..2] {
        assert!(failed.is_error(), "failed attempt has status ERROR");
        let exception = failed.event("exception").expect("exception event");
        assert_eq!(exception.attributes["exception.type"], "InjectedFailure");
        assert!(exception.attributes["exception.message"].contains("injected failure"));
        let retry = failed.event("retry-attempt").expect("retry-attempt event");
        let next = failed.int_attr("task.attempt").unwrap() + 1;
        assert_eq!(retry.attributes["attempt"], next.to_string());
    }
    assert!(!attempts[2].is_error());
    assert!(attempts[2].event("exception").is_none());
    assert_eq!(platform.vhost.queue_depth("task_queue.dlq"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_attempt_the_task_fails_and_is_dead_lettered_with_the_reason() {
    let platform = Platform::start_with("retry-exhausted", options()).await;
    let accepted = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 1, "fail_times": 5}}))
        .await;
    let id = accepted["id"].as_str().unwrap();

    let task = platform.wait_for_task(id, Duration::from_secs(30)).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["attempts"], 3);
    let error = task["error"].as_str().unwrap();
    assert!(
        error.contains("injected failure") && error.contains("attempt 3"),
        "{error}"
    );

    let dead = client::drain(&platform.vhost.amqp_url(), "task_queue.dlq").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = &dead[0];
    let body: Value = serde_json::from_slice(&letter.body).unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(letter.headers["x-failure-kind"], "max-attempts");
    assert!(letter.headers["x-failure-reason"].contains("injected failure"));
    assert_eq!(letter.headers["x-attempts"], "3");
    assert_eq!(letter.headers["x-original-queue"], "task_queue");
    assert!(letter.headers.contains_key("traceparent"));
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waiting_for_its_delay_does_not_block_the_consumer() {
    let mut opts = options();
    opts.env = vec![
        ("TASK_RETRY_DELAY_MS".into(), "3000".into()),
        ("TASK_MAX_ATTEMPTS".into(), "2".into()),
    ];
    let platform = Platform::start_with("retry-nonblocking", opts).await;
    let failing = platform
        .post_task(json!({"type": "echo", "payload": {"fail_times": 1}}))
        .await;
    // Let the first attempt fail, then queue more work behind it.
    let waiting = platform
        .wait_for_task_state(
            failing["id"].as_str().unwrap(),
            Duration::from_secs(20),
            |t| t["attempts"] == 1 && t["status"] == "queued",
        )
        .await;
    assert!(waiting["error"]
        .as_str()
        .unwrap()
        .contains("injected failure"));
    // The single consumer is free: these finish while the retry waits.
    for n in 0..3 {
        let quick = platform
            .post_task(json!({"type": "echo", "payload": {"n": n}}))
            .await;
        let done = platform
            .wait_for_task(quick["id"].as_str().unwrap(), Duration::from_secs(2))
            .await;
        assert_eq!(done["status"], "succeeded");
    }
    let still_waiting = platform.get_task(failing["id"].as_str().unwrap()).await;
    assert_eq!(still_waiting["status"], "queued", "{still_waiting}");
    let finished = platform
        .wait_for_task(failing["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_queue_logged_once_and_the_consumer_carries_on() {
    let platform = Platform::start_with("poison", options()).await;
    let url = platform.vhost.amqp_url();
    let unknown_type =
        json!({"id": uuid::Uuid::new_v4(), "type": "juggle", "payload": {}}).to_string();
    let poison: [(&[u8], &str); 3] = [
        (b"definitely not json", "not valid JSON"),
        (br#"{"type": "echo", "payload": {}}"#, "missing task id"),
        (unknown_type.as_bytes(), "juggle"),
    ];
    platform.wait_for_queue("task_queue").await;
    for (body, _) in &poison {
        client::publish_raw(&url, "task_queue", body).await;
    }

    // The single consumer is still alive and working.
    let accepted = platform
        .post_task(json!({"type": "echo", "payload": {"after": "poison"}}))
        .await;
    let task = platform
        .wait_for_task(accepted["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    assert_eq!(task["status"], "succeeded");

    let dead = client::drain(&url, "task_queue.dlq").await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    for ((body, reason), letter) in poison.iter().zip(&dead) {
        assert_eq!(&letter.body.as_slice(), body);
        assert_eq!(letter.headers["x-failure-kind"], "poison");
        assert!(
            letter.headers["x-failure-reason"].contains(reason),
            "{reason}: {:?}",
            letter.headers
        );
    }
    let logs = platform.worker.logs();
    assert_eq!(logs.matches("poison message").count(), 3, "{logs}");
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_dead_letters_work_the_same_on_quorum_queues() {
    let mut opts = options();
    opts.env.push(("QUEUE_TYPE".into(), "quorum".into()));
    opts.env.push(("TASK_MAX_ATTEMPTS".into(), "2".into()));
    let platform = Platform::start_with("quorum", opts).await;
    let recovers = platform
        .post_task(json!({"type": "echo", "payload": {"fail_times": 1}}))
        .await;
    let gives_up = platform
        .post_task(json!({"type": "echo", "payload": {"fail_times": 9}}))
        .await;
    let recovered = platform
        .wait_for_task(recovers["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(recovered["status"], "succeeded", "{recovered}");
    assert_eq!(recovered["attempts"], 2);
    let failed = platform
        .wait_for_task(gives_up["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["attempts"], 2);
    let dead = client::drain(&platform.vhost.amqp_url(), "task_queue.dlq").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers["x-failure-kind"], "max-attempts");
    // The queues really are quorum queues.
    for queue in [
        "task_queue",
        "task_queue.dlq",
        "task_queue.retry.2",
        "task_results",
    ] {
        assert_eq!(
            platform.vhost.queue_type(queue).as_deref(),
            Some("quorum"),
            "{queue}"
        );
    }
}
