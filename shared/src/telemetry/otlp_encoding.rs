//! OTLP's protobuf encoding of a batch of spans (an
//! `ExportTraceServiceRequest`), written straight from the SDK's `SpanData`.
//!
//! opentelemetry-otlp first clones the batch, converts every span into
//! opentelemetry-proto's message structs (a `String` and a `Vec` per id, name
//! and attribute), encodes those (computing nested lengths again at every
//! level) and drops them: most of a service's export CPU at 100 % sampling
//! (BENCHMARKS.md). Here each field goes into the output buffer once; the
//! only pass before it adds up lengths. The result is the message
//! opentelemetry-proto's conversion produces (tested by decoding one with the
//! other's types).

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::{
    trace::{SpanContext, SpanId, SpanKind, Status},
    Array, InstrumentationScope, KeyValue, Value,
};
use opentelemetry_sdk::{trace::SpanData, Resource};
use prost::{
    bytes::BufMut,
    encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType},
};

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

/// `spans` as one `ExportTraceServiceRequest` of `resource`, grouped by
/// instrumentation scope in the order the scopes first appear.
pub(super) fn encode_request(resource: &EncodedResource, spans: &[SpanData]) -> Vec<u8> {
    let request = Request::new(resource, spans);
    let mut buffer = Vec::with_capacity(request.encoded_len());
    request.write(&mut Writer(&mut buffer));
    buffer
}

/// The request's layout: spans grouped by scope, with each span's length
/// computed once.
struct Request<'a> {
    resource: &'a EncodedResource,
    groups: Vec<ScopeGroup<'a>>,
    /// The `ResourceSpans` message's body length.
    resource_spans_len: usize,
}

struct ScopeGroup<'a> {
    scope: &'a InstrumentationScope,
    /// Each span with the length of its message body.
    spans: Vec<(&'a SpanData, usize)>,
    body_len: usize,
}

impl<'a> Request<'a> {
    fn new(resource: &'a EncodedResource, spans: &'a [SpanData]) -> Self {
        let mut groups: Vec<ScopeGroup<'a>> = Vec::new();
        for span in spans {
            let len = Counter::body_len(&SpanBody(span));
            // A service's spans come from one or two scopes: a scan beats
            // hashing each span's scope.
            match groups
                .iter_mut()
                .find(|group| *group.scope == span.instrumentation_scope)
            {
                Some(group) => group.spans.push((span, len)),
                None => groups.push(ScopeGroup {
                    scope: &span.instrumentation_scope,
                    spans: vec![(span, len)],
                    body_len: 0,
                }),
            }
        }
        for group in &mut groups {
            let mut counter = Counter(0);
            group.write_header(&mut counter);
            for &(_, len) in &group.spans {
                counter.0 += delimited_len(2, len);
            }
            group.body_len = counter.0;
        }
        let resource_spans_len = delimited_len(1, resource.attributes.len())
            + groups
                .iter()
                .map(|group| delimited_len(2, group.body_len))
                .sum::<usize>()
            + string_len(3, &resource.schema_url);
        Self {
            resource,
            groups,
            resource_spans_len,
        }
    }

    fn encoded_len(&self) -> usize {
        delimited_len(1, self.resource_spans_len)
    }

    fn write<B: BufMut>(&self, out: &mut Writer<'_, B>) {
        out.header(1, self.resource_spans_len);
        out.header(1, self.resource.attributes.len());
        out.0.put_slice(&self.resource.attributes);
        for group in &self.groups {
            out.header(2, group.body_len);
            group.write_header(out);
            for &(span, len) in &group.spans {
                out.header(2, len);
                SpanBody(span).write(out);
            }
        }
        out.string(3, &self.resource.schema_url);
    }
}

impl ScopeGroup<'_> {
    /// The `ScopeSpans` fields other than its spans.
    fn write_header(&self, out: &mut impl Out) {
        out.message(1, &ScopeBody(self.scope));
        out.string(3, self.scope.schema_url().unwrap_or_default());
    }
}

/// Where encoded fields go: the output buffer, or a counter of their length.
trait Out {
    fn bytes(&mut self, tag: u32, value: &[u8]);
    fn varint(&mut self, tag: u32, value: u64);
    fn fixed64(&mut self, tag: u32, value: u64);
    fn fixed32(&mut self, tag: u32, value: u32);
    /// A nested message (written even when empty).
    fn message(&mut self, tag: u32, body: &impl Body);

    /// A string field; proto3 leaves an empty one out.
    fn string(&mut self, tag: u32, value: &str) {
        if !value.is_empty() {
            self.bytes(tag, value.as_bytes());
        }
    }
}

/// A message body, written the same way to either [`Out`].
trait Body {
    fn write(&self, out: &mut impl Out);
}

struct Writer<'a, B: BufMut>(&'a mut B);

impl<B: BufMut> Writer<'_, B> {
    /// The key and length of a length-delimited field.
    fn header(&mut self, tag: u32, len: usize) {
        encode_key(tag, WireType::LengthDelimited, self.0);
        encode_varint(len as u64, self.0);
    }
}

