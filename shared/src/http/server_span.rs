//! The SERVER span for each request, named and attributed as the current
//! OpenTelemetry HTTP semantic conventions say (`http.request.method`,
//! `http.route`, `http.response.status_code`, ...), and the W3C
//! `traceresponse` header (`00-<trace-id>-<span-id>-<flags>`) naming it, so
//! a client can find the trace of any response it got.
//!
//! A middleware of our own rather than tracing-actix-web's `TracingLogger`:
//! that crate's releases trail OpenTelemetry's (it would hold every
//! opentelemetry* crate a version back), its default span uses the older
//! attribute names, and per request it makes a request id and two request
//! extensions that nothing here reads.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::{
    body::{BodySize, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    web::Bytes,
    Error,
};
use futures_util::{future, FutureExt as _};
use opentelemetry::trace::{Status, TraceContextExt};
use tracing::{field::Empty, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::propagation::extract_context;
use crate::telemetry::{w3c, InSpan as _};

/// The response header naming the SERVER span (W3C Trace Context Level 2).
const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// Middleware (`middleware::from_fn(server_span)`, outermost): each request
/// runs inside its SERVER span, which continues the caller's trace from
/// `traceparent`, records the response status and stays open until the
/// response body has been sent; the response carries `traceresponse`.
pub async fn server_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let span = request_span(&req);
    // Read here, once: the ids are fixed from the span's start. (None for
    // the operational paths, whose span is `Span::none()`.)
    let traceresponse = w3c::header_value(span.context().span().span_context())
        .and_then(|value| HeaderValue::try_from(value).ok());
    // The inner services are called inside the span too, not only polled:
    // their synchronous start already belongs to the request. Called lazily,
    // on the first poll, so that call and poll share one entry of the span
    // (each entry and exit is a trip through every layer of the subscriber).
    let outcome = future::lazy(|_| next.call(req))
        .flatten()
        .in_span(&span)
        .await;
    record_outcome(&span, &outcome);
    outcome.map(|mut response| {
        if let Some(value) = traceresponse {
            response.headers_mut().insert(TRACERESPONSE, value);
        }
        response.map_body(|_, body| SpannedBody::new(body, span))
    })
}

/// The SERVER span for `request` (`Span::none()` for operational paths).
fn request_span(request: &ServiceRequest) -> Span {
    if super::is_operational(request.path()) {
        return Span::none();
    }
    let method = request.method().as_str();
    let route = request.match_pattern();
    let name = span_name(method, route.as_deref());
    let connection = request.connection_info();
    let (host, port) = split_host(connection.host());
    let query = Some(request.query_string()).filter(|query| !query.is_empty());
    // Strings are given as `&str`, not `%` (Display): tracing-opentelemetry
    // formats a Display value through `format!`, a str it only copies. What is
    // known now is given now (a `None` records nothing): each later `record`
    // is another trip through every layer of the subscriber.
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = name.as_str(),
        otel.kind = "server",
        http.request.method = method,
        // Only a matched route has a template; unmatched requests carry none.
        http.route = route.as_deref(),
        url.path = request.path(),
        url.query = query,
        url.scheme = connection.scheme(),
        server.address = host,
        server.port = port,
        client.address = connection.realip_remote_addr().unwrap_or_default(),
        user_agent.original = request
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        network.protocol.version = protocol_version(request.version()),
        http.response.status_code = Empty,
        error.type = Empty,
    );
    if let Err(err) = span.set_parent(extract_context(request.headers())) {
        tracing::debug!(error = %err, "server span already started; parent not set");
    }
    span
}

/// The name of an HTTP SERVER or CLIENT span: `{method} {route}`, or the
/// method alone when no route matched (a raw path would make names of
/// unbounded cardinality).
pub fn span_name(method: &str, route: Option<&str>) -> String {
    match route {
        Some(route) => {
            let mut name = String::with_capacity(method.len() + 1 + route.len());
            name.push_str(method);
            name.push(' ');
            name.push_str(route);
            name
        }
        None => method.to_owned(),
    }
}

