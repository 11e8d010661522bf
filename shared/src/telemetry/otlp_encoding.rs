//! OTLP's protobuf encoding of spans, each written straight from the SDK's
//! `SpanData` as it ends ([`encode_span`]), and of a batch of them (an
//! `ExportTraceServiceRequest`, [`encode_batch`]).
//!
//! opentelemetry-otlp first clones the batch, converts every span into
//! opentelemetry-proto's message structs (a `String` and a `Vec` per id, name
//! and attribute), encodes those (computing nested lengths again at every
//! level) and drops them: most of a service's export CPU at 100 % sampling
//! (BENCHMARKS.md). Here each field goes into the output buffer once, in
//! one pass (see [`Writer`]). The result is the bytes prost writes for the
//! message opentelemetry-proto's conversion produces (tested against both).

use std::{
    cmp::Ordering,
    time::{SystemTime, UNIX_EPOCH},
};

use opentelemetry::{
    trace::{SpanContext, SpanId, SpanKind, Status, TraceState},
    Array, InstrumentationScope, KeyValue, Value,
};
use opentelemetry_sdk::{trace::SpanData, Resource};
use prost::encoding::{encode_varint, encoded_len_varint, WireType};

/// The part of every request that depends only on the service: its
/// resource, encoded once when the SDK hands it over.
#[derive(Debug, Default, Clone)]
pub(super) struct EncodedResource {
    /// The `Resource` message's body.
    attributes: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub(super) fn new(resource: &Resource) -> Self {
        let mut attributes = Vec::new();
        let mut out = Writer(&mut attributes);
        for (key, value) in resource.iter() {
            out.message(1, &Attribute(key.as_str(), value));
        }
        Self {
            attributes,
            schema_url: resource.schema_url().unwrap_or_default().to_string(),
        }
    }
}

/// What a span usually takes encoded, to size buffers up front.
pub(super) const TYPICAL_SPAN_BYTES: usize = 256;

/// Appends `span` to `out` as it goes in a `ScopeSpans` message: its
/// `spans` field, key and length included. The batch processor encodes
/// each span this way as it ends; [`encode_batch`] puts them together.
pub(super) fn encode_span(out: &mut Vec<u8>, span: &SpanData) {
    // A span: 128 bytes to 16 kB, a two-byte length.
    Writer(out).nested::<2>(2, |out| SpanBody(span).write(out));
}

/// One `ExportTraceServiceRequest` of `resource`: a `ScopeSpans` for each
/// scope, holding that scope's spans as [`encode_span`] wrote them one
/// after the other.
pub(super) fn encode_batch<'a>(
    resource: &EncodedResource,
    scopes: impl IntoIterator<Item = (&'a InstrumentationScope, &'a [u8])> + Clone,
) -> Vec<u8> {
    let spans_len: usize = scopes.clone().into_iter().map(|(_, s)| s.len()).sum();
    let mut buffer = Vec::with_capacity(resource.attributes.len() + spans_len + 128);
    let mut out = Writer(&mut buffer);
    // ResourceSpans and ScopeSpans: a few kB to a few MB, three-byte lengths.
    out.nested::<3>(1, |out| {
        out.bytes(1, &resource.attributes);
        for (scope, spans) in scopes {
            out.nested::<3>(2, |out| {
                out.message(1, &ScopeBody(scope));
                out.0.extend_from_slice(spans);
                out.string(3, scope.schema_url().unwrap_or_default());
            });
        }
        out.string(3, &resource.schema_url);
    });
    buffer
}

/// `spans` as one `ExportTraceServiceRequest` of `resource`, grouped by
/// instrumentation scope in the order the scopes first appear (what the
/// batch processor sends for spans that ended in this order).
#[cfg(test)]
pub(super) fn encode_request(resource: &EncodedResource, spans: &[SpanData]) -> Vec<u8> {
    let mut groups: Vec<(&InstrumentationScope, Vec<u8>)> = Vec::new();
    for span in spans {
        let at = match groups
            .iter()
            .position(|(scope, _)| same_scope(scope, &span.instrumentation_scope))
        {
            Some(at) => at,
            None => {
                groups.push((&span.instrumentation_scope, Vec::new()));
                groups.len() - 1
            }
        };
        encode_span(&mut groups[at].1, span);
    }
    encode_batch(
        resource,
        groups
            .iter()
            .map(|(scope, spans)| (*scope, spans.as_slice())),
    )
}

