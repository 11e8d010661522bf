//! RabbitMQ going away, and a worker killed mid-task: services reconnect by
//! themselves, answer 503 meanwhile, and every accepted task completes.

use std::time::{Duration, Instant};

use e2e_tests::{
    eventually,
    platform::{assert_refused_at_start, bin_dir},
    Platform, PlatformOptions, Service,
};
use serde_json::{json, Value};
use sqlx::Connection;

async fn post(platform: &Platform, task: Value) -> reqwest::Response {
    platform
        .http
        .post(platform.url("/api/tasks"))
        .json(&task)
        .send()
        .await
        .unwrap()
}

async fn status_of(http: &reqwest::Client, url: String) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_broker_outage_posts_get_503_readiness_drops_and_everything_recovers() {
    let platform = Platform::start_with(
        "broker-outage",
        PlatformOptions {
            worker_concurrency: 1,
            ..PlatformOptions::default()
        },
    )
    .await;
    // Work accepted before the outage: more than the single consumer can
    // finish before it starts.
    let mut accepted = Vec::new();
    for _ in 0..4 {
        let response = post(&platform, json!({"type": "sleep", "payload": {"ms": 300}})).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        accepted.push(body["id"].as_str().unwrap().to_string());
    }

    platform.vhost.revoke_access();
    platform
        .vhost
        .close_all_connections("e2e: simulated broker outage");
    readiness_becomes(&platform, 503, Duration::from_secs(10)).await;
    services_stay_alive_and_refuse_tasks_with_503(&platform).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    platform.vhost.grant_access();
    readiness_becomes(&platform, 200, Duration::from_secs(30)).await;
    accepted.push(every_accepted_task_completes_and_new_work_flows(&platform, &accepted).await);
    only_accepted_tasks_are_stored(&platform, accepted.len()).await;
    the_outage_is_logged_once_per_service(&platform);
}

/// Backend and worker `/ready` both answer `status`.
async fn readiness_becomes(platform: &Platform, status: u16, timeout: Duration) {
    let http = &platform.http;
    eventually(
        timeout,
        format!("backend and worker ready: {status}"),
        || async {
            let backend = status_of(http, format!("{}/ready", platform.backend.url())).await;
            let worker = status_of(http, format!("{}/ready", platform.worker.url())).await;
            (backend == status && worker == status)
                .then_some(())
                .ok_or(format!("backend {backend}, worker {worker}"))
        },
    )
    .await;
}

/// Liveness stays; a POST gets a prompt 503, never a 202.
async fn services_stay_alive_and_refuse_tasks_with_503(platform: &Platform) {
    for service in [&platform.backend, &platform.worker, &platform.gateway] {
        let health = status_of(&platform.http, format!("{}/health", service.url())).await;
        assert_eq!(health, 200);
    }
    for _ in 0..3 {
        let started = Instant::now();
        let response = post(platform, json!({"type": "echo", "payload": {}})).await;
        assert_eq!(
            response.status(),
            503,
            "never a 202 while the broker is away"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "broker_unavailable");
    }
}