impl<B: BufMut> Out for Writer<'_, B> {
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        self.header(tag, value.len());
        self.0.put_slice(value);
    }

    fn varint(&mut self, tag: u32, value: u64) {
        encode_key(tag, WireType::Varint, self.0);
        encode_varint(value, self.0);
    }

    fn fixed64(&mut self, tag: u32, value: u64) {
        encode_key(tag, WireType::SixtyFourBit, self.0);
        self.0.put_u64_le(value);
    }

    fn fixed32(&mut self, tag: u32, value: u32) {
        encode_key(tag, WireType::ThirtyTwoBit, self.0);
        self.0.put_u32_le(value);
    }

    fn message(&mut self, tag: u32, body: &impl Body) {
        self.header(tag, Counter::body_len(body));
        body.write(self);
    }
}

/// Adds up encoded lengths.
struct Counter(usize);

impl Counter {
    fn body_len(body: &impl Body) -> usize {
        let mut counter = Counter(0);
        body.write(&mut counter);
        counter.0
    }
}

impl Out for Counter {
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        self.0 += delimited_len(tag, value.len());
    }

    fn varint(&mut self, tag: u32, value: u64) {
        self.0 += key_len(tag) + encoded_len_varint(value);
    }

    fn fixed64(&mut self, tag: u32, _: u64) {
        self.0 += key_len(tag) + 8;
    }

    fn fixed32(&mut self, tag: u32, _: u32) {
        self.0 += key_len(tag) + 4;
    }

    fn message(&mut self, tag: u32, body: &impl Body) {
        self.0 += delimited_len(tag, Counter::body_len(body));
    }
}

fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        delimited_len(tag, value.len())
    }
}

/// A `Span`.
struct SpanBody<'a>(&'a SpanData);

impl Body for SpanBody<'_> {
    fn write(&self, out: &mut impl Out) {
        let span = self.0;
        let context = &span.span_context;
        out.bytes(1, &context.trace_id().to_bytes());
        out.bytes(2, &context.span_id().to_bytes());
        out.string(3, &context.trace_state().header());
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
    fn write(&self, out: &mut impl Out) {
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
    fn write(&self, out: &mut impl Out) {
        let link = self.0;
        let context = &link.span_context;
        out.bytes(1, &context.trace_id().to_bytes());
        out.bytes(2, &context.span_id().to_bytes());
        out.string(3, &context.trace_state().header());
        attributes(out, 4, &link.attributes);
        nonzero_varint(out, 5, link.dropped_attributes_count.into());
        out.fixed32(6, span_flags(context, context.is_remote()));
    }
}

/// A `Status`: code 0 unset, 1 ok, 2 error.
struct StatusBody<'a>(&'a Status);

impl Body for StatusBody<'_> {
    fn write(&self, out: &mut impl Out) {
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
    fn write(&self, out: &mut impl Out) {
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
    fn write(&self, out: &mut impl Out) {
        out.string(1, self.0);
        out.message(2, &AnyValue(self.1));
    }
}

fn attributes(out: &mut impl Out, tag: u32, attributes: &[KeyValue]) {
    for attribute in attributes {
        out.message(tag, &Attribute(attribute.key.as_str(), &attribute.value));
    }
}

/// An `AnyValue`: its one field is written even when it holds the default.
struct AnyValue<'a>(&'a Value);

impl Body for AnyValue<'_> {
    fn write(&self, out: &mut impl Out) {
        match self.0 {
            Value::String(value) => out.bytes(1, value.as_str().as_bytes()),
            Value::Bool(value) => out.varint(2, u64::from(*value)),
            // int64: two's complement, as protobuf encodes a negative one.
            Value::I64(value) => out.varint(3, *value as u64),
            Value::F64(value) => out.fixed64(4, value.to_bits()),
            Value::Array(array) => out.message(5, &ArrayBody(array)),
            // `Value` is non-exhaustive; a kind added later goes as its text.
            other => out.bytes(1, other.as_str().as_bytes()),
        }
    }
}

/// An `ArrayValue`.
struct ArrayBody<'a>(&'a Array);

impl Body for ArrayBody<'_> {
    fn write(&self, out: &mut impl Out) {
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
    fn write(&self, out: &mut impl Out) {
        out.bytes(1, self.0.as_bytes());
    }
}

fn nonzero_varint(out: &mut impl Out, tag: u32, value: u64) {
    if value != 0 {
        out.varint(tag, value);
    }
}

fn nonzero_fixed64(out: &mut impl Out, tag: u32, value: u64) {
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
        // Same fields, same values, nothing extra: the same size as prost's.
        assert_eq!(encoded.len(), expected.encoded_len());
        assert_eq!(decoded.resource_spans[0].scope_spans.len(), 2, "two scopes");
    }

    #[test]
    fn an_empty_batch_and_an_empty_resource_encode_as_opentelemetry_proto_does() {
        let resource = Resource::builder_empty().build();
        let encoded = encode_request(&EncodedResource::new(&resource), &[]);
        let decoded = ExportTraceServiceRequest::decode(encoded.as_slice()).unwrap();
        let expected = expected(&resource, vec![]);
        assert_eq!(decoded, expected);
        assert_eq!(encoded.len(), expected.encoded_len());
        // And a resource never set (the exporter's state before the SDK
        // hands it over) is an empty one.
        let unset = encode_request(&EncodedResource::default(), &[]);
        assert_eq!(unset, encoded);
    }
}