/// Whether two spans have the same scope. The spans of one tracer hold
/// clones of its scope, whose strings are the same `'static` ones: telling
/// that from their addresses spares the comparison by value (and the two
/// vectors OpenTelemetry's `==` builds to compare attributes).
pub(super) fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    fn same(a: Option<&str>, b: Option<&str>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
    let shared = same(Some(a.name()), Some(b.name()))
        && same(a.version(), b.version())
        && same(a.schema_url(), b.schema_url())
        && a.attributes().next().is_none()
        && b.attributes().next().is_none();
    shared || a == b
}

/// A message body.
trait Body {
    fn write(&self, out: &mut Writer<'_>);
}

/// Writes fields in one pass. A nested message's length is not known
/// before its body is written: the body goes in after room for a length of
/// the size its kind usually needs (`GUESS` bytes), and moves only when the
/// length turns out to need another size. (Adding up lengths first walked
/// every span, and every attribute at each level of nesting, twice or
/// more.) The output is the canonical encoding, byte for byte what prost
/// writes.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    /// A field's key: one byte for every field of OTLP's trace messages but
    /// `Span.flags` (tag 16).
    fn key(&mut self, tag: u32, wire_type: WireType) {
        self.varint_value(u64::from(tag << 3 | wire_type as u32));
    }

    /// A varint, the one-byte case (keys, most lengths) without prost's
    /// loop.
    #[inline(always)]
    fn varint_value(&mut self, value: u64) {
        if value < 0x80 {
            self.0.push(value as u8);
        } else {
            encode_varint(value, self.0);
        }
    }

