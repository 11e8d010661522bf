//! Acknowledgements: the worker groups them, but never acknowledges a
//! delivery before it is settled, and a slow task holds back no other
//! delivery's acknowledgement.

use std::{collections::HashSet, time::Duration};

use e2e_tests::Platform;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_task_holds_back_no_other_acknowledgement_and_is_acknowledged_only_when_done() {
    let mut platform = Platform::start("acks").await;
    platform.worker.kill();

    // The slow task is delivered first; the quick ones after it are settled
    // while it still runs.
    let slow = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 10000}}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut quick = Vec::new();
    for n in 0..20 {
        let body = platform
            .post_task(json!({"type": "echo", "payload": {"n": n}}))
            .await;
        quick.push(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(21));
    let mut worker = platform
        .spawn_worker(&[
            ("WORKER_CONCURRENCY".into(), "1".into()),
            ("WORKER_PREFETCH".into(), "32".into()),
        ])
        .await;

    for id in &quick {
        let task = platform.wait_for_task(id, Duration::from_secs(20)).await;
        assert_eq!(task["status"], "succeeded");
    }
    // Every quick task acknowledged, the running one not: exactly one
    // message left, while the slow task is still running.
    e2e_tests::eventually(
        Duration::from_secs(3),
        "20 of 21 deliveries acknowledged",
        || async { platform.vhost.queue_depth("task_queue") == Some(1) },
    )
    .await;
    let running = platform.get_task(&slow).await;
    assert_ne!(
        running["status"], "succeeded",
        "the slow task must still be running for this check to mean anything"
    );
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(1));

    let done = platform.wait_for_task(&slow, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["attempts"], 1);
    e2e_tests::eventually(
        Duration::from_secs(5),
        "the slow task acknowledged",
        || async { platform.vhost.queue_depth("task_queue") == Some(0) },
    )
    .await;
    worker.terminate();
    worker
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("worker stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_acknowledged_in_groups_is_processed_once_and_keeps_its_channels() {
    let mut platform = Platform::start("acks-backlog").await;
    platform.worker.kill();
    const LANES: usize = 16;
    const PER_LANE: usize = 250;
    let (client, url) = (reqwest::Client::new(), platform.url("/api/tasks"));
    let mut posts = tokio::task::JoinSet::new();
    for lane in 0..LANES {
        let (client, url) = (client.clone(), url.clone());
        posts.spawn(async move {
            let mut ids = Vec::new();
            for n in 0..PER_LANE {
                let task = json!({"type": "echo", "payload": {"lane": lane, "n": n}});
                let response = client.post(&url).json(&task).send().await.expect("POST");
                assert_eq!(response.status(), 202);
                let body: serde_json::Value = response.json().await.expect("202 JSON");
                ids.push(body["id"].as_str().unwrap().to_string());
            }
            ids
        });
    }
    let mut ids = HashSet::new();
    while let Some(lane) = posts.join_next().await {
        ids.extend(lane.expect("a lane of POSTs"));
    }
    let total = LANES * PER_LANE;
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(total as u64));

    // Many consumers with deep prefetch: many deliveries settle at once,
    // out of order across and within channels. A patient confirm timeout:
    // a slow disk under this burst must not be what requeues a task here.
    let mut worker = platform
        .spawn_worker(&[
            ("WORKER_CONCURRENCY".into(), "8".into()),
            ("WORKER_PREFETCH".into(), "64".into()),
            ("PUBLISH_TIMEOUT_MS".into(), "30000".into()),
        ])
        .await;
    e2e_tests::eventually(
        Duration::from_secs(120),
        e2e_tests::Lazy(|| format!("the backlog acknowledged; worker log:\n{}", worker.logs())),
        || std::future::ready(platform.vhost.queue_depth("task_queue") == Some(0)),
    )
    .await;

    // A channel closed by a bad acknowledgement shows as a lost connection
    // and requeued tasks, then as tasks processed twice.
    let logs = worker.logs();
    for sign in ["lost the connection", "requeueing", "ack failed"] {
        assert!(!logs.contains(sign), "worker log has {sign:?}:\n{logs}");
    }
    let processed: Vec<String> = platform
        .collector
        .spans_named(
            "worker-service",
            "process-task",
            total,
            Duration::from_secs(30),
        )
        .await
        .into_iter()
        .filter_map(|s| s.attr("task.id").map(str::to_string))
        .collect();
    let once: HashSet<&String> = processed.iter().collect();
    assert_eq!(processed.len(), total, "process-task spans, one per task");
    assert_eq!(once.len(), total, "every task processed, none twice");
    assert!(once.iter().all(|id| ids.contains(*id)));
    let sample = ids.iter().next().unwrap();
    assert_eq!(platform.get_task(sample).await["status"], "succeeded");
    worker.terminate();
    worker
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("worker stops");
}
