//! `/metrics` of every service after real traffic: the counters and
//! histograms have exactly the values that traffic implies, and latency
//! buckets carry trace-id exemplars.

use std::time::Duration;

use e2e_tests::{Platform, PlatformOptions, ServiceProcess};
use serde_json::{json, Value};
use shared::task::{DeadLetterKind, TaskType};

/// The value of the sample `name{labels}` (labels in any order), 0 if absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, rest) = line.split_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, labels)) => (metric, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            let value = rest.split(' ').next()?.parse::<f64>().ok()?;
            all.then_some(value)
        })
        .sum()
}

async fn scrape(platform: &Platform, service: &ServiceProcess) -> String {
    let response = platform
        .http
        .get(format!("{}/metrics", service.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_traffic_have_the_values_that_traffic_implies() {
    let platform = Platform::start_with(
        "metrics",
        PlatformOptions {
            env: vec![
                ("TASK_RETRY_DELAY_MS".into(), "100".into()),
                ("TASK_MAX_ATTEMPTS".into(), "2".into()),
            ],
            worker_concurrency: 2,
            ..PlatformOptions::default()
        },
    )
    .await;
    every_task_series_starts_at_zero(&platform).await;
    let trace_ids = send_known_traffic(&platform).await;

    let gateway = scrape(&platform, &platform.gateway).await;
    let product = scrape(&platform, &platform.product).await;
    let backend = scrape(&platform, &platform.backend).await;
    let worker = scrape(&platform, &platform.worker).await;
    http_metrics_count_each_request_once(&gateway, &product, &backend, &trace_ids);
    task_metrics_count_each_attempt(&backend, &worker);
    // Probes and scrapes (these scrapes included) are not counted as traffic.
    for text in [&gateway, &backend, &product, &worker] {
        for route in ["/health", "/ready", "/metrics"] {
            assert!(
                !text.contains(&format!("http_route=\"{route}\"")),
                "{route} counted:\n{text}"
            );
        }
    }
}

/// Before any traffic, every task series exists at zero: rate() sees no
/// increase in a series whose first sample is already 1.
async fn every_task_series_starts_at_zero(platform: &Platform) {
    let backend = scrape(platform, &platform.backend).await;
    let worker = scrape(platform, &platform.worker).await;
    for task_type in TaskType::ALL.iter().map(|t| t.as_str()) {
        let series = |name: &str| format!("{name}{{task_type=\"{task_type}\"}} 0\n");
        assert!(
            backend.contains(&series("tasks_published_total")),
            "{backend}"
        );
        for name in [
            "tasks_processed_total",
            "tasks_failed_total",
            "tasks_retried_total",
        ] {
            assert!(worker.contains(&series(name)), "{worker}");
        }
    }
    for reason in DeadLetterKind::ALL.map(DeadLetterKind::as_str) {
        let series = format!("tasks_dead_lettered_total{{reason=\"{reason}\"}} 0\n");
        assert!(worker.contains(&series), "{worker}");
    }
    assert!(worker.contains(
        "task_processing_duration_seconds_count{task_type=\"sleep\",outcome=\"failed\"} 0\n"
    ));
}

/// Five tasks (two clean echoes, a sleep, an echo failing once, a hash
/// failing past its attempts), a 400, three product lookups (one 404) and a
/// sleep seen running (one consumer busy, then none); the trace ids of the
/// accepted tasks.
async fn send_known_traffic(platform: &Platform) -> Vec<String> {
    let tasks = [
        json!({"type": "echo", "payload": {"n": 1}}),
        json!({"type": "echo", "payload": {"n": 2}}),
        json!({"type": "sleep", "payload": {"ms": 20}}),
        json!({"type": "echo", "payload": {"fail_times": 1}}),
        json!({"type": "hash", "payload": {"data": "x", "fail_times": 5}}),
    ];
    let mut trace_ids = Vec::new();
    for task in &tasks {
        let response = platform
            .http
            .post(platform.url("/api/tasks"))
            .json(task)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        trace_ids.push(body["trace_id"].as_str().unwrap().to_string());
        platform
            .wait_for_task(body["id"].as_str().unwrap(), Duration::from_secs(30))
            .await;
    }
    let bad = platform
        .http
        .post(platform.url("/api/tasks"))
        .json(&json!({"payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    for path in ["/api/products/1", "/api/products/2", "/api/products/999"] {
        platform.http.get(platform.url(path)).send().await.unwrap();
    }

    // While a task runs, one consumer actor is busy.
    let running = platform
        .post_task(json!({"type": "sleep", "payload": {"ms": 1500}}))
        .await;
    let running_id = running["id"].as_str().unwrap().to_string();
    trace_ids.push(running["trace_id"].as_str().unwrap().to_string());
    platform.wait_until_processing(&running_id).await;
    let during = scrape(platform, &platform.worker).await;
    assert_eq!(
        sample(&during, "worker_consumers_busy", &[]),
        1.0,
        "{during}"
    );
    platform
        .wait_for_task(&running_id, Duration::from_secs(30))
        .await;
    // Busy until its acknowledgement, a moment after the status is visible.
    e2e_tests::eventually(Duration::from_secs(5), "no consumer busy", || async {
        let after = scrape(platform, &platform.worker).await;
        sample(&after, "worker_consumers_busy", &[]) == 0.0
    })
    .await;
    trace_ids
}

/// Gateway and services count every request once, by method, route and
/// status; the gateway's latency buckets carry exemplars of real traces.
fn http_metrics_count_each_request_once(
    gateway: &str,
    product: &str,
    backend: &str,
    trace_ids: &[String],
) {
    let duration = "http_server_request_duration_seconds_count";
    let post = |status| {
        [
            ("http_request_method", "POST"),
            ("http_route", "/api/tasks"),
            ("http_response_status_code", status),
        ]
    };
    assert_eq!(sample(gateway, duration, &post("202")), 6.0);
    assert_eq!(sample(gateway, duration, &post("400")), 1.0);
    let product_route = |status| {
        [
            ("http_request_method", "GET"),
            ("http_route", "/api/products/{id}"),
            ("http_response_status_code", status),
        ]
    };
    assert_eq!(sample(gateway, duration, &product_route("200")), 2.0);
    assert_eq!(sample(gateway, duration, &product_route("404")), 1.0);
    // Latency buckets carry exemplars pointing at real traces.
    let exemplar_traces: Vec<&str> = gateway
        .lines()
        .filter(|l| l.contains("http_route=\"/api/tasks\"") && l.contains("code=\"202\""))
        .filter(|l| l.contains("# {trace_id=\""))
        .filter_map(|l| l.split("trace_id=\"").nth(1)?.split('"').next())
        .collect();
    assert!(!exemplar_traces.is_empty(), "no exemplars:\n{gateway}");
    assert!(exemplar_traces
        .iter()
        .all(|t| trace_ids.iter().any(|id| id == t)));

    assert_eq!(sample(product, duration, &product_route("200")), 2.0);
    assert_eq!(sample(product, duration, &product_route("404")), 1.0);
    assert_eq!(sample(backend, duration, &post("202")), 6.0);
}

/// Published per type in the backend; attempts, failures, retries, dead
/// letters and durations per type and outcome in the worker.
fn task_metrics_count_each_attempt(backend: &str, worker: &str) {
    assert_eq!(
        sample(backend, "tasks_published_total", &[("task_type", "echo")]),
        3.0
    );
    assert_eq!(
        sample(backend, "tasks_published_total", &[("task_type", "sleep")]),
        2.0
    );
    assert_eq!(
        sample(backend, "tasks_published_total", &[("task_type", "hash")]),
        1.0
    );
    assert_eq!(sample(backend, "messaging_broker_connected", &[]), 1.0);

    let echo = [("task_type", "echo")];
    let hash = [("task_type", "hash")];
    // echo: 2 clean + 1 failing once = 4 attempts, 1 failed, 1 retried
    assert_eq!(sample(worker, "tasks_processed_total", &echo), 4.0);
    assert_eq!(sample(worker, "tasks_failed_total", &echo), 1.0);
    assert_eq!(sample(worker, "tasks_retried_total", &echo), 1.0);
    // hash failing 5 times with 2 attempts: 2 attempts, both failed, 1 retry, dead-lettered
    assert_eq!(sample(worker, "tasks_processed_total", &hash), 2.0);
    assert_eq!(sample(worker, "tasks_failed_total", &hash), 2.0);
    assert_eq!(sample(worker, "tasks_retried_total", &hash), 1.0);
    assert_eq!(
        sample(
            worker,
            "tasks_dead_lettered_total",
            &[("reason", "max-attempts")]
        ),
        1.0
    );
    let processing = "task_processing_duration_seconds_count";
    assert_eq!(
        sample(
            worker,
            processing,
            &[("task_type", "sleep"), ("outcome", "succeeded")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            worker,
            processing,
            &[("task_type", "echo"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(sample(worker, "worker_consumers", &[]), 2.0);
    assert_eq!(sample(worker, "messaging_broker_connected", &[]), 1.0);
}