    /// A length-delimited field, written even when empty.
    #[inline]
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        let key = tag << 3 | WireType::LengthDelimited as u32;
        if key < 0x80 && value.len() < 0x80 {
            // Most fields: the key and the length in one write.
            self.0.extend_from_slice(&[key as u8, value.len() as u8]);
        } else {
            self.varint_value(u64::from(key));
            self.varint_value(value.len() as u64);
        }
        self.0.extend_from_slice(value);
    }

    /// A string field; proto3 leaves an empty one out.
    fn string(&mut self, tag: u32, value: &str) {
        if !value.is_empty() {
            self.bytes(tag, value.as_bytes());
        }
    }

    fn varint(&mut self, tag: u32, value: u64) {
        self.key(tag, WireType::Varint);
        self.varint_value(value);
    }

    fn fixed64(&mut self, tag: u32, value: u64) {
        self.key(tag, WireType::SixtyFourBit);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn fixed32(&mut self, tag: u32, value: u32) {
        self.key(tag, WireType::ThirtyTwoBit);
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    /// A `KeyValue` whose `AnyValue` holds one scalar field (`field`: 1
    /// string, 2 bool, 3 int64), when its key, lengths and tags each fit
    /// in a byte: nearly every attribute. Both lengths are known before
    /// anything is written, so it reserves once and writes the fixed
    /// parts as a few small arrays, without the room-then-length of
    /// [`Writer::nested`] twice per attribute. False, with nothing
    /// written, for an attribute that does not fit.
    #[inline]
    fn short_attribute(&mut self, tag: u32, key: &str, field: u32, value: Scalar<'_>) -> bool {
        let key = key.as_bytes();
        // AnyValue: its one field's key and value, even when it holds the
        // default.
        let any_len = 1 + match value {
            Scalar::Bytes(bytes) => 1 + bytes.len(),
            Scalar::Varint(value) => encoded_len_varint(value),
        };
        // KeyValue: the key, left out when empty, then the AnyValue.
        let key_len = if key.is_empty() { 0 } else { 2 + key.len() };
        let body_len = key_len + 2 + any_len;
        // Below 128, every length inside is too.
        if body_len >= 0x80 || tag >= 0x10 {
            return false;
        }
        let out = &mut *self.0;
        out.reserve(2 + body_len);
        let (tag, key_field, value_field) = (
            one_byte_key(tag, WireType::LengthDelimited),
            one_byte_key(1, WireType::LengthDelimited),
            one_byte_key(2, WireType::LengthDelimited),
        );
        if key.is_empty() {
            out.extend_from_slice(&[tag, body_len as u8, value_field, any_len as u8]);
        } else {
            out.extend_from_slice(&[tag, body_len as u8, key_field, key.len() as u8]);
            out.extend_from_slice(key);
            out.extend_from_slice(&[value_field, any_len as u8]);
        }
        match value {
            Scalar::Bytes(bytes) => {
                let field = one_byte_key(field, WireType::LengthDelimited);
                out.extend_from_slice(&[field, bytes.len() as u8]);
                out.extend_from_slice(bytes);
            }
            Scalar::Varint(value) => {
                out.push(one_byte_key(field, WireType::Varint));
                self.varint_value(value);
            }
        }
        true
    }

    /// A small nested message (written even when empty): a one-byte
    /// length.
    fn message(&mut self, tag: u32, body: &impl Body) {
        self.nested::<1>(tag, |out| body.write(out));
    }

    /// A nested message whose length usually takes `GUESS` bytes.
    fn nested<const GUESS: usize>(&mut self, tag: u32, body: impl FnOnce(&mut Self)) {
        self.key(tag, WireType::LengthDelimited);
        let at = self.0.len();
        self.0.extend_from_slice(&[0; GUESS]);
        body(self);
        let len = self.0.len() - at - GUESS;
        let size = encoded_len_varint(len as u64);
        if size == 1 && GUESS == 1 {
            self.0[at] = len as u8;
            return;
        }
        match size.cmp(&GUESS) {
            Ordering::Equal => {}
            Ordering::Greater => {
                self.0.splice(at..at, std::iter::repeat_n(0, size - GUESS));
            }
            Ordering::Less => {
                self.0.drain(at..at + GUESS - size);
            }
        }
        let mut rest = len as u64;
        for (i, byte) in self.0[at..at + size].iter_mut().enumerate() {
            let more = if i + 1 < size { 0x80 } else { 0 };
            *byte = (rest & 0x7f) as u8 | more;
            rest >>= 7;
        }
    }
}

/// A `Span`.
struct SpanBody<'a>(&'a SpanData);

impl Body for SpanBody<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        let span = self.0;
        let context = &span.span_context;
        out.bytes(1, &context.trace_id().to_bytes());
        out.bytes(2, &context.span_id().to_bytes());
        trace_state(out, 3, context.trace_state());
        if span.parent_span_id != SpanId::INVALID {
            out.bytes(4, &span.parent_span_id.to_bytes());
        }
        out.string(5, &span.name);
        out.varint(6, span_kind(&span.span_kind));
        nonzero_fixed64(out, 7, unix_nanos(span.start_time));
        nonzero_fixed64(out, 8, unix_nanos(span.end_time));
        attributes(out, 9, &span.attributes);
        nonzero_varint(out, 10, span.dropped_attributes_count.into());
        for event in span.events.iter() {
            out.message(11, &EventBody(event));
        }
        nonzero_varint(out, 12, span.events.dropped_count.into());
        for link in span.links.iter() {
            out.message(13, &LinkBody(link));
        }
        nonzero_varint(out, 14, span.links.dropped_count.into());
        out.message(15, &StatusBody(&span.status));
        out.fixed32(16, span_flags(context, span.parent_span_is_remote));
    }
}

/// A `Span.Event`.
struct EventBody<'a>(&'a opentelemetry::trace::Event);

impl Body for EventBody<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        let event = self.0;
        nonzero_fixed64(out, 1, unix_nanos(event.timestamp));
        out.string(2, &event.name);
        attributes(out, 3, &event.attributes);
        nonzero_varint(out, 4, event.dropped_attributes_count.into());
    }
}

