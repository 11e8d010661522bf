//! Forwarding to the upstream services.
//!
//! Routes are registered with the same templates the upstreams use
//! (`/api/tasks/{id}`), so the gateway's SERVER and CLIENT spans carry
//! low-cardinality names like `GET /api/tasks/{id}`; deeper paths fall back
//! to a catch-all and are forwarded all the same.

use std::time::Duration;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use awc::error::SendRequestError;
use opentelemetry::trace::Status;
use shared::http::{propagation::inject_context, read_body, span_name, ApiError, ErrorCode};
use shared::telemetry::{InSpan as _, W3cPropagator};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Largest request body the gateway forwards; the upstreams enforce their own
/// (smaller) limits and their 413 passes through.
const MAX_FORWARD_BODY: usize = 1024 * 1024;
/// Largest upstream response body relayed.
const MAX_RESPONSE_BODY: usize = 8 * 1024 * 1024;

/// One upstream service.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The service's name (`peer.service`).
    pub name: &'static str,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// `server.address` of the CLIENT spans: the base URL's host.
    server_address: Option<String>,
    /// `server.port` of the CLIENT spans: the base URL's port, if it names one.
    server_port: Option<i64>,
}

impl Upstream {
    /// An upstream called `name` at `base_url`.
    pub fn new(name: &'static str, base_url: &str) -> Self {
        let base_url = base_url.trim_end_matches('/').to_string();
        // Read once here rather than from every request's URL.
        let parsed = base_url.parse::<actix_web::http::Uri>().ok();
        Self {
            name,
            server_address: parsed
                .as_ref()
                .and_then(|uri| uri.host())
                .map(str::to_owned),
            server_port: parsed.and_then(|uri| uri.port_u16()).map(i64::from),
            base_url,
        }
    }
}

/// The upstreams and how long a call may take.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// Serves `/api/tasks*`.
    pub backend: Upstream,
    /// Serves `/api/products*`.
    pub product: Upstream,
    /// Per-call timeout.
    pub timeout: Duration,
}

/// Registers the proxied routes. Each upstream's routes sit in a scope: a
/// request is matched against its upstream's patterns only (the catch-all's
/// regex was evaluated for every request to the other upstream).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/tasks")
            .route("", web::route().to(to_backend))
            .route("/{id}", web::route().to(to_backend))
            .route("/{tail:.*}", web::route().to(to_backend)),
    )
    .service(
        web::scope("/api/products")
            .route("", web::route().to(to_product))
            .route("/{id}", web::route().to(to_product))
            .route("/{tail:.*}", web::route().to(to_product)),
    );
}

async fn to_backend(
    req: HttpRequest,
    body: web::Payload,
    upstreams: web::Data<Upstreams>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    forward(&upstreams.backend, upstreams.timeout, req, body, &client).await
}

async fn to_product(
    req: HttpRequest,
    body: web::Payload,
    upstreams: web::Data<Upstreams>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    forward(&upstreams.product, upstreams.timeout, req, body, &client).await
}

