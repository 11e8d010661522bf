//! Moving an OpenTelemetry `Context` in and out of HTTP headers (actix's
//! `HeaderMap`, shared by actix-web servers and awc clients).

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    Context,
};

use crate::telemetry::W3cPropagator;

/// Reads propagation fields from request headers.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes propagation fields into headers, replacing any of the same name.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The W3C names are static (parsing one copies it); the value's
        // buffer becomes the header's without a copy.
        let name = match W3cPropagator::FIELDS.iter().find(|field| **field == key) {
            Some(field) => Ok(HeaderName::from_static(field)),
            None => HeaderName::from_bytes(key.as_bytes()),
        };
        if let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// The context the caller sent in `headers` (empty when none or unparsable).
pub fn extract_context(headers: &HeaderMap) -> Context {
    global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

/// Puts `context` into `headers` for an outgoing request.
pub fn inject_context(context: &Context, headers: &mut HeaderMap) {
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(context, &mut HeaderInjector(headers))
    });
}

#[cfg(test)]
mod tests {
    use opentelemetry::{
        baggage::BaggageExt,
        trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
        KeyValue,
    };

    use super::*;

    #[test]
    fn a_context_goes_into_headers_and_comes_back() {
        crate::telemetry::install_propagator();
        let sent = Context::new()
            .with_remote_span_context(SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                TraceFlags::SAMPLED,
                true,
                TraceState::from_key_value([("vendor", "value")]).unwrap(),
            ))
            .with_baggage([KeyValue::new("tenant", "acme")]);
        let mut headers = HeaderMap::new();
        inject_context(&sent, &mut headers);
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            value("traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(value("tracestate"), Some("vendor=value"));
        assert_eq!(value("baggage"), Some("tenant=acme"));

        let back = extract_context(&headers);
        assert_eq!(back.span().span_context(), sent.span().span_context());
        assert_eq!(
            back.baggage().get("tenant").map(|v| v.to_string()),
            Some("acme".to_string())
        );
    }

    #[test]
    fn other_fields_are_written_and_unwritable_values_skipped() {
        let mut headers = HeaderMap::new();
        let mut injector = HeaderInjector(&mut headers);
        injector.set("x-vendor-context", "abc".to_string());
        injector.set("traceparent", "not\na header value".to_string());
        assert_eq!(
            headers
                .get("x-vendor-context")
                .and_then(|v| v.to_str().ok()),
            Some("abc")
        );
        assert!(headers.get("traceparent").is_none());
    }
}
