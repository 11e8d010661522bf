//! The SERVER span for each request, named and attributed as the current
//! OpenTelemetry HTTP semantic conventions say (`http.request.method`,
//! `http.route`, `http.response.status_code`, ...). tracing-actix-web's
//! default builder still emits the older names.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    Error,
};
use opentelemetry::trace::Status;
use tracing::{field::Empty, Span};
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::propagation::extract_context;

/// Root span builder for `TracingLogger::<ServerSpan>`: continues the caller's
/// trace from `traceparent` and records the outcome.
pub struct ServerSpan;

impl RootSpanBuilder for ServerSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        if super::is_operational(request.path()) {
            return Span::none();
        }
        let method = request.method().as_str();
        let route = request.match_pattern();
        // Without a matched route the name is the method alone (low cardinality).
        let name = match &route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        };
        let connection = request.connection_info().clone();
        let (host, port) = split_host(connection.host());
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %name,
            otel.kind = "server",
            http.request.method = %method,
            http.route = Empty,
            url.path = %request.path(),
            url.query = Empty,
            url.scheme = %connection.scheme(),
            server.address = %host,
            server.port = Empty,
            client.address = connection.realip_remote_addr().unwrap_or_default(),
            user_agent.original = request
                .headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            network.protocol.version = %protocol_version(request.version()),
            http.response.status_code = Empty,
            error.type = Empty,
        );
        // Only a matched route has a template; unmatched requests carry none.
        if let Some(route) = &route {
            span.record("http.route", route.as_str());
        }
        if !request.query_string().is_empty() {
            span.record("url.query", request.query_string());
        }
        if let Some(port) = port {
            span.record("server.port", port);
        }
        if let Err(err) = span.set_parent(extract_context(request.headers())) {
            tracing::debug!(error = %err, "server span already started; parent not set");
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.response.status_code", status.as_u16() as i64);
        // One line per request at DEBUG: at INFO it cost a quarter of the
        // product service's throughput (BENCHMARKS.md), and the SERVER span
        // says the same. (At INFO it would also become a span event.)
        if tracing::enabled!(tracing::Level::DEBUG) {
            if let Ok(response) = outcome {
                let request = response.request();
                tracing::debug!(parent: &span, status = status.as_u16(), method = %request.method(), path = %request.path(), "request completed");
            }
        }
        // For SERVER spans only 5xx is an error: a 4xx is the client's.
        if status.is_server_error() {
            span.record("error.type", status.as_str());
            let message = match outcome {
                Ok(response) => response
                    .response()
                    .error()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| status.to_string()),
                Err(error) => error.to_string(),
            };
            span.set_status(Status::error(message));
        }
    }
}

fn split_host(host: &str) -> (&str, Option<i64>) {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => {
            match port.parse::<i64>() {
                Ok(port) => (name, Some(port)),
                Err(_) => (host, None),
            }
        }
        _ => (host, None),
    }
}

fn protocol_version(version: actix_web::http::Version) -> &'static str {
    use actix_web::http::Version;
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "unknown",
    }
}