/// Why an upstream call produced no response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No answer within the timeout.
    #[error("{upstream} did not answer within {timeout:?}")]
    Timeout {
        /// Upstream name.
        upstream: &'static str,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// Connection refused, reset, or a broken response.
    #[error("{upstream} is unavailable: {reason}")]
    Unavailable {
        /// Upstream name.
        upstream: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl From<ProxyError> for ApiError {
    fn from(err: ProxyError) -> Self {
        match err {
            ProxyError::Timeout { .. } => {
                ApiError::new(ErrorCode::UpstreamTimeout, err.to_string())
            }
            ProxyError::Unavailable { .. } => {
                ApiError::new(ErrorCode::UpstreamUnavailable, err.to_string())
            }
        }
    }
}

async fn forward(
    upstream: &Upstream,
    timeout: Duration,
    req: HttpRequest,
    body: web::Payload,
    client: &awc::Client,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, body, MAX_FORWARD_BODY).await?;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let mut url = String::with_capacity(upstream.base_url.len() + path_and_query.len());
    url.push_str(&upstream.base_url);
    url.push_str(path_and_query);
    let method = req.method().clone();
    let template = req.match_pattern();
    let name = span_name(method.as_str(), template.as_deref());
    let span = tracing::info_span!(
        "HTTP client request",
        otel.name = name.as_str(),
        otel.kind = "client",
        http.request.method = method.as_str(),
        url.full = url.as_str(),
        url.template = template.as_deref().unwrap_or_default(),
        server.address = upstream.server_address.as_deref(),
        server.port = upstream.server_port,
        peer.service = upstream.name,
        http.response.status_code = Empty,
        error.type = Empty,
    );

    let mut outgoing = client.request(method, &url).timeout(timeout);
    let connection_named = connection_tokens(req.headers());
    for (name, value) in req.headers() {
        if !is_hop_by_hop(name)
            && !connection_named.contains(name)
            && !is_forwarding(name)
            && !is_trace_context(name)
        {
            outgoing = outgoing.append_header((name.clone(), value.clone()));
        }
    }
    // The upstream's parent is our CLIENT span, not the caller's span.
    inject_context(&span.context(), outgoing.headers_mut());
    for (name, value) in forwarding_headers(&req) {
        outgoing.headers_mut().insert(name, value);
    }

    let result = relay(upstream, timeout, outgoing, body)
        .in_span(&span)
        .await;
    match &result {
        Ok(response) => {
            let status = response.status();
            span.record("http.response.status_code", status.as_u16() as i64);
            // For CLIENT spans, 4xx is an error as well.
            if status.is_client_error() || status.is_server_error() {
                span.record("error.type", status.as_str());
                span.set_status(Status::error(status.to_string()));
            }
        }
        Err(err) => {
            let kind = match err {
                ProxyError::Timeout { .. } => "timeout",
                ProxyError::Unavailable { .. } => "upstream_unavailable",
            };
            span.record("error.type", kind);
            span.set_status(Status::error(err.to_string()));
            tracing::warn!(parent: &span, error = %err, "upstream call failed");
        }
    }
    result.map_err(ApiError::from)
}

async fn relay(
    upstream: &Upstream,
    timeout: Duration,
    outgoing: awc::ClientRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ProxyError> {
    let unavailable = |reason: String| ProxyError::Unavailable {
        upstream: upstream.name,
        reason,
    };
    let mut response = outgoing.send_body(body).await.map_err(|err| match err {
        SendRequestError::Timeout => ProxyError::Timeout {
            upstream: upstream.name,
            timeout,
        },
        other => unavailable(other.to_string()),
    })?;
    let payload = response
        .body()
        .limit(MAX_RESPONSE_BODY)
        .await
        .map_err(|err| match err {
            awc::error::PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                ProxyError::Timeout {
                    upstream: upstream.name,
                    timeout,
                }
            }
            other => unavailable(format!("reading the response: {other}")),
        })?;
    let mut relayed = HttpResponse::build(response.status());
    let connection_named = connection_tokens(response.headers());
    for (name, value) in response.headers() {
        // Our own traceresponse (set by middleware) names the gateway's span.
        if !is_hop_by_hop(name)
            && !connection_named.contains(name)
            && name != header::CONTENT_LENGTH
            && name.as_str() != "traceresponse"
        {
            relayed.append_header((name.clone(), value.clone()));
        }
    }
    Ok(relayed.body(payload))
}

/// Headers the `Connection` header names: hop-by-hop too (RFC 9110, 7.6.1).
fn connection_tokens(headers: &header::HeaderMap) -> Vec<header::HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| header::HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

/// The propagation headers: written from the CLIENT span's context, not
/// copied. (A caller's `tracestate` that came with an unusable `traceparent`
/// belongs to a trace this request does not continue.)
fn is_trace_context(name: &header::HeaderName) -> bool {
    W3cPropagator::FIELDS.contains(&name.as_str())
}

/// The headers the gateway sets itself (below), never copied from the caller.
fn is_forwarding(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
    )
}

/// `X-Forwarded-For` (the caller's chain with its peer appended),
/// `X-Forwarded-Proto` and `X-Forwarded-Host` as the gateway received them.
fn forwarding_headers(req: &HttpRequest) -> Vec<(header::HeaderName, header::HeaderValue)> {
    let mut headers = Vec::with_capacity(3);
    // The connection info is already worked out (the SERVER span read it),
    // its peer address already written as text.
    let info = req.connection_info();
    let mut chain = String::new();
    let earlier = req
        .headers()
        .get_all(header::X_FORWARDED_FOR)
        .filter_map(|v| v.to_str().ok());
    for hop in earlier.chain(info.peer_addr()) {
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(hop);
    }
    let mut push = |name, value: &str| {
        if let Ok(value) = header::HeaderValue::from_str(value) {
            headers.push((name, value));
        }
    };
    if !chain.is_empty() {
        push(header::X_FORWARDED_FOR, &chain);
    }
    push(header::X_FORWARDED_PROTO, info.scheme());
    if let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        push(header::X_FORWARDED_HOST, host);
    }
    headers
}

fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}
