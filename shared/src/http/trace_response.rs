//! The W3C `traceresponse` header (`00-<trace-id>-<span-id>-<flags>`), so a
//! client can find the trace of any response it got.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    Error,
};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header value for a span context, `None` for an invalid one.
pub fn traceresponse_value(span_context: &SpanContext) -> Option<String> {
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Middleware (`middleware::from_fn(trace_response)`) adding `traceresponse`
/// with the SERVER span's ids. Register it inside `server_span` so the
/// SERVER span is current when it runs.
pub async fn trace_response(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let context = tracing::Span::current().context();
    let value = traceresponse_value(&context.span().span_context().clone());
    let mut response = next.call(req).await?;
    if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("traceresponse"), value);
    }
    Ok(response)
}
