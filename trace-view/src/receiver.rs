//! The OTLP receiver: gRPC (`TraceService/Export`, port 4317 by convention)
//! and HTTP/protobuf (`POST /v1/traces`, port 4318), both handing what they
//! decode to one [`SpanSink`].
//!
//! A request that cannot be decoded gets the protocol's error (gRPC: the
//! status tonic gives a bad message; HTTP: `400` with a `google.rpc.Status`
//! body, `415` for an encoding other than protobuf) and changes nothing;
//! nothing a client sends stops the receiver.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    http::{header::CONTENT_TYPE, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::{net::TcpListener, sync::oneshot};

/// Largest export request accepted (the SDKs send far less per batch).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Where received export requests go. A sink that keeps spans turns a
/// request into them with [`flatten`](crate::flatten); one that only counts
/// them (`--discard`) uses [`span_count`](crate::span_count) and skips that
/// work, which costs more than decoding (a map of attributes per span).
pub trait SpanSink: Send + Sync + 'static {
    /// Takes one decoded export request.
    fn accept(&self, request: ExportTraceServiceRequest);
}

/// The two listeners. Dropping it (or [`stop`](Self::stop)) stops both.
pub struct Receiver {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    stops: Vec<oneshot::Sender<()>>,
}

impl Receiver {
    /// Binds gRPC to `grpc` and HTTP to `http` (`127.0.0.1:0` for any free
    /// port) and serves until stopped; needs a Tokio runtime.
    pub async fn start(grpc: &str, http: &str, sink: Arc<dyn SpanSink>) -> std::io::Result<Self> {
        let grpc_listener = TcpListener::bind(grpc).await?;
        let http_listener = TcpListener::bind(http).await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;

        let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(GrpcReceiver { sink: sink.clone() })
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                    async {
                        let _ = grpc_stopped.await;
                    },
                )
                .await;
        });

        let (stop_http, http_stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let sink = sink.clone();
                    async move { export_http(&headers, body, sink.as_ref()) }
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES));
        tokio::spawn(async move {
            let _ = axum::serve(http_listener, app)
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .await;
        });

        Ok(Self {
            grpc_addr,
            http_addr,
            stops: vec![stop_grpc, stop_http],
        })
    }

    /// The gRPC listener's address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops listening: exporters pointed here now fail to connect.
    pub fn stop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

struct GrpcReceiver {
    sink: Arc<dyn SpanSink>,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.sink.accept(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP errors carry.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC's code for INVALID_ARGUMENT.
const INVALID_ARGUMENT: i32 = 3;

fn export_http(headers: &HeaderMap, body: Bytes, sink: &dyn SpanSink) -> Response {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-protobuf") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-type {content_type:?}: this receiver takes application/x-protobuf"),
        );
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            sink.accept(request);
            (
                StatusCode::OK,
                [(CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Err(err) => error(
            StatusCode::BAD_REQUEST,
            format!("not an ExportTraceServiceRequest: {err}"),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    let body = RpcStatus {
        code: INVALID_ARGUMENT,
        message,
    }
    .encode_to_vec();
    (status, [(CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}