/// Records the response status on the span, and an error status for a 5xx.
fn record_outcome<B: MessageBody>(span: &Span, outcome: &Result<ServiceResponse<B>, Error>) {
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
            tracing::debug!(parent: span, status = status.as_u16(), method = %request.method(), path = %request.path(), "request completed");
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

pin_project_lite::pin_project! {
    /// A response body that holds the request's span until it has been sent
    /// (the span ends when its last handle drops). A streamed body is polled
    /// inside the span, so that what producing it does belongs to the request;
    /// a complete one (the usual JSON answer) only holds it, sparing the
    /// span an entry and an exit per poll.
    #[project = SpannedBodyProjection]
    enum SpannedBody<B> {
        Complete {
            bytes: Bytes,
            // The inner body's own, kept: a body that is no body at all
            // (`BodySize::None`) also converts to empty bytes, and must still
            // be sent without a `Content-Length`.
            size: BodySize,
            span: Span,
        },
        Streamed {
            #[pin]
            body: B,
            span: Span,
        },
    }
}

impl<B: MessageBody> SpannedBody<B> {
    fn new(body: B, span: Span) -> Self {
        let size = body.size();
        match body.try_into_bytes() {
            Ok(bytes) => Self::Complete { bytes, size, span },
            Err(body) => Self::Streamed { body, span },
        }
    }
}

impl<B: MessageBody> MessageBody for SpannedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        match self {
            Self::Complete { size, .. } => *size,
            Self::Streamed { body, .. } => body.size(),
        }
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        match self.project() {
            SpannedBodyProjection::Complete { bytes, .. } => {
                // Bytes never fail; the answer is sent in one piece.
                Pin::new(bytes)
                    .poll_next(cx)
                    .map(|chunk| chunk.map(|chunk| chunk.map_err(|never| match never {})))
            }
            SpannedBodyProjection::Streamed { body, span } => span.in_scope(|| body.poll_next(cx)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_recorder::{record_spans, record_spans_watching, span_named};
    use actix_web::{middleware::from_fn, test as actix_test, web, App, HttpResponse};
    use opentelemetry::trace::SpanKind;
    use opentelemetry_sdk::trace::SpanData;

    const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const CALLER_SPAN: &str = "b7ad6b7169203331";

    /// Sends `requests` through `server_span` to a small app and returns the
    /// finished spans.
    fn spans_of(requests: Vec<actix_test::TestRequest>) -> Vec<SpanData> {
        spans_and_traceresponses_of(requests).0
    }

    /// [`spans_of`], and each response's `traceresponse` header.
    fn spans_and_traceresponses_of(
        requests: Vec<actix_test::TestRequest>,
    ) -> (Vec<SpanData>, Vec<Option<String>>) {
        crate::telemetry::install_propagator();
        let mut traceresponses = Vec::new();
        let spans = record_spans(|| {
            actix_web::rt::System::new().block_on(async {
                let app = actix_test::init_service(
                    App::new()
                        .wrap(from_fn(server_span))
                        .route(
                            "/items/{id}",
                            web::get().to(|| async {
                                tracing::info_span!("load-item")
                                    .in_scope(|| HttpResponse::Ok().body("an item"))
                            }),
                        )
                        .route(
                            "/stream",
                            web::get().to(|| async {
                                HttpResponse::Ok().streaming(futures_util::stream::once(async {
                                    let _chunk = tracing::info_span!("write-chunk").entered();
                                    Ok::<_, Error>(Bytes::from_static(b"a chunk"))
                                }))
                            }),
                        )
                        .route(
                            "/broken",
                            web::get()
                                .to(|| async { HttpResponse::InternalServerError().finish() }),
                        )
                        .route(
                            crate::http::HEALTH_PATH,
                            web::get().to(|| async { HttpResponse::Ok().finish() }),
                        ),
                )
                .await;
                for request in requests {
                    let response = actix_test::call_service(&app, request.to_request()).await;
                    traceresponses.push(
                        response
                            .headers()
                            .get("traceresponse")
                            .map(|v| v.to_str().unwrap().to_string()),
                    );
                    actix_test::read_body(response).await;
                }
            })
        });
        (spans, traceresponses)
    }

    fn attr(span: &SpanData, key: &str) -> Option<String> {
        value(span, key).map(|value| value.to_string())
    }

    fn value(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    #[test]
    fn a_request_continues_the_callers_trace_under_its_route_name() {
        let spans = spans_of(vec![actix_test::TestRequest::get()
            .uri("/items/7?fields=name")
            .insert_header(("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")))
            .insert_header(("user-agent", "curl/8"))]);

        let server = span_named(&spans, "GET /items/{id}");
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(server.span_context.trace_id().to_string(), CALLER_TRACE);
        assert_eq!(server.parent_span_id.to_string(), CALLER_SPAN);
        for (key, value) in [
            ("http.request.method", "GET"),
            ("http.route", "/items/{id}"),
            ("url.path", "/items/7"),
            ("url.query", "fields=name"),
            ("url.scheme", "http"),
            ("server.address", "localhost"),
            ("server.port", "8080"),
            ("user_agent.original", "curl/8"),
            ("network.protocol.version", "1.1"),
            ("http.response.status_code", "200"),
        ] {
            assert_eq!(attr(server, key).as_deref(), Some(value), "{key}");
        }
        // Integers, as the conventions say, not strings of digits.
        assert_eq!(value(server, "server.port"), Some(8080_i64.into()));
        assert_eq!(
            value(server, "http.response.status_code"),
            Some(200_i64.into())
        );
        assert_eq!(attr(server, "error.type"), None);
        assert_eq!(server.status, Status::Unset);

        // The handler ran inside the SERVER span.
        let handler = span_named(&spans, "load-item");
        assert_eq!(handler.parent_span_id, server.span_context.span_id());
    }

    #[test]
    fn every_traced_response_names_its_server_span_in_traceresponse() {
        let (spans, traceresponses) = spans_and_traceresponses_of(vec![
            actix_test::TestRequest::get()
                .uri("/items/7")
                .insert_header(("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))),
            actix_test::TestRequest::get().uri("/broken"),
            actix_test::TestRequest::get().uri(crate::http::HEALTH_PATH),
        ]);
        let item = span_named(&spans, "GET /items/{id}");
        assert_eq!(
            traceresponses[0].as_deref(),
            Some(format!("00-{CALLER_TRACE}-{}-01", item.span_context.span_id()).as_str())
        );
        // A new trace for a caller without one, errors included.
        let broken = span_named(&spans, "GET /broken");
        assert_eq!(
            traceresponses[1].as_deref(),
            Some(
                format!(
                    "00-{}-{}-01",
                    broken.span_context.trace_id(),
                    broken.span_context.span_id()
                )
                .as_str()
            )
        );
        // Health checks are not traced, so they name no span.
        assert_eq!(traceresponses[2], None);
    }

    #[test]
    fn a_5xx_is_an_error_a_4xx_is_not_and_health_checks_make_no_span() {
        let spans = spans_of(vec![
            actix_test::TestRequest::get().uri("/broken"),
            actix_test::TestRequest::get().uri("/nowhere"),
            actix_test::TestRequest::get().uri(crate::http::HEALTH_PATH),
        ]);
        assert_eq!(spans.len(), 2, "{spans:#?}");

        let broken = span_named(&spans, "GET /broken");
        assert_eq!(
            attr(broken, "http.response.status_code").as_deref(),
            Some("500")
        );
        assert_eq!(attr(broken, "error.type").as_deref(), Some("500"));
        assert!(
            matches!(broken.status, Status::Error { .. }),
            "{:?}",
            broken.status
        );

        // No route matched: the name is the method alone, and no http.route.
        let unmatched = span_named(&spans, "GET");
        assert_eq!(
            attr(unmatched, "http.response.status_code").as_deref(),
            Some("404")
        );
        assert_eq!(attr(unmatched, "http.route"), None);
        assert_eq!(attr(unmatched, "error.type"), None);
        assert_eq!(unmatched.status, Status::Unset);
    }

    #[test]
    fn the_span_ends_once_a_complete_body_has_been_sent() {
        crate::telemetry::install_propagator();
        let mut open_while_unsent = false;
        let spans = record_spans_watching(|finished| {
            actix_web::rt::System::new().block_on(async {
                let app = actix_test::init_service(App::new().wrap(from_fn(server_span)).route(
                    "/items/{id}",
                    web::get().to(|| async { HttpResponse::Ok().body("an item") }),
                ))
                .await;
                let request = actix_test::TestRequest::get().uri("/items/7").to_request();
                let response = actix_test::call_service(&app, request).await;
                // Its length stays known (the `Content-Length` header).
                assert_eq!(response.response().body().size(), BodySize::Sized(7));
                open_while_unsent = finished().is_empty();
                assert_eq!(actix_test::read_body(response).await, "an item");
                assert_eq!(finished().len(), 1, "the span ends once the body is sent");
            })
        });
        assert!(open_while_unsent, "the span ended before the body was sent");
        span_named(&spans, "GET /items/{id}");
    }

    #[test]
    fn a_response_without_a_body_still_has_none() {
        let spans = record_spans(|| {
            actix_web::rt::System::new().block_on(async {
                let app = actix_test::init_service(
                    App::new().wrap(from_fn(server_span)).route(
                        "/nothing",
                        web::get()
                            .to(|| async { HttpResponse::Ok().body(actix_web::body::None::new()) }),
                    ),
                )
                .await;
                let request = actix_test::TestRequest::get().uri("/nothing").to_request();
                let response = actix_test::call_service(&app, request).await;
                // No `Content-Length: 0` where the handler sent no body at all.
                assert_eq!(response.response().body().size(), BodySize::None);
            })
        });
        span_named(&spans, "GET /nothing");
    }

    #[test]
    fn a_streamed_body_is_sent_inside_the_span() {
        let spans = spans_of(vec![actix_test::TestRequest::get().uri("/stream")]);
        let server = span_named(&spans, "GET /stream");
        let chunk = span_named(&spans, "write-chunk");
        assert_eq!(chunk.parent_span_id, server.span_context.span_id());
        assert!(server.end_time >= chunk.end_time);
    }
}