/// A `Span.Link`.
struct LinkBody<'a>(&'a opentelemetry::trace::Link);

impl Body for LinkBody<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        let link = self.0;
        let context = &link.span_context;
        out.bytes(1, &context.trace_id().to_bytes());
        out.bytes(2, &context.span_id().to_bytes());
        trace_state(out, 3, context.trace_state());
        attributes(out, 4, &link.attributes);
        nonzero_varint(out, 5, link.dropped_attributes_count.into());
        out.fixed32(6, span_flags(context, context.is_remote()));
    }
}

/// A `Status`: code 0 unset, 1 ok, 2 error.
struct StatusBody<'a>(&'a Status);

impl Body for StatusBody<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        match self.0 {
            Status::Unset => {}
            Status::Ok => out.varint(3, 1),
            Status::Error { description } => {
                out.string(2, description);
                out.varint(3, 2);
            }
        }
    }
}

/// An `InstrumentationScope`.
struct ScopeBody<'a>(&'a InstrumentationScope);

impl Body for ScopeBody<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        let scope = self.0;
        out.string(1, scope.name());
        out.string(2, scope.version().unwrap_or_default());
        for attribute in scope.attributes() {
            out.message(3, &Attribute(attribute.key.as_str(), &attribute.value));
        }
    }
}

/// A `KeyValue`.
struct Attribute<'a>(&'a str, &'a Value);

impl Body for Attribute<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        out.string(1, self.0);
        out.message(2, &AnyValue(self.1));
    }
}

fn attributes(out: &mut Writer<'_>, tag: u32, attributes: &[KeyValue]) {
    for attribute in attributes {
        let key = attribute.key.as_str();
        let written = Scalar::of(&attribute.value)
            .is_some_and(|(field, value)| out.short_attribute(tag, key, field, value));
        if !written {
            out.message(tag, &Attribute(key, &attribute.value));
        }
    }
}

/// A field's key for a tag below 16: one byte.
const fn one_byte_key(tag: u32, wire_type: WireType) -> u8 {
    (tag << 3 | wire_type as u32) as u8
}

/// A string, bool or integer attribute value as it is encoded: what
/// [`Writer::short_attribute`] writes, and `AnyValue` for those kinds.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    /// A string's bytes (`AnyValue.string_value`).
    Bytes(&'a [u8]),
    /// An integer or a bool, as a varint.
    Varint(u64),
}

impl<'a> Scalar<'a> {
    /// The `AnyValue` field (1 string, 2 bool, 3 int64) and value of a
    /// string, bool or integer; `None` for the other kinds.
    fn of(value: &'a Value) -> Option<(u32, Self)> {
        match value {
            Value::String(value) => Some((1, Scalar::Bytes(value.as_str().as_bytes()))),
            Value::Bool(value) => Some((2, Scalar::Varint(u64::from(*value)))),
            // int64: two's complement, as protobuf encodes a negative one.
            Value::I64(value) => Some((3, Scalar::Varint(*value as u64))),
            _ => None,
        }
    }
}

/// An `AnyValue`: its one field is written even when it holds the default.
struct AnyValue<'a>(&'a Value);

impl Body for AnyValue<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        match (self.0, Scalar::of(self.0)) {
            (_, Some((field, Scalar::Bytes(bytes)))) => out.bytes(field, bytes),
            (_, Some((field, Scalar::Varint(value)))) => out.varint(field, value),
            (Value::F64(value), None) => out.fixed64(4, value.to_bits()),
            (Value::Array(array), None) => out.message(5, &ArrayBody(array)),
            // `Value` is non-exhaustive; a kind added later goes as its text.
            (other, _) => out.bytes(1, other.as_str().as_bytes()),
        }
    }
}

/// An `ArrayValue`.
struct ArrayBody<'a>(&'a Array);

