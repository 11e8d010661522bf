//! `/api/tasks` through the gateway: every bad request gets the right status
//! and a JSON error body and is never queued; a broker that is away gets a
//! prompt 503; the trace id comes back to the caller; task ids sort in the
//! order the tasks were accepted.

use std::time::{Duration, Instant};

use e2e_tests::{
    database::{DbKind, TestDatabase},
    in_process::{self, HttpStack},
    platform::free_port,
};
use serde_json::{json, Value};

use super::{assert_error_body, status_and_json};

/// Bodies the backend refuses, with the status and code each gets.
fn refused_bodies() -> Vec<(Vec<u8>, u16, &'static str)> {
    let json = |value: Value| value.to_string().into_bytes();
    vec![
        (b"{not json".to_vec(), 400, "invalid_json"),
        (b"".to_vec(), 400, "invalid_json"),
        (b"[1,2,3]".to_vec(), 400, "invalid_body"),
        (json(json!({"payload": {}})), 400, "missing_type"),
        (json(json!({"type": 7})), 400, "invalid_type"),
        (json(json!({"type": "dance"})), 422, "unknown_task_type"),
        (
            json(json!({"type": "sleep", "payload": {"ms": 10001}})),
            422,
            "invalid_payload",
        ),
        (
            json(json!({"type": "sleep", "payload": {"ms": -5}})),
            422,
            "invalid_payload",
        ),
        (
            json(json!({"type": "sleep", "payload": {}})),
            422,
            "invalid_payload",
        ),
        (
            json(json!({"type": "hash", "payload": {"data": "x", "rounds": 0}})),
            422,
            "invalid_payload",
        ),
        (
            json(json!({"type": "hash", "payload": {"data": "x", "rounds": 100001}})),
            422,
            "invalid_payload",
        ),
        (
            json(json!({"type": "hash", "payload": {"rounds": 3}})),
            422,
            "invalid_payload",
        ),
        (
            json(json!({"type": "echo", "payload": "not an object"})),
            422,
            "invalid_payload",
        ),
    ]
}

async fn post_raw(stack: &HttpStack, body: Vec<u8>) -> (u16, Value) {
    let response = stack
        .http
        .post(stack.url("/api/tasks"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    status_and_json(response).await
}

#[actix_web::test]
async fn bad_task_requests_get_400_413_422_with_json_errors_and_nothing_is_queued() {
    let stack = HttpStack::start("api-bad-tasks").await;

    for (body, status, code) in refused_bodies() {
        let shown = String::from_utf8_lossy(&body).to_string();
        let (got, error) = post_raw(&stack, body).await;
        assert_eq!(got, status, "{shown} -> {error}");
        assert_error_body(&error, code);
    }

    // Just over 64 KiB of otherwise valid JSON; just under is accepted.
    let big = json!({"type": "echo", "payload": {"blob": "x".repeat(64 * 1024)}});
    let (status, error) = post_raw(&stack, big.to_string().into_bytes()).await;
    assert_eq!(status, 413);
    assert_error_body(&error, "payload_too_large");
    let fits = json!({"type": "echo", "payload": {"blob": "x".repeat(60 * 1024)}});
    let (status, accepted) = post_raw(&stack, fits.to_string().into_bytes()).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");

    // Only the accepted task reached the broker (no worker runs here).
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.backend.url()))
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
    assert_eq!(stack.vhost.queue_depth("task_queue"), Some(1));
}

#[actix_web::test]
async fn unknown_tasks_and_routes_get_json_404s_and_wrong_methods_405_with_allow() {
    let stack = HttpStack::start("api-not-found").await;
    for path in [
        format!("/api/tasks/{}", uuid::Uuid::new_v4()),
        "/api/tasks/not-a-uuid".to_string(),
    ] {
        let (status, body) =
            status_and_json(stack.http.get(stack.url(&path)).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}");
        assert_error_body(&body, "task_not_found");
    }
    let (status, body) =
        status_and_json(stack.http.get(stack.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_error_body(&body, "route_not_found");

    for (method, path, allowed) in [
        (reqwest::Method::GET, "/api/tasks", "POST"),
        (
            reqwest::Method::DELETE,
            "/api/tasks/00000000-0000-0000-0000-000000000000",
            "GET",
        ),
        (reqwest::Method::POST, "/api/products", "GET"),
    ] {
        let response = stack
            .http
            .request(method.clone(), stack.url(path))
            .send()
            .await
            .unwrap();
        let allow = response.headers().get("allow").cloned();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(
            allow.as_ref().and_then(|v| v.to_str().ok()),
            Some(allowed),
            "{method} {path}"
        );
        assert_error_body(&body, "method_not_allowed");
    }
}

#[actix_web::test]
async fn an_unreachable_broker_gets_503_promptly_and_never_a_202() {
    let dead_broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let db = TestDatabase::create(DbKind::Sqlite, "backend").await;
    let backend = in_process::backend(&dead_broker, &db).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let started = Instant::now();
        let response = http
            .post(format!("{}/api/tasks", backend.url()))
            .json(&json!({"type": "echo", "payload": {}}))
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_error_body(&body, "broker_unavailable");
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

#[actix_web::test]
async fn the_caller_gets_its_trace_id_back_in_the_body_and_in_traceresponse() {
    let stack = HttpStack::start("api-traceresponse").await;
    let trace_id = "5b8efff798038103d269b633813fc60c";
    let response = stack
        .http
        .post(stack.url("/api/tasks"))
        .header("traceparent", format!("00-{trace_id}-eee19b7ec3c1b174-01"))
        .json(&json!({"type": "echo", "payload": {"n": 1}}))
        .send()
        .await
        .unwrap();
    let traceresponse = response
        .headers()
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("a traceresponse header");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["trace_id"], trace_id, "{body}");
    let parts: Vec<&str> = traceresponse.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceresponse}");
    assert_eq!(parts[1], trace_id, "{traceresponse}");
    assert_ne!(
        parts[2], "eee19b7ec3c1b174",
        "the gateway's own span: {traceresponse}"
    );

    // Without a traceparent the gateway starts a trace and says which.
    let response = stack
        .http
        .get(stack.url("/api/products/1"))
        .send()
        .await
        .unwrap();
    let started = response
        .headers()
        .get("traceresponse")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert!(
        started
            .as_deref()
            .is_some_and(|v| v.len() == 55 && v.starts_with("00-") && v.ends_with("-01")),
        "{started:?}"
    );
}

#[actix_web::test]
async fn task_ids_sort_in_the_order_the_tasks_were_accepted() {
    let stack = HttpStack::start("api-ordered-ids").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, body) = post_raw(
            &stack,
            json!({"type": "echo", "payload": {"n": n}})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().expect("an id").to_string();
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7, "time-ordered: {id}");
        ids.push(id);
        // Ids from different milliseconds: the order is the clock's, not luck.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "in acceptance order");
}
