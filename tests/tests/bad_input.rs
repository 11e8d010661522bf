//! Every bad request gets the right status and a JSON error body; a broker
//! or an upstream that is down gets 503, 502 or 504 promptly, never a hang.

use std::time::{Duration, Instant};

use e2e_tests::{platform::free_port, Platform, Service, ServiceProcess};
use serde_json::{json, Value};

fn assert_error_body(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_task_requests_get_400_413_422_with_json_errors_and_nothing_is_queued() {
    let platform = Platform::start("bad-input").await;
    let post_raw = |body: Vec<u8>| {
        let request = platform
            .http
            .post(platform.url("/api/tasks"))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("error bodies are JSON");
            (status, body)
        }
    };

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "invalid_json"),
        (b"".to_vec(), 400, "invalid_json"),
        (b"[1,2,3]".to_vec(), 400, "invalid_body"),
        (
            json!({"payload": {}}).to_string().into(),
            400,
            "missing_type",
        ),
        (json!({"type": 7}).to_string().into(), 400, "invalid_type"),
        (
            json!({"type": "dance"}).to_string().into(),
            422,
            "unknown_task_type",
        ),
        (
            json!({"type": "sleep", "payload": {"ms": 10001}})
                .to_string()
                .into(),
            422,
            "invalid_payload",
        ),
        (
            json!({"type": "sleep", "payload": {"ms": -5}})
                .to_string()
                .into(),
            422,
            "invalid_payload",
        ),
        (
            json!({"type": "sleep", "payload": {}}).to_string().into(),
            422,
            "invalid_payload",
        ),
        (
            json!({"type": "hash", "payload": {"data": "x", "rounds": 0}})
                .to_string()
                .into(),
            422,
            "invalid_payload",
        ),
        (
            json!({"type": "hash", "payload": {"data": "x", "rounds": 100001}})
                .to_string()
                .into(),
            422,
            "invalid_payload",
        ),
        (
            json!({"type": "hash", "payload": {"rounds": 3}})
                .to_string()
                .into(),
            422,
            "invalid_payload",
        ),
        (
            json!({"type": "echo", "payload": "not an object"})
                .to_string()
                .into(),
            422,
            "invalid_payload",
        ),
    ];
    for (body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body).to_string();
        let (got, error) = post_raw(body).await;
        assert_eq!(got, status, "{shown} -> {error}");
        assert_error_body(&error, code);
    }

    // Just over 64 KiB of otherwise valid JSON.
    let big = json!({"type": "echo", "payload": {"blob": "x".repeat(64 * 1024)}}).to_string();
    let (status, error) = post_raw(big.into_bytes()).await;
    assert_eq!(status, 413);
    assert_error_body(&error, "payload_too_large");
    // Just under is fine.
    let fits = json!({"type": "echo", "payload": {"blob": "x".repeat(60 * 1024)}}).to_string();
    let (status, accepted) = post_raw(fits.into_bytes()).await;
    assert_eq!(status, 202, "{accepted}");
    platform
        .wait_for_task(accepted["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;

    // Unknown task ids and routes.
    for path in [
        format!("/api/tasks/{}", uuid::Uuid::new_v4()),
        "/api/tasks/not-a-uuid".to_string(),
    ] {
        let response = platform.http.get(platform.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_error_body(&response.json().await.unwrap(), "task_not_found");
    }
    let response = platform
        .http
        .get(platform.url("/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_error_body(&response.json().await.unwrap(), "route_not_found");

    // None of the rejected requests reached the broker: the backend published
    // exactly the one task it accepted, and the worker ran exactly that one.
    let metrics = platform
        .http
        .get(format!("{}/metrics", platform.backend.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut published: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tasks_published_total"))
        .collect();
    published.sort_unstable();
    assert_eq!(
        published,
        [
            "tasks_published_total{task_type=\"echo\"} 1",
            "tasks_published_total{task_type=\"hash\"} 0",
            "tasks_published_total{task_type=\"sleep\"} 0",
        ],
        "{metrics}"
    );
    assert_eq!(platform.vhost.queue_depth("task_queue"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_gets_503_promptly_and_never_a_202() {
    // The backend points at a port where no broker listens.
    let dead_broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let log_dir = e2e_tests::platform::bin_dir()
        .join("e2e-logs")
        .join("no-broker");
    let mut backend = ServiceProcess::spawn(
        Service::Backend,
        &[
            ("AMQP_URL".into(), dead_broker),
            ("OTEL_SDK_DISABLED".into(), "true".into()),
        ],
        &log_dir,
    );
    backend.wait_healthy().await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let started = Instant::now();
        let response = http
            .post(format!("{}/api/tasks", backend.url()))
            .json(&json!({"type": "echo", "payload": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_error_body(&response.json().await.unwrap(), "broker_unavailable");
    }
    let ready = http
        .get(format!("{}/ready", backend.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let health = http
        .get(format!("{}/health", backend.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_502_for_a_down_upstream_and_504_for_a_hanging_one() {
    // An upstream that accepts connections and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_port = hanging.local_addr().unwrap().port();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    let log_dir = e2e_tests::platform::bin_dir()
        .join("e2e-logs")
        .join("upstreams");
    let mut gateway = ServiceProcess::spawn(
        Service::Gateway,
        &[
            (
                "BACKEND_URL".into(),
                format!("http://127.0.0.1:{}", free_port()),
            ),
            (
                "PRODUCT_URL".into(),
                format!("http://127.0.0.1:{hanging_port}"),
            ),
            ("OTEL_SDK_DISABLED".into(), "true".into()),
        ],
        &log_dir,
    );
    gateway.wait_healthy().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let started = Instant::now();
    let response = http
        .post(format!("{}/api/tasks", gateway.url()))
        .json(&json!({"type": "echo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(response.headers().contains_key("traceresponse"));
    assert_error_body(&response.json().await.unwrap(), "upstream_unavailable");

    let started = Instant::now();
    let response = http
        .get(format!("{}/api/products", gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_error_body(&response.json().await.unwrap(), "upstream_timeout");
}