/// The tasks accepted before the outage complete, and a new one does too;
/// returns the new one's id.
async fn every_accepted_task_completes_and_new_work_flows(
    platform: &Platform,
    accepted: &[String],
) -> String {
    for id in accepted {
        let task = platform.wait_for_task(id, Duration::from_secs(30)).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    let response = post(
        platform,
        json!({"type": "echo", "payload": {"after": "outage"}}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    let task = platform.wait_for_task(&id, Duration::from_secs(30)).await;
    assert_eq!(task["status"], "succeeded");
    id
}

/// The tasks refused with 503 were removed again: only accepted ones exist.
async fn only_accepted_tasks_are_stored(platform: &Platform, accepted: usize) {
    let mut db = sqlx::sqlite::SqliteConnection::connect(platform.backend_db.url())
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(stored as usize, accepted, "no row for a 503");
}

/// State changes are logged once per outage, not once per message or per
/// consumer actor.
fn the_outage_is_logged_once_per_service(platform: &Platform) {
    for service in [&platform.backend, &platform.worker] {
        let logs = service.logs();
        let count = |needle: &str| logs.matches(needle).count();
        assert_eq!(
            count("lost the connection to the message broker"),
            1,
            "{logs}"
        );
        assert_eq!(count("message broker unreachable"), 1, "{logs}");
        assert_eq!(count("connected to the message broker"), 2, "{logs}");
        let warnings = logs
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains("ERROR"))
            .count();
        assert!(
            warnings <= 6,
            "{warnings} warning lines for one outage:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_loses_nothing_its_tasks_are_redelivered() {
    let mut platform = Platform::start_with(
        "worker-kill",
        PlatformOptions {
            worker_concurrency: 3,
            ..PlatformOptions::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let response = post(&platform, json!({"type": "sleep", "payload": {"ms": 1000}})).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    // Wait until the worker holds some of them unacknowledged.
    platform.wait_until_processing(&ids[0]).await;
    platform.worker.kill();

    let _replacement = platform.spawn_worker(&[]).await;
    for id in &ids {
        let task = platform.wait_for_task(id, Duration::from_secs(30)).await;
        assert_eq!(task["status"], "succeeded", "{task}");
    }
    // The replacement saw at least one message again (its span ends after
    // the ack, a moment after the status the test saw).
    eventually(
        Duration::from_secs(10),
        "a redelivered message processed",
        || async {
            platform
                .collector
                .spans()
                .iter()
                .filter(|s| s.name == "process task_queue")
                .any(|s| s.attr("messaging.message.redelivered") == Some("true"))
        },
    )
    .await;
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_subscribe_is_not_ready_and_says_why_once() {
    let platform = Platform::start("cannot-subscribe").await;
    platform.wait_for_queue("task_queue").await;
    // The queue exists as a classic queue; this worker wants a quorum one,
    // which RabbitMQ refuses (inequivalent x-queue-type).
    let mismatched = e2e_tests::ServiceProcess::start(
        e2e_tests::Service::Worker,
        &[
            ("AMQP_URL".into(), platform.vhost.amqp_url()),
            ("QUEUE_TYPE".into(), "quorum".into()),
            ("WORKER_CONCURRENCY".into(), "2".into()),
            ("OTEL_SDK_DISABLED".into(), "true".into()),
            // Each retry is a DEBUG line: counted below before asserting
            // that the complaint was logged once.
            ("RUST_LOG".into(), "info,shared::amqp=debug".into()),
        ],
        "cannot-subscribe-worker",
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "both consumers retried twice",
        || {
            let retries = mismatched
                .logs()
                .matches("subscribe failed; retrying")
                .count();
            std::future::ready((retries >= 4).then_some(()).ok_or(format!("{retries}")))
        },
    )
    .await;
    let response = platform
        .http
        .get(format!("{}/ready", mismatched.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "consumers_not_subscribed", "{body}");
    let logs = mismatched.logs();
    let complaints = logs.matches("cannot subscribe").count();
    assert!(
        (1..=2).contains(&complaints),
        "one line per consumer actor, not one per retry: {complaints}\n{logs}"
    );
    // The platform's own worker is ready.
    let ready = status_of(&platform.http, format!("{}/ready", platform.worker.url())).await;
    assert_eq!(ready, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_amqp_url_stops_the_service_with_exit_code_2_naming_the_variable() {
    // Not a broker that is down (which the services wait out): a URL that can
    // never work, so they refuse to start and say which variable.
    let log_dir = bin_dir().join("e2e-logs").join("bad-amqp-url");
    let cases = [
        (Service::Backend, "http://guest:hunter2@127.0.0.1:5672/"),
        (Service::Worker, "amqp:guest:hunter2@127.0.0.1"),
    ];
    for (service, url) in cases {
        assert_refused_at_start(service, "AMQP_URL", url, "hunter2", &log_dir).await;
    }
}