impl Body for ArrayBody<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        match self.0 {
            Array::Bool(values) => values
                .iter()
                .for_each(|v| out.message(1, &AnyValue(&Value::Bool(*v)))),
            Array::I64(values) => values
                .iter()
                .for_each(|v| out.message(1, &AnyValue(&Value::I64(*v)))),
            Array::F64(values) => values
                .iter()
                .for_each(|v| out.message(1, &AnyValue(&Value::F64(*v)))),
            Array::String(values) => values
                .iter()
                .for_each(|v| out.message(1, &StringValue(v.as_str()))),
            // Non-exhaustive too: a kind added later goes as one string.
            other => out.message(1, &StringValue(&other.to_string())),
        }
    }
}

/// An `AnyValue` holding a string, without building a `Value` for it.
struct StringValue<'a>(&'a str);

impl Body for StringValue<'_> {
    fn write(&self, out: &mut Writer<'_>) {
        out.bytes(1, self.0.as_bytes());
    }
}

/// A `tracestate` string; nearly always none, so not built.
fn trace_state(out: &mut Writer<'_>, tag: u32, state: &TraceState) {
    if *state != TraceState::NONE {
        out.string(tag, &state.header());
    }
}

fn nonzero_varint(out: &mut Writer<'_>, tag: u32, value: u64) {
    if value != 0 {
        out.varint(tag, value);
    }
}

fn nonzero_fixed64(out: &mut Writer<'_>, tag: u32, value: u64) {
    if value != 0 {
        out.fixed64(tag, value);
    }
}

/// `Span.SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
fn span_kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// The W3C trace flags, with OTLP's bits saying whether the parent (or the
/// linked span) is remote: bit 8 "known", bit 9 "remote".
fn span_flags(context: &SpanContext, remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    let mut flags = u32::from(context.trace_flags().to_u8()) | HAS_IS_REMOTE;
    if remote {
        flags |= IS_REMOTE;
    }
    flags
}

