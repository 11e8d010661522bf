//! An in-process OTLP receiver: gRPC (`TraceService/Export`) and HTTP/protobuf
//! (`POST /v1/traces`), both storing the spans they get in one list.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value::Value, AnyValue, KeyValue},
};
use prost::Message;
use tokio::{net::TcpListener, sync::oneshot};

/// OTLP span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Unspecified or unknown.
    Unspecified,
    /// Internal.
    Internal,
    /// Server.
    Server,
    /// Client.
    Client,
    /// Producer.
    Producer,
    /// Consumer.
    Consumer,
}

impl From<i32> for SpanKind {
    fn from(kind: i32) -> Self {
        match kind {
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => Self::Unspecified,
        }
    }
}

/// A span event.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// Event name.
    pub name: String,
    /// Event attributes, as strings.
    pub attributes: HashMap<String, String>,
}

/// A span as the receiver got it, with its service's resource.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the resource.
    pub service: String,
    /// All resource attributes, as strings.
    pub resource: HashMap<String, String>,
    /// 32 hex chars.
    pub trace_id: String,
    /// 16 hex chars.
    pub span_id: String,
    /// 16 hex chars, empty for a root.
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Attributes, as strings (ints and bools formatted).
    pub attributes: HashMap<String, String>,
    /// Events.
    pub events: Vec<ReceivedEvent>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// Start, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_ns: u64,
    /// Status message.
    pub status_message: String,
    /// Links: `(trace id, span id)` of each linked span.
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// An attribute's value, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<&ReceivedEvent> {
        self.events.iter().find(|e| e.name == name)
    }

    /// Whether the span links to `other`.
    pub fn links_to(&self, other: &ReceivedSpan) -> bool {
        self.links
            .iter()
            .any(|(trace, span)| *trace == other.trace_id && *span == other.span_id)
    }

    /// Whether the span's status is ERROR.
    pub fn is_error(&self) -> bool {
        self.status_code == 2
    }
}

type Store = Arc<Mutex<Vec<ReceivedSpan>>>;

/// The receiver. Dropping it (or [`stop`](Self::stop)) stops both listeners.
pub struct OtlpCollector {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    spans: Store,
    stops: Vec<oneshot::Sender<()>>,
}

impl OtlpCollector {
    /// Starts both listeners on free loopback ports.
    pub async fn start() -> Self {
        Self::start_at("127.0.0.1:0").await
    }

    /// Starts the gRPC listener on `grpc_addr` (the HTTP one on a free port).
    pub async fn start_at(grpc_addr: &str) -> Self {
        let spans: Store = Arc::default();
        let mut stops = Vec::new();

        let grpc = TcpListener::bind(grpc_addr)
            .await
            .unwrap_or_else(|e| panic!("bind the OTLP gRPC receiver to {grpc_addr}: {e}"));
        let grpc_addr = grpc.local_addr().expect("grpc addr");
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        let service = TraceServiceServer::new(GrpcReceiver {
            spans: spans.clone(),
        });
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
        });

        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let http_addr = http.local_addr().expect("http addr");
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        let store = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(request) => {
                            store.lock().unwrap().extend(flatten(request));
                            let response = ExportTraceServiceResponse::default().encode_to_vec();
                            (
                                axum::http::StatusCode::OK,
                                [("content-type", "application/x-protobuf")],
                                response,
                            )
                        }
                        Err(_) => (
                            axum::http::StatusCode::BAD_REQUEST,
                            [("content-type", "text/plain")],
                            b"not an ExportTraceServiceRequest".to_vec(),
                        ),
                    }
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(http, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });

        Self {
            grpc_addr,
            http_addr,
            spans,
            stops,
        }
    }

    /// `http://127.0.0.1:PORT` of the gRPC listener (for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with the default protocol).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:PORT` of the HTTP/protobuf listener (the exporter
    /// appends `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one trace received so far.
    pub fn trace(&self, trace_id: &str) -> crate::Trace {
        crate::Trace::new(
            self.spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect(),
        )
    }

    /// Waits until the spans of `trace_id` satisfy `ready` (spans arrive in
    /// batches from several processes), or panics after `timeout` showing
    /// what did arrive.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        timeout: Duration,
        ready: impl Fn(&crate::Trace) -> bool,
    ) -> crate::Trace {
        let deadline = Instant::now() + timeout;
        loop {
            let trace = self.trace(trace_id);
            if ready(&trace) {
                return trace;
            }
            if Instant::now() > deadline {
                panic!(
                    "trace {trace_id} incomplete after {timeout:?}; received:\n{}",
                    trace.render()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops listening: exporters pointed here now fail to connect.
    pub fn stop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self.stop();
    }
}

struct GrpcReceiver {
    spans: Store,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.spans
            .lock()
            .unwrap()
            .extend(flatten(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                let status = span.status.unwrap_or_default();
                out.push(ReceivedSpan {
                    service: service.clone(),
                    resource: resource.clone(),
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    kind: SpanKind::from(span.kind),
                    attributes: attributes(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| ReceivedEvent {
                            name: e.name.clone(),
                            attributes: attributes(&e.attributes),
                        })
                        .collect(),
                    status_code: status.code,
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    status_message: status.message,
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
        .collect()
}

fn any_value(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
