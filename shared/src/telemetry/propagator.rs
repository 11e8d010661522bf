//! The propagator every service installs: W3C Trace Context and W3C Baggage,
//! never writing an empty field.
//!
//! OpenTelemetry's trace-context propagator writes `tracestate` for every
//! context, as an empty string when no vendor added state, which is what the
//! platform's contexts always hold. W3C Trace Context asks senders to avoid
//! empty `tracestate` headers (receivers must accept them), and here one rode
//! along with every proxied request, task message and status report.
//!
//! `traceparent` is written by [`w3c::traceparent`] rather than that
//! propagator's `format!` of the ids' `Display`: about 4,000 instructions for
//! each proxied request, published task and status report, against a few
//! hundred (BENCHMARKS.md). `traceparent` is read by
//! [`w3c::parse_traceparent`] too, baggage by OpenTelemetry's propagator.

use opentelemetry::{
    propagation::{text_map_propagator::FieldIter, Extractor, Injector, TextMapPropagator},
    trace::{SpanContext, TraceContextExt, TraceState},
    Context,
};
use opentelemetry_sdk::propagation::BaggagePropagator;
use std::str::FromStr;

use super::w3c;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// W3C `traceparent`, `tracestate` and `baggage`; a field whose value is
/// empty is not written.
#[derive(Debug)]
pub struct W3cPropagator {
    /// [`Self::FIELDS`], as `fields()` hands them out.
    fields: Vec<String>,
    /// Reads and writes `baggage` (trace context is read and written here).
    baggage: BaggagePropagator,
}

impl W3cPropagator {
    /// The headers (and message header keys) it reads and writes: a proxy
    /// writes these from its own span instead of copying the caller's.
    pub const FIELDS: [&'static str; 3] = [TRACEPARENT, TRACESTATE, "baggage"];

    /// Trace context and baggage.
    pub fn new() -> Self {
        Self {
            fields: Self::FIELDS.iter().map(|field| field.to_string()).collect(),
            baggage: BaggagePropagator::new(),
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
        // What OpenTelemetry's trace-context propagator writes, for a valid
        // context only.
        let span = cx.span();
        let span_context = span.span_context();
        if let Some(traceparent) = w3c::traceparent(span_context) {
            injector.set(TRACEPARENT, traceparent);
            let state = span_context.trace_state().header();
            if !state.is_empty() {
                injector.set(TRACESTATE, state);
            }
        }
        self.baggage
            .inject_context(cx, &mut NonEmptyFields(injector));
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        // What OpenTelemetry's trace-context propagator reads (see
        // `w3c::parse_traceparent` for where it is stricter), then baggage.
        let with_parent = extractor
            .get(TRACEPARENT)
            .and_then(w3c::parse_traceparent)
            .map(|(trace_id, span_id, flags)| {
                let state = extractor
                    .get(TRACESTATE)
                    .and_then(|state| TraceState::from_str(state).ok())
                    .unwrap_or_default();
                SpanContext::new(trace_id, span_id, flags, true, state)
            })
            .filter(SpanContext::is_valid)
            .map(|parent| cx.with_remote_span_context(parent));
        self.baggage
            .extract_with_context(with_parent.as_ref().unwrap_or(cx), extractor)
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
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

    use opentelemetry_sdk::propagation::TraceContextPropagator;

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
    fn trace_context_is_written_as_opentelemetrys_propagator_writes_it() {
        let ids = [
            (0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7),
            (1, 1),
            (u128::MAX, u64::MAX),
            (0, 1), // invalid: nothing is written
            (1, 0),
        ];
        let states = [
            TraceState::default(),
            TraceState::from_key_value([("congo", "t61rcWkgMzE"), ("rojo", "00f067aa")]).unwrap(),
        ];
        // 0x03: a flag beside `sampled` that level 1 does not define.
        let flags = [
            TraceFlags::SAMPLED,
            TraceFlags::NOT_SAMPLED,
            TraceFlags::new(0x03),
        ];
        for (trace, span) in ids {
            for state in &states {
                for flags in flags {
                    let cx = Context::new().with_remote_span_context(SpanContext::new(
                        TraceId::from(trace),
                        SpanId::from(span),
                        flags,
                        true,
                        state.clone(),
                    ));
                    let mut expected = HashMap::new();
                    TraceContextPropagator::new().inject_context(&cx, &mut expected);
                    expected.retain(|_, value: &mut String| !value.is_empty());
                    assert_eq!(
                        injected(&cx),
                        expected,
                        "{trace:x} {span:x} {flags:?} {state:?}"
                    );
                }
            }
        }
    }

    fn read(
        traceparent: &str,
        tracestate: Option<&str>,
        propagator: &dyn TextMapPropagator,
    ) -> SpanContext {
        let mut fields = HashMap::new();
        fields.insert("traceparent".to_string(), traceparent.to_string());
        if let Some(state) = tracestate {
            fields.insert("tracestate".to_string(), state.to_string());
        }
        propagator.extract(&fields).span().span_context().clone()
    }

    #[test]
    fn trace_context_is_read_as_opentelemetrys_propagator_reads_it() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let span = "00f067aa0ba902b7";
        let cases = [
            format!("00-{id}-{span}-01"),
            format!("00-{id}-{span}-00"),
            format!("00-{id}-{span}-03"), // unknown flags dropped
            format!("00-{id}-{span}-02"),
            format!(" 00-{id}-{span}-01\t"),
            format!("01-{id}-{span}-01-what-comes-later"),
            format!("cc-{id}-{span}-01"),
            // Not a context: each of these starts a new trace.
            String::new(),
            "00-not-a-trace-01".to_string(),
            format!("00-{}-{span}-01", id.to_uppercase()),
            format!("00-{id}-{}-01", "00F067AA0BA902B7"),
            format!("00-{id}-{span}-0A"),
            format!("00-{}-{span}-01", "0".repeat(32)),
            format!("00-{id}-{}-01", "0".repeat(16)),
            format!("ff-{id}-{span}-01"),
            format!("0g-{id}-{span}-01"),
            format!("00-{id}-{span}-01-extra"),
            format!("00-{id}-{span}-0x"),
            format!("00-{id}-{span}"),
            format!("00_{id}_{span}_01"),
        ];
        for traceparent in &cases {
            for state in [
                None,
                Some("congo=t61rcWkgMzE,rojo=00f067aa"),
                Some("not a state"),
            ] {
                assert_eq!(
                    read(traceparent, state, &W3cPropagator::new()),
                    read(traceparent, state, &TraceContextPropagator::new()),
                    "{traceparent:?} {state:?}"
                );
            }
        }
        assert!(read(&cases[0], None, &W3cPropagator::new()).is_valid());
    }

    #[test]
    fn ids_shorter_than_w3cs_format_are_not_a_context() {
        // OpenTelemetry's propagator takes these; W3C Trace Context asks
        // receivers to ignore them.
        for traceparent in [
            "00-1-1-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                !read(traceparent, None, &W3cPropagator::new()).is_valid(),
                "{traceparent}"
            );
        }
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
        fields.sort_unstable(); // their order is no part of the contract
        assert_eq!(fields, ["baggage", "traceparent", "tracestate"]);
        let mut named = W3cPropagator::FIELDS;
        named.sort_unstable();
        assert_eq!(fields, named);
    }
}
