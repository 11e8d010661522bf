//! The standard OTEL_* variables, the log format, and the flush at shutdown,
//! checked against real service processes.

use std::time::Duration;

use e2e_tests::{
    platform::{bin_dir, refused_at_start},
    OtlpCollector, Service, ServiceProcess,
};
use serde_json::Value;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn start_product(label: &str, vars: Vec<(String, String)>) -> ServiceProcess {
    ServiceProcess::start(Service::Product, &vars, label).await
}

async fn get_with_parent(product: &ServiceProcess, path: &str, trace_id: &str, flags: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}{path}", product.url()))
        .header(
            "traceparent",
            format!("00-{trace_id}-b7ad6b7169203331-{flags}"),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// SIGTERM, then wait for a clean exit: the shutdown flushes every span.
async fn stop_and_flush(mut service: ServiceProcess) {
    service.terminate();
    let status = service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "clean exit: {status}\n{}", service.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_service_name_and_resource_attributes_follow_the_environment() {
    let collector = OtlpCollector::start().await;
    let product = start_product(
        "otel-http",
        env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint()),
            ("OTEL_SERVICE_NAME", "catalog-eu"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test,team=shop",
            ),
        ]),
    )
    .await;
    let trace_id = "11111111111111111111111111111111";
    assert_eq!(
        get_with_parent(&product, "/api/products/1", trace_id, "01").await,
        200
    );
    let trace = collector
        .wait_for_trace(trace_id, Duration::from_secs(20), |t| {
            t.has("catalog-eu", "catalog-lookup")
        })
        .await;
    let lookup = trace.find("catalog-eu", "catalog-lookup");
    assert_eq!(lookup.resource["deployment.environment.name"], "test");
    assert_eq!(lookup.resource["team"], "shop");
    assert_eq!(
        lookup.resource["service.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(collector.spans().iter().all(|s| s.service == "catalog-eu"));
    stop_and_flush(product).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samplers_decide_what_is_exported_and_the_sdk_can_be_disabled() {
    let collector = OtlpCollector::start().await;
    let products = Samplers::start(&collector.grpc_endpoint()).await;
    products.send_requests().await;
    for service in products.all() {
        stop_and_flush(service).await;
    }

    let spans = collector.spans();
    // parentbased_always_on (default): follows the caller's sampled flag.
    assert!(spans
        .iter()
        .any(|s| s.trace_id == SAMPLED && s.service == "product-service"));
    assert!(
        !spans.iter().any(|s| s.trace_id == UNSAMPLED),
        "unsampled parent exported"
    );
    // parentbased_traceidratio=0: the sampled caller's trace is kept, nothing else.
    let parent_ratio_spans: Vec<_> = spans
        .iter()
        .filter(|s| s.service == "parent-ratio")
        .collect();
    assert!(
        !parent_ratio_spans.is_empty(),
        "the sampled parent was not followed"
    );
    assert!(
        parent_ratio_spans.iter().all(|s| s.trace_id == FOLLOWED),
        "a new root was sampled"
    );
    for silent in ["sampled-off", "ratio-zero", "sdk-disabled"] {
        assert!(
            !spans.iter().any(|s| s.service == silent),
            "{silent} exported spans"
        );
    }
}

const SAMPLED: &str = "22222222222222222222222222222222";
const UNSAMPLED: &str = "33333333333333333333333333333333";
const FOLLOWED: &str = "88888888888888888888888888888888";

/// One product service per sampler setting, all exporting to one collector.
struct Samplers {
    default_sampler: ServiceProcess,
    always_off: ServiceProcess,
    ratio_zero: ServiceProcess,
    parent_ratio: ServiceProcess,
    disabled: ServiceProcess,
}

impl Samplers {
    async fn start(grpc: &str) -> Self {
        let product = |label: &'static str, vars: &[(&str, &str)]| {
            let mut vars = vars.to_vec();
            vars.push(("OTEL_EXPORTER_OTLP_ENDPOINT", grpc));
            start_product(label, env(&vars))
        };
        Self {
            default_sampler: product("otel-parentbased", &[("OTEL_BSP_SCHEDULE_DELAY", "100")])
                .await,
            always_off: product(
                "otel-always-off",
                &[
                    ("OTEL_TRACES_SAMPLER", "always_off"),
                    ("OTEL_SERVICE_NAME", "sampled-off"),
                ],
            )
            .await,
            ratio_zero: product(
                "otel-ratio",
                &[
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0"),
                    ("OTEL_SERVICE_NAME", "ratio-zero"),
                ],
            )
            .await,
            // Ratio 0 for new traces, but a sampled caller is followed.
            parent_ratio: product(
                "otel-parent-ratio",
                &[
                    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0"),
                    ("OTEL_SERVICE_NAME", "parent-ratio"),
                ],
            )
            .await,
            disabled: product(
                "otel-disabled",
                &[
                    ("OTEL_SDK_DISABLED", "true"),
                    ("OTEL_SERVICE_NAME", "sdk-disabled"),
                ],
            )
            .await,
        }
    }

    /// A sampled and an unsampled caller to the default; a sampled caller to
    /// the silent ones; a sampled caller and a new root to parent-ratio.
    async fn send_requests(&self) {
        for (service, trace, flags) in [
            (&self.default_sampler, SAMPLED, "01"),
            (&self.default_sampler, UNSAMPLED, "00"),
            (&self.always_off, SAMPLED, "01"),
            (&self.ratio_zero, SAMPLED, "01"),
            (&self.disabled, SAMPLED, "01"),
            (&self.parent_ratio, FOLLOWED, "01"),
        ] {
            assert_eq!(
                get_with_parent(service, "/api/products/2", trace, flags).await,
                200
            );
        }
        let root = reqwest::get(format!("{}/api/products/4", self.parent_ratio.url()))
            .await
            .unwrap();
        assert_eq!(root.status(), 200);
    }

    fn all(self) -> [ServiceProcess; 5] {
        [
            self.default_sampler,
            self.always_off,
            self.ratio_zero,
            self.parent_ratio,
            self.disabled,
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_trace_and_span_id_of_their_span() {
    let collector = OtlpCollector::start().await;
    let product = start_product(
        "json-logs",
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.grpc_endpoint()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("LOG_FORMAT", "json"),
            // The line per request is at DEBUG.
            ("RUST_LOG", "info,shared::http=debug"),
        ]),
    )
    .await;
    let trace_id = "44444444444444444444444444444444";
    assert_eq!(
        get_with_parent(&product, "/api/products/5", trace_id, "01").await,
        200
    );
    let trace = collector
        .wait_for_trace(trace_id, Duration::from_secs(20), |t| {
            t.has("product-service", "GET /api/products/{id}")
        })
        .await;
    let server = trace.find("product-service", "GET /api/products/{id}");

    let logs = product.logs();
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    let request_line = lines
        .iter()
        .find(|l| l["message"] == "request completed" && l["trace_id"] == trace_id)
        .unwrap_or_else(|| panic!("no request line with the trace id:\n{logs}"));
    assert_eq!(request_line["span_id"], server.span_id.as_str());
    assert_eq!(request_line["fields"]["status"], 200);
    stop_and_flush(product).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_endpoint_this_build_cannot_reach_stops_the_service_saying_what_to_write() {
    let log_dir = bin_dir().join("e2e-logs").join("bad-otlp-endpoint");
    for (value, hint) in [
        ("jaeger:4317", "write http://jaeger:4317"),
        ("https://otel.example.com:4317", "without TLS"),
    ] {
        let vars = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", value)]);
        let logs = refused_at_start(Service::Product, &vars, &log_dir).await;
        assert!(
            logs.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && logs.contains(hint),
            "{value}: {logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_agent_host_alone_sends_otlp_to_that_hosts_port_4317_and_says_so() {
    // 127.0.0.2 is loopback too; its port 4317 is ours even where a local
    // collector holds 127.0.0.1:4317.
    let collector = OtlpCollector::start_at("127.0.0.2:4317").await;
    let product = start_product(
        "jaeger-agent",
        env(&[
            ("JAEGER_AGENT_HOST", "127.0.0.2"),
            ("JAEGER_AGENT_PORT", "6831"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ]),
    )
    .await;
    let logs = product.logs();
    assert!(
        logs.contains("JAEGER_AGENT_HOST=127.0.0.2") && logs.contains("http://127.0.0.2:4317"),
        "start-up log should explain the OTLP endpoint:\n{logs}"
    );
    let trace_id = "55555555555555555555555555555555";
    assert_eq!(
        get_with_parent(&product, "/api/products/7", trace_id, "01").await,
        200
    );
    collector
        .wait_for_trace(trace_id, Duration::from_secs(20), |t| {
            t.has("product-service", "catalog-lookup")
        })
        .await;
    stop_and_flush(product).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_quiets_the_logs_but_never_drops_spans_and_text_logs_carry_trace_ids() {
    let collector = OtlpCollector::start().await;
    let grpc = collector.grpc_endpoint();
    let quiet = start_product(
        "rust-log-warn",
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "warn"),
            ("OTEL_SERVICE_NAME", "quiet-product"),
        ]),
    )
    .await;
    let chatty = start_product(
        "rust-log-debug",
        env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "info,shared::http=debug"),
        ]),
    )
    .await;
    let quiet_trace = "66666666666666666666666666666666";
    let chatty_trace = "77777777777777777777777777777777";
    assert_eq!(
        get_with_parent(&quiet, "/api/products/1", quiet_trace, "01").await,
        200
    );
    assert_eq!(
        get_with_parent(&chatty, "/api/products/1", chatty_trace, "01").await,
        200
    );

    // Spans of info level still reach the collector with RUST_LOG=warn.
    collector
        .wait_for_trace(quiet_trace, Duration::from_secs(20), |t| {
            t.has("quiet-product", "catalog-lookup")
                && t.has("quiet-product", "GET /api/products/{id}")
        })
        .await;
    assert!(
        !quiet.logs().contains("request completed"),
        "{}",
        quiet.logs()
    );

    // The default text format puts the ids of the span on the line.
    let trace = collector
        .wait_for_trace(chatty_trace, Duration::from_secs(20), |t| {
            t.has("product-service", "GET /api/products/{id}")
        })
        .await;
    let server = trace.find("product-service", "GET /api/products/{id}");
    let logs = chatty.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("request completed") && l.contains(chatty_trace))
        .unwrap_or_else(|| panic!("no request line with the trace id:\n{logs}"));
    assert!(
        line.contains(&format!(
            "trace_id={chatty_trace} span_id={}",
            server.span_id
        )),
        "{line}"
    );
    assert!(
        line.contains(" DEBUG ") && line.contains("status=200"),
        "{line}"
    );
    stop_and_flush(quiet).await;
    stop_and_flush(chatty).await;
}

