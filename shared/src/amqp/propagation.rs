//! Moving an OpenTelemetry `Context` in and out of AMQP message headers with
//! the globally installed propagator (W3C `traceparent`, `tracestate`,
//! `baggage`).

use lapin::types::{AMQPValue, FieldTable, ShortString};
use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    Context,
};

/// Writes propagation fields into a header table as AMQP long strings.
pub struct HeaderInjector<'a>(pub &'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(ShortString::from(key), AMQPValue::LongString(value.into()));
    }
}

/// Reads propagation fields from a header table. Values that are not strings
/// (or not UTF-8) are treated as absent.
pub struct HeaderExtractor<'a>(pub &'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            AMQPValue::ShortString(value) => Some(value.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

/// Adds `context`'s propagation fields to `headers`.
pub fn inject_context(context: &Context, headers: &mut FieldTable) {
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(context, &mut HeaderInjector(headers))
    });
}

/// The context carried by `headers`; an empty context (so a new root span)
/// when there are none or they cannot be parsed.
pub fn extract_context(headers: Option<&FieldTable>) -> Context {
    match headers {
        Some(headers) => global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(headers))
        }),
        None => Context::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::{
        baggage::BaggageExt,
        trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
        KeyValue,
    };

    fn remote_context() -> Context {
        let span_context = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "value")]).unwrap(),
        );
        Context::new()
            .with_remote_span_context(span_context)
            .with_baggage([KeyValue::new("tenant", "acme")])
    }

    #[test]
    fn context_survives_a_round_trip_through_headers() {
        crate::telemetry::install_propagator();
        let sent = remote_context();
        let mut headers = FieldTable::default();
        inject_context(&sent, &mut headers);

        assert!(matches!(
            headers.inner().get("traceparent"),
            Some(AMQPValue::LongString(_))
        ));
        let received = extract_context(Some(&headers));
        let (sent_span, received_span) = (sent.span(), received.span());
        let (a, b) = (sent_span.span_context(), received_span.span_context());
        assert_eq!(a.trace_id(), b.trace_id());
        assert_eq!(a.span_id(), b.span_id());
        assert_eq!(a.trace_flags(), b.trace_flags());
        assert_eq!(b.trace_state().get("vendor"), Some("value"));
        assert!(b.is_remote());
        assert_eq!(
            received.baggage().get("tenant").map(|v| v.to_string()),
            Some("acme".to_string())
        );
    }

    #[test]
    fn missing_headers_give_an_empty_context() {
        crate::telemetry::install_propagator();
        assert!(!extract_context(None).span().span_context().is_valid());
        let empty = FieldTable::default();
        assert!(!extract_context(Some(&empty))
            .span()
            .span_context()
            .is_valid());
    }

    #[test]
    fn short_string_headers_are_read_and_other_types_are_ignored() {
        crate::telemetry::install_propagator();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::ShortString(traceparent.into()),
        );
        let cx = extract_context(Some(&headers));
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );

        let mut wrong_type = FieldTable::default();
        wrong_type.insert("traceparent".into(), AMQPValue::LongLongInt(42));
        wrong_type.insert("baggage".into(), AMQPValue::Boolean(true));
        assert!(!extract_context(Some(&wrong_type))
            .span()
            .span_context()
            .is_valid());
    }

    #[test]
    fn garbled_traceparent_gives_a_new_root_not_a_panic() {
        crate::telemetry::install_propagator();
        for garbled in [
            "garbage",
            "00-zzzz2f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "",
        ] {
            let mut headers = FieldTable::default();
            headers.insert("traceparent".into(), AMQPValue::LongString(garbled.into()));
            let cx = extract_context(Some(&headers));
            assert!(!cx.span().span_context().is_valid(), "{garbled:?} accepted");
        }
        let mut not_utf8 = FieldTable::default();
        not_utf8.insert(
            "traceparent".into(),
            AMQPValue::LongString(vec![0xff, 0xfe, 0x00].into()),
        );
        assert!(!extract_context(Some(&not_utf8))
            .span()
            .span_context()
            .is_valid());
    }
}
