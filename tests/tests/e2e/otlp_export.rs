//! What a service sends to an OTLP collector, seen from collectors that
//! record each request: the `OTEL_EXPORTER_OTLP_HEADERS` on every export
//! over gRPC and HTTP, the `/v1/traces` path and content type, the
//! instrumentation scope, a transient
//! failure retried, a refusal not retried, and a partial success logged.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use e2e_tests::{Service, ServiceProcess};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One export request as a collector saw it.
#[derive(Debug, Clone)]
struct Export {
    path: String,
    /// Header names lowercase.
    headers: Vec<(String, String)>,
    spans: Vec<String>,
    /// The spans' ids: what tells one batch from another.
    span_ids: Vec<Vec<u8>>,
    /// Each `ScopeSpans`' instrumentation scope: name and version.
    scopes: Vec<(String, String)>,
    /// What the collector answered (HTTP status; 200 for gRPC's OK).
    status: u16,
    at: Instant,
}

impl Export {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn span_names(request: &ExportTraceServiceRequest) -> Vec<String> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

fn scopes(request: &ExportTraceServiceRequest) -> Vec<(String, String)> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| {
            let scope = s.scope.clone().unwrap_or_default();
            (scope.name, scope.version)
        })
        .collect()
}

fn span_ids(request: &ExportTraceServiceRequest) -> Vec<Vec<u8>> {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.span_id.clone())
        .collect()
}

type Seen = Arc<Mutex<Vec<Export>>>;

/// A gRPC collector that records each request and answers with
/// `partial_success` when given one.
struct RecordingGrpc {
    seen: Seen,
    partial: Option<ExportTracePartialSuccess>,
}

#[tonic::async_trait]
impl TraceService for RecordingGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        self.seen.lock().unwrap().push(Export {
            path: "grpc".into(),
            headers,
            spans: span_names(request.get_ref()),
            span_ids: span_ids(request.get_ref()),
            scopes: scopes(request.get_ref()),
            status: 200,
            at: Instant::now(),
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: self.partial.clone(),
        }))
    }
}

async fn grpc_collector(partial: Option<ExportTracePartialSuccess>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Seen::default();
    let service = TraceServiceServer::new(RecordingGrpc {
        seen: seen.clone(),
        partial,
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (endpoint, seen)
}

/// An HTTP/1.1 collector that records each request and answers the n-th
/// with `statuses[n]` (the last one from then on); a 429 comes with
/// `Retry-After: 1`.
async fn http_collector(statuses: &'static [u16]) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Seen::default();
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut socket = BufReader::new(socket);
                // Keep-alive: one request after another on the connection.
                loop {
                    let mut line = String::new();
                    if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut line = String::new();
                        socket.read_line(&mut line).await.unwrap();
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        let (name, value) = line.split_once(':').unwrap();
                        headers.push((name.trim().to_lowercase(), value.trim().to_string()));
                    }
                    let length: usize = headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .map(|(_, v)| v.parse().unwrap())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    socket.read_exact(&mut body).await.unwrap();
                    let (spans, ids, scopes) = ExportTraceServiceRequest::decode(body.as_slice())
                        .map(|r| (span_names(&r), span_ids(&r), scopes(&r)))
                        .unwrap_or_else(|e| (vec![format!("undecodable: {e}")], vec![], vec![]));
                    let status = {
                        let mut seen = recorded.lock().unwrap();
                        let status = statuses[seen.len().min(statuses.len() - 1)];
                        seen.push(Export {
                            path,
                            headers,
                            spans,
                            span_ids: ids,
                            scopes,
                            status,
                            at: Instant::now(),
                        });
                        status
                    };
                    let retry_after = if status == 429 {
                        "retry-after: 1\r\n"
                    } else {
                        ""
                    };
                    let answer =
                        format!("HTTP/1.1 {status} X\r\n{retry_after}content-length: 0\r\n\r\n");
                    if socket.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, seen)
}

async fn product(label: &str, vars: &[(&str, &str)]) -> ServiceProcess {
    let mut vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    // The failure log's repeats are at DEBUG.
    vars.push((
        "RUST_LOG".into(),
        "info,shared::telemetry::exporter=debug".into(),
    ));
    ServiceProcess::start(Service::Product, &vars, label).await
}

/// The product service exporting OTLP/HTTP to `endpoint`.
async fn over_http(label: &str, endpoint: &str) -> ServiceProcess {
    product(
        label,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ],
    )
    .await
}