/// A burst of spans twice the SDK's default queue (2,048) reaches the
/// collector whole once the provider is flushed: the platform's queue and
/// its exports in flight hold it (with the SDK's defaults about 2,500 of the
/// 4,000 arrive), and `force_flush` returns once every export has ended.
/// Spans ended after it arrive by the time the shutdown returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_spans_larger_than_the_sdk_queue_reaches_the_collector_whole() {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use shared::telemetry::{export_pipeline, ExportTarget};

    const BURST: usize = 4_000;
    let collector = OtlpCollector::start().await;
    let target = ExportTarget::grpc(collector.grpc_endpoint());
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name("burst")
        .build();
    // The guard blocks while it flushes: off the async threads.
    let (flushed, guard) = tokio::task::spawn_blocking(move || {
        let guard = export_pipeline(&target, resource).expect("export pipeline");
        let tracer = guard.provider().expect("provider").tracer("burst");
        for i in 0..BURST {
            let mut span = tracer.start(format!("burst-{i}"));
            span.end();
        }
        let flushed = guard.provider().expect("provider").force_flush();
        (flushed, guard)
    })
    .await
    .expect("burst thread");
    assert!(flushed.is_ok(), "{flushed:?}");
    assert_eq!(collector.spans().len(), BURST, "delivered when flushed");

    tokio::task::spawn_blocking(move || {
        let tracer = guard.provider().expect("provider").tracer("burst");
        tracer.start("after-the-flush").end();
        guard.shutdown();
    })
    .await
    .expect("shutdown thread");
    let spans = collector.spans();
    assert!(
        spans.iter().any(|s| s.name == "after-the-flush"),
        "delivered at shutdown"
    );
    let spans: Vec<_> = spans
        .into_iter()
        .filter(|s| s.name.starts_with("burst-"))
        .collect();
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        (spans.len(), names.len()),
        (BURST, BURST),
        "every span of the burst, once each"
    );
}