/// Nanoseconds since the Unix epoch (0 for a time before it).
fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, time::Duration};

    use opentelemetry::{
        trace::{Event, Link, SpanContext, TraceFlags, TraceId, TraceState},
        KeyValue, StringValue,
    };
    use opentelemetry_proto::{
        tonic::collector::trace::v1::ExportTraceServiceRequest,
        transform::trace::tonic::group_spans_by_resource_and_scope,
    };
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::*;

    fn context(trace: u128, span: u64, remote: bool, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            remote,
            TraceState::from_key_value(
                state
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .filter_map(|kv| kv.split_once('=')),
            )
            .unwrap(),
        )
    }

    /// Every field the encoder writes, with values at the edges: negative
    /// and zero integers, false, empty strings, arrays of each kind, events,
    /// links, dropped counts, the three statuses, two scopes.
    fn spans() -> Vec<SpanData> {
        let base = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        let web = InstrumentationScope::builder("gateway")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .with_attributes([KeyValue::new("scope.kind", "web")])
            .build();
        let plain = InstrumentationScope::builder("worker").build();
        let attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("empty", ""),
            KeyValue::new("task.attempt", 0_i64),
            KeyValue::new("negative", -42_i64),
            KeyValue::new("ratio", 0.25),
            KeyValue::new("flag", false),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![-1, 0, i64::MAX]))),
            KeyValue::new("floats", Value::Array(Array::F64(vec![1.5, -0.0]))),
            KeyValue::new(
                "strings",
                Value::Array(Array::String(vec![StringValue::from("a"), "".into()])),
            ),
            KeyValue::new("", "no key"),
        ];
        let mut events = SpanEvents::default();
        events.events = vec![
            Event::new(
                "exception",
                base + Duration::from_micros(10),
                vec![KeyValue::new("exception.message", "boom")],
                1,
            ),
            Event::new("", UNIX_EPOCH, vec![], 0),
        ];
        events.dropped_count = 2;
        let mut links = SpanLinks::default();
        links.links = vec![
            Link::new(
                context(7, 8, true, "a=1,b=2"),
                vec![KeyValue::new("l", 1_i64)],
                4,
            ),
            Link::new(context(9, 10, false, ""), vec![], 0),
        ];
        links.dropped_count = 5;
        let server = SpanData {
            span_context: context(
                0x0af7651916cd43dd8448eb211c80319c,
                0xb7ad6b7169203331,
                false,
                "vendor=x",
            ),
            parent_span_id: SpanId::from(0x00f067aa0ba902b7),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("POST /api/tasks"),
            start_time: base,
            end_time: base + Duration::from_micros(1_500),
            attributes,
            dropped_attributes_count: 3,
            events,
            links,
            status: Status::error("upstream failed"),
            instrumentation_scope: web.clone(),
        };
        let child = SpanData {
            span_context: context(0x0af7651916cd43dd8448eb211c80319c, 0x1, false, ""),
            parent_span_id: SpanId::from(0xb7ad6b7169203331),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned("create-task".to_string()),
            status: Status::Ok,
            instrumentation_scope: plain,
            attributes: vec![],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            ..server.clone()
        };
        let root = SpanData {
            span_context: context(0xffff, 0x2, false, ""),
            parent_span_id: SpanId::INVALID,
            span_kind: SpanKind::Client,
            name: Cow::Borrowed(""),
            status: Status::Unset,
            ..child.clone()
        };
        let producer = SpanData {
            span_kind: SpanKind::Producer,
            instrumentation_scope: web,
            ..root.clone()
        };
        let consumer = SpanData {
            span_kind: SpanKind::Consumer,
            ..child.clone()
        };
        vec![server, child, root, producer, consumer]
    }

    fn expected(resource: &Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &resource.into()),
        }
    }

    #[test]
    fn a_batch_encodes_to_the_message_opentelemetry_proto_builds() {
        let resource = Resource::builder_empty()
            .with_service_name("gateway-service")
            .with_schema_url(
                [KeyValue::new("service.version", "0.1.0")],
                "https://opentelemetry.io/schemas/1.26.0",
            )
            .build();
        let spans = spans();
        let encoded = encode_request(&EncodedResource::new(&resource), &spans);
        let decoded = ExportTraceServiceRequest::decode(encoded.as_slice()).unwrap();
        let expected = expected(&resource, spans);
        assert_eq!(decoded, expected);
        // Same fields in the same order, lengths in their shortest form.
        assert_eq!(encoded, expected.encode_to_vec());
        assert_eq!(decoded.resource_spans[0].scope_spans.len(), 2, "two scopes");
    }

    #[test]
    fn an_empty_batch_and_an_empty_resource_encode_as_opentelemetry_proto_does() {
        let resource = Resource::builder_empty().build();
        let encoded = encode_request(&EncodedResource::new(&resource), &[]);
        let decoded = ExportTraceServiceRequest::decode(encoded.as_slice()).unwrap();
        let expected = expected(&resource, vec![]);
        assert_eq!(decoded, expected);
        assert_eq!(encoded, expected.encode_to_vec());
        // And a resource never set (the exporter's state before the SDK
        // hands it over) is an empty one.
        let unset = encode_request(&EncodedResource::default(), &[]);
        assert_eq!(unset, encoded);
    }

    /// Every length size around the writer's guesses: nested messages of
    /// 0-127, 128-16,383, 16,384-2,097,151 bytes and beyond, so every guess
    /// is met, exceeded and undershot.
    #[test]
    fn lengths_of_every_size_are_written_in_their_shortest_form() {
        let resource = Resource::builder_empty()
            .with_service_name("product-service")
            .build();
        let sized = |len: usize| {
            let mut span = spans().swap_remove(1);
            span.attributes = vec![KeyValue::new("padding", "x".repeat(len))];
            span
        };
        let lengths = [0, 100, 127, 128, 200, 16_383, 16_384, 40_000, 2_100_000];
        let batch: Vec<SpanData> = lengths.into_iter().map(sized).collect();
        let encoded = encode_request(&EncodedResource::new(&resource), &batch);
        assert_eq!(encoded, expected(&resource, batch.clone()).encode_to_vec());
        for span in batch {
            let one = [span];
            let encoded = encode_request(&EncodedResource::new(&resource), &one);
            assert_eq!(encoded, expected(&resource, one.to_vec()).encode_to_vec());
        }
    }
}
