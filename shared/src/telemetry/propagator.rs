//! The propagator every service installs: W3C Trace Context and W3C Baggage,
//! never writing an empty field.
//!
//! OpenTelemetry's trace-context propagator writes `tracestate` for every
//! context, as an empty string when no vendor added state, which is what the
//! platform's contexts always hold. W3C Trace Context asks senders to avoid
//! empty `tracestate` headers (receivers must accept them), and here one rode
//! along with every proxied request, task message and status report.

use opentelemetry::{
    propagation::{
        text_map_propagator::FieldIter, Extractor, Injector, TextMapCompositePropagator,
        TextMapPropagator,
    },
    Context,
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

/// W3C `traceparent`, `tracestate` and `baggage`; a field whose value is
/// empty is not written.
#[derive(Debug)]
pub struct W3cPropagator {
    inner: TextMapCompositePropagator,
}

impl W3cPropagator {
    /// The headers (and message header keys) it reads and writes: a proxy
    /// writes these from its own span instead of copying the caller's.
    pub const FIELDS: [&'static str; 3] = ["traceparent", "tracestate", "baggage"];

    /// Trace context and baggage, in that order.
    pub fn new() -> Self {
        Self {
            inner: TextMapCompositePropagator::new(vec![
                Box::new(TraceContextPropagator::new()),
                Box::new(BaggagePropagator::new()),
            ]),
        }
    }
}

impl Default for W3cPropagator {
    fn default() -> Self {
        Self::new()
    }
}

impl TextMapPropagator for W3cPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        self.inner.inject_context(cx, &mut NonEmptyFields(injector));
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.inner.extract_with_context(cx, extractor)
    }

    fn fields(&self) -> FieldIter<'_> {
        self.inner.fields()
    }
}

/// Passes fields on to the carrier's injector, except empty ones.
struct NonEmptyFields<'a>(&'a mut dyn Injector);

impl Injector for NonEmptyFields<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.set(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::{
        baggage::BaggageExt,
        trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
        KeyValue,
    };

    use super::*;

    fn context(trace_state: TraceState) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            trace_state,
        ))
    }

    fn injected(cx: &Context) -> HashMap<String, String> {
        let mut fields = HashMap::new();
        W3cPropagator::new().inject_context(cx, &mut fields);
        fields
    }

    #[test]
    fn a_context_without_vendor_state_sends_traceparent_and_no_tracestate() {
        let fields = injected(&context(TraceState::default()));
        assert_eq!(
            fields.get("traceparent").map(String::as_str),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert!(!fields.contains_key("tracestate"), "{fields:?}");
        assert!(!fields.contains_key("baggage"), "{fields:?}");
    }

    #[test]
    fn vendor_state_and_baggage_are_sent_and_read_back() {
        let state = TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap();
        let cx = context(state).with_baggage([KeyValue::new("tenant", "acme")]);
        let fields = injected(&cx);
        assert_eq!(
            fields.get("tracestate").map(String::as_str),
            Some("congo=t61rcWkgMzE")
        );
        assert_eq!(
            fields.get("baggage").map(String::as_str),
            Some("tenant=acme")
        );

        let back = W3cPropagator::new().extract(&fields);
        assert_eq!(
            back.span().span_context().trace_state().get("congo"),
            Some("t61rcWkgMzE")
        );
        assert_eq!(
            back.baggage().get("tenant").map(|v| v.to_string()),
            Some("acme".to_string())
        );
    }

    #[test]
    fn its_fields_are_the_w3c_headers() {
        let propagator = W3cPropagator::new();
        let mut fields: Vec<&str> = propagator.fields().collect();
        fields.sort_unstable(); // the composite keeps them in a set
        assert_eq!(fields, ["baggage", "traceparent", "tracestate"]);
        let mut named = W3cPropagator::FIELDS;
        named.sort_unstable();
        assert_eq!(fields, named);
    }
}
