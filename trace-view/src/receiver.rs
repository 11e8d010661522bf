//! The OTLP receiver: gRPC (`TraceService/Export`, port 4317 by convention)
//! and HTTP/protobuf (`POST /v1/traces`, port 4318), both handing what they
//! decode to one [`SpanSink`], in the shape the sink asks for: the whole
//! request, or only what it needs ([`SpanTally`](crate::SpanTally)).
//!
//! A request that cannot be decoded gets the protocol's error (gRPC: the
//! status tonic gives a bad message; HTTP: `400` with a `google.rpc.Status`
//! body, `415` for an encoding other than protobuf) and changes nothing;
//! nothing a client sends stops the receiver.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Bytes,
    http::{header::CONTENT_TYPE, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{
    body::Body as GrpcBody,
    codegen::{http, Body, BoxFuture, Service, StdError},
    server::{Grpc, NamedService, UnaryService},
};
use tonic_prost::ProstCodec;

/// Largest export request accepted (the SDKs send far less per batch).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Where received export requests go, decoded as [`Request`](Self::Request).
///
/// A sink that keeps spans asks for the whole
/// [`ExportTraceServiceRequest`](crate::ExportTraceServiceRequest) and
/// turns it into spans with [`flatten`](crate::flatten). One that only
/// counts them (`--discard`) asks for a [`SpanTally`](crate::SpanTally):
/// decoding every name, id and attribute was most of a counting sink's CPU,
/// and in a benchmark that CPU is taken from the services it measures.
pub trait SpanSink: Send + Sync + 'static {
    /// What an export request is decoded into: any message with the fields
    /// of `ExportTraceServiceRequest` it needs (the others are skipped).
    type Request: Message + Default + Send + 'static;

    /// Takes one decoded export request.
    fn accept(&self, request: Self::Request);
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
    pub async fn start<S: SpanSink>(grpc: &str, http: &str, sink: Arc<S>) -> std::io::Result<Self> {
        let grpc_listener = TcpListener::bind(grpc).await?;
        let http_listener = TcpListener::bind(http).await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;

        let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
        let service = GrpcReceiver { sink: sink.clone() };
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
                    async move { export_http(&headers, body, &*sink) }
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

/// `TraceService/Export` over gRPC, decoding into the sink's own
/// [`Request`](SpanSink::Request) type (the generated server decodes only
/// the full `ExportTraceServiceRequest`). Any other method is
/// `UNIMPLEMENTED`.
struct GrpcReceiver<S> {
    sink: Arc<S>,
}

impl<S> Clone for GrpcReceiver<S> {
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
        }
    }
}

impl<S> NamedService for GrpcReceiver<S> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl<S, B> Service<http::Request<B>> for GrpcReceiver<S>
where
    S: SpanSink,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<GrpcBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async {
                Ok(tonic::Status::unimplemented("only TraceService/Export is served").into_http())
            });
        }
        let export = Export {
            sink: self.sink.clone(),
        };
        Box::pin(async move {
            let mut grpc =
                Grpc::new(ProstCodec::<ExportTraceServiceResponse, S::Request>::default())
                    .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), None);
            Ok(grpc.unary(export, request).await)
        })
    }
}

/// One `Export` call, handed to the sink.
struct Export<S> {
    sink: Arc<S>,
}

impl<S: SpanSink> UnaryService<S::Request> for Export<S> {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<S::Request>) -> Self::Future {
        self.sink.accept(request.into_inner());
        Box::pin(async { Ok(tonic::Response::new(ExportTraceServiceResponse::default())) })
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

fn export_http<S: SpanSink>(headers: &HeaderMap, body: Bytes, sink: &S) -> Response {
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
    match S::Request::decode(body) {
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
