//! A collector that is down or hangs must not slow requests down, grow
//! memory without bound, or flood the log.

use std::time::{Duration, Instant};

use e2e_tests::{OtlpCollector, Service, ServiceProcess};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Latencies of a run of requests.
struct Latency {
    slowest: Duration,
    median: Duration,
}

/// Sends `count` catalog requests one after another.
async fn hammer(product: &ServiceProcess, count: usize) -> Latency {
    let http = reqwest::Client::new();
    let mut all = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let response = http
            .get(format!("{}/api/products/{}", product.url(), i % 24 + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        all.push(started.elapsed());
    }
    all.sort();
    Latency {
        slowest: *all.last().unwrap(),
        median: all[all.len() / 2],
    }
}

/// Generous: the median may not grow past 5x the healthy one (plus 20 ms of
/// scheduling noise on a loaded 2-core machine), and no request takes 2 s.
fn assert_unchanged(healthy: &Latency, now: &Latency) {
    assert!(
        now.slowest < Duration::from_secs(2),
        "slowest request {:?}",
        now.slowest
    );
    assert!(
        now.median < healthy.median * 5 + Duration::from_millis(20),
        "median {:?} vs {:?} with a healthy collector",
        now.median,
        healthy.median
    );
}

async fn start_product(label: &str, endpoint: &str, extra: &[(&str, &str)]) -> ServiceProcess {
    let mut env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            endpoint.to_string(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ServiceProcess::start(Service::Product, &env, label).await
}

/// After a warm-up, 1,500 requests as fast as with a healthy collector and
/// no more than 30 MiB of growth.
async fn stays_fast_and_bounded_under_load(product: &ServiceProcess, healthy: &Latency) {
    hammer(product, 300).await;
    let rss_before = rss_kib(product.pid());
    let now = hammer(product, 1500).await;
    let rss_after = rss_kib(product.pid());
    assert_unchanged(healthy, &now);
    assert!(
        rss_after < rss_before + 30 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

/// Every failed export after the reported one is a DEBUG line for the
/// shared telemetry module: the tests count them before asserting that
/// only one WARN line was written.
const FAILED_EXPORTS_AT_DEBUG: (&str, &str) = ("RUST_LOG", "info,shared::telemetry=debug");

/// The log, once at least `failures` more exports have failed after the
/// reported one.
async fn after_failed_exports(product: &ServiceProcess, failures: usize) -> String {
    e2e_tests::eventually(
        Duration::from_secs(20),
        format!("{failures} more failed exports"),
        || {
            let logs = product.logs();
            let seen = logs.matches("span export still failing").count();
            std::future::ready(if seen >= failures {
                Ok(logs)
            } else {
                Err(format!("{seen}"))
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_collector_gone_requests_stay_fast_memory_stays_bounded_and_the_failure_is_logged_once(
) {
    let mut collector = OtlpCollector::start().await;
    let product = start_product(
        "collector-down",
        &collector.grpc_endpoint(),
        &[FAILED_EXPORTS_AT_DEBUG],
    )
    .await;
    // Export works to begin with.
    let healthy = hammer(&product, 300).await;
    e2e_tests::eventually(
        Duration::from_secs(20),
        "spans before the collector goes down",
        || std::future::ready(!collector.spans().is_empty()),
    )
    .await;

    collector.stop();
    stays_fast_and_bounded_under_load(&product, &healthy).await;
    let logs = after_failed_exports(&product, 3).await;
    assert_eq!(
        logs.matches("span export failed").count(),
        1,
        "export failures are logged once a minute at most:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_hanging_collector_requests_stay_fast_and_the_span_queue_is_capped() {
    // Accepts connections, never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", hanging.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            open.push(socket);
        }
    });
    // The same service with a healthy collector, for the baseline.
    let collector = OtlpCollector::start().await;
    let baseline = start_product("collector-healthy", &collector.grpc_endpoint(), &[]).await;
    let healthy = hammer(&baseline, 300).await;
    drop(baseline);

    let mut product = start_product(
        "collector-hangs",
        &endpoint,
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "256"),
            FAILED_EXPORTS_AT_DEBUG,
        ],
    )
    .await;
    stays_fast_and_bounded_under_load(&product, &healthy).await;
    let logs = after_failed_exports(&product, 3).await;
    assert_eq!(logs.matches("span export failed").count(), 1, "{logs}");

    // A stuck collector does not keep the service from stopping.
    product.terminate();
    let status = product.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