async fn one_request(product: &ServiceProcess) {
    let status = reqwest::get(format!("{}/api/products", product.url()))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// The exports seen once `ready` holds for them, or a failure saying what
/// was seen and what the service logged.
async fn exports_once(
    seen: &Seen,
    product: &ServiceProcess,
    what: &str,
    ready: impl Fn(&[Export]) -> bool,
) -> Vec<Export> {
    let found = e2e_tests::within(Duration::from_secs(15), || {
        let exports = seen.lock().unwrap().clone();
        std::future::ready(ready(&exports).then_some(exports))
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "{what}; seen: {:?}\nlogs:\n{}",
            seen.lock().unwrap(),
            product.logs()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_headers_go_with_every_export_over_grpc_and_http() {
    const HEADERS: &str = "api-key=s3cr%20t%3D1, X-Tenant = blue";
    let (grpc, grpc_seen) = grpc_collector(None).await;
    let over_grpc_service = product(
        "otlp-headers-grpc",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc),
            ("OTEL_EXPORTER_OTLP_HEADERS", HEADERS),
        ],
    )
    .await;
    let (http, http_seen) = http_collector(&[200]).await;
    let over_http_service = product(
        "otlp-headers-http",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &http),
            ("OTEL_EXPORTER_OTLP_HEADERS", HEADERS),
        ],
    )
    .await;
    one_request(&over_grpc_service).await;
    one_request(&over_http_service).await;

    for (seen, service, content_type, path) in [
        (&grpc_seen, &over_grpc_service, "application/grpc", "grpc"),
        (
            &http_seen,
            &over_http_service,
            "application/x-protobuf",
            "/v1/traces",
        ),
    ] {
        let exports = exports_once(seen, service, "the request's spans", |exports| {
            exports
                .iter()
                .any(|e| e.spans.iter().any(|s| s == "GET /api/products"))
        })
        .await;
        for export in &exports {
            assert_eq!(export.path, path);
            assert_eq!(export.header("api-key"), Some("s3cr t=1"), "{export:?}");
            assert_eq!(export.header("x-tenant"), Some("blue"), "{export:?}");
            assert_eq!(export.header("content-type"), Some(content_type));
            let agent = export.header("user-agent").unwrap_or_default();
            assert!(
                agent.starts_with("async-micro-otlp-exporter-rust/"),
                "{agent}"
            );
            // The scope names the instrumenting library, not the service.
            let platform = (
                "async-micro".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            );
            assert!(
                export.scopes.iter().all(|scope| *scope == platform),
                "{:?}",
                export.scopes
            );
        }
    }
}

/// Every batch the collector answered `retryable` with came again later
/// and was then taken, and the request's server span was among those taken.
fn every_refused_batch_came_again(exports: &[Export], retryable: u16) -> bool {
    let taken = |batch: &Export| {
        exports
            .iter()
            .any(|e| e.status == 200 && e.span_ids == batch.span_ids && e.at > batch.at)
    };
    exports.iter().any(|e| e.status == retryable)
        && exports.iter().filter(|e| e.status == retryable).all(taken)
        && exports
            .iter()
            .any(|e| e.status == 200 && e.spans.iter().any(|s| s == "GET /api/products"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_briefly_unavailable_gets_the_batch_again_and_a_refusal_is_not_retried() {
    // 503 is transient: the same batch is sent again and then delivered.
    // (One request's spans may fall into more than one batch; each batch
    // is checked on its own.)
    let (flaky, flaky_seen) = http_collector(&[503, 200]).await;
    let retried = over_http("otlp-retry", &flaky).await;
    // 429 with `Retry-After: 1`: the batch comes again, a second later.
    let (throttling, throttling_seen) = http_collector(&[429, 200]).await;
    let throttled = over_http("otlp-retry-after", &throttling).await;
    // 400 is not: the batch is dropped and the failure logged.
    let (refusing, refusing_seen) = http_collector(&[400]).await;
    let refused = over_http("otlp-refused", &refusing).await;
    one_request(&retried).await;
    one_request(&throttled).await;
    one_request(&refused).await;

    exports_once(&flaky_seen, &retried, "the 503 batch again", |e| {
        every_refused_batch_came_again(e, 503)
    })
    .await;
    assert!(
        !retried.logs().contains("span export failed"),
        "{}",
        retried.logs()
    );

    let exports = exports_once(&throttling_seen, &throttled, "the 429 batch again", |e| {
        every_refused_batch_came_again(e, 429)
    })
    .await;
    let first = &exports[0];
    let again = exports
        .iter()
        .find(|e| e.status == 200 && e.span_ids == first.span_ids)
        .expect("the throttled batch again");
    assert!(
        again.at.duration_since(first.at) >= Duration::from_millis(950),
        "sent again after {:?}, before the collector's Retry-After of 1 s",
        again.at.duration_since(first.at)
    );

    exports_once(&refusing_seen, &refused, "the batch once", |e| {
        !e.is_empty()
    })
    .await;
    e2e_tests::eventually(Duration::from_secs(10), "the refusal logged", || {
        std::future::ready(refused.logs().contains("span export failed").then_some(()))
    })
    .await;
    // Longer than the three retries would have taken (100 + 200 + 400 ms
    // and jitter): each batch still sent once.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let refused_batches: Vec<Vec<Vec<u8>>> = refusing_seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.span_ids.clone())
        .collect();
    let mut distinct = refused_batches.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), refused_batches.len(), "not retried");
    let logs = refused.logs();
    assert!(logs.contains("HTTP 400"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_a_collector_refuses_in_a_partial_success_are_logged_with_its_reason() {
    let (grpc, seen) = grpc_collector(Some(ExportTracePartialSuccess {
        rejected_spans: 1,
        error_message: "span too old".into(),
    }))
    .await;
    let service = product("otlp-partial", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc)]).await;
    one_request(&service).await;
    exports_once(&seen, &service, "an export", |e| !e.is_empty()).await;
    let logs = e2e_tests::eventually(Duration::from_secs(10), "the refusal logged", || {
        let logs = service.logs();
        std::future::ready(logs.contains("span export failed").then_some(logs))
    })
    .await;
    assert!(
        logs.contains("refused 1 of") && logs.contains("span too old"),
        "{logs}"
    );
}
