//! A span as received over OTLP, flattened with its service's resource.

use std::collections::HashMap;

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value::Value, AnyValue, KeyValue},
};

/// OTLP span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Unspecified or unknown.
    Unspecified,
    /// Internal.
    Internal,
    /// Server.
    Server,
    /// Client.
    Client,
    /// Producer.
    Producer,
    /// Consumer.
    Consumer,
}

impl SpanKind {
    /// `SERVER`, `CLIENT`, ... as the trees show it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "",
            Self::Internal => "INTERNAL",
            Self::Server => "SERVER",
            Self::Client => "CLIENT",
            Self::Producer => "PRODUCER",
            Self::Consumer => "CONSUMER",
        }
    }
}

impl From<i32> for SpanKind {
    fn from(kind: i32) -> Self {
        match kind {
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => Self::Unspecified,
        }
    }
}

/// A span event.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    /// Event name.
    pub name: String,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Event attributes, as strings.
    pub attributes: HashMap<String, String>,
}

/// A span as the receiver got it, with its service's resource.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the resource.
    pub service: String,
    /// All resource attributes, as strings.
    pub resource: HashMap<String, String>,
    /// 32 hex chars.
    pub trace_id: String,
    /// 16 hex chars.
    pub span_id: String,
    /// 16 hex chars, empty for a root.
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Attributes, as strings (ints and bools formatted).
    pub attributes: HashMap<String, String>,
    /// The attributes that arrived as integers (also in `attributes`).
    pub int_attributes: HashMap<String, i64>,
    /// Events.
    pub events: Vec<ReceivedEvent>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// Status message.
    pub status_message: String,
    /// Start, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_ns: u64,
    /// Links: `(trace id, span id)` of each linked span.
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// An attribute's value, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// An attribute's value if it arrived as an integer (`None` for a
    /// string, even one of digits).
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.int_attributes.get(key).copied()
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<&ReceivedEvent> {
        self.events.iter().find(|e| e.name == name)
    }

    /// Whether the span's status is ERROR.
    pub fn is_error(&self) -> bool {
        self.status_code == 2
    }

    /// Whether the span links to `other`.
    pub fn links_to(&self, other: &ReceivedSpan) -> bool {
        self.links
            .iter()
            .any(|(trace, span)| *trace == other.trace_id && *span == other.span_id)
    }

    /// Its duration in nanoseconds (0 if the clock went backwards).
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// An export request decoded only as far as counting its spans needs:
/// the nesting of `ExportTraceServiceRequest` (`resource_spans` →
/// `scope_spans` → `spans`) down to each span, whose fields are checked
/// for well-formedness and skipped, not decoded. For a sink that counts
/// spans and drops them (`trace-view --discard`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanTally {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<TalliedResource>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TalliedResource {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<TalliedScope>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TalliedScope {
    // A field-less message: prost skips what a span holds, and a vector of
    // a zero-sized type never allocates.
    #[prost(message, repeated, tag = "2")]
    spans: Vec<SkippedSpan>,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
struct SkippedSpan {}

impl SpanTally {
    /// How many spans the request carried.
    pub fn spans(&self) -> usize {
        self.resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum()
    }
}

/// How many spans an export request carries.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|resource_spans| &resource_spans.scope_spans)
        .map(|scope_spans| scope_spans.spans.len())
        .sum()
}

/// Every span of an export request, each with its resource's attributes.
pub fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                let status = span.status.unwrap_or_default();
                out.push(ReceivedSpan {
                    service: service.clone(),
                    resource: resource.clone(),
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    kind: SpanKind::from(span.kind),
                    attributes: attributes(&span.attributes),
                    int_attributes: int_attributes(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| ReceivedEvent {
                            name: e.name.clone(),
                            time_ns: e.time_unix_nano,
                            attributes: attributes(&e.attributes),
                        })
                        .collect(),
                    status_code: status.code,
                    status_message: status.message,
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
        .collect()
}

fn int_attributes(kvs: &[KeyValue]) -> HashMap<String, i64> {
    kvs.iter()
        .filter_map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::IntValue(i)) => Some((kv.key.clone(), *i)),
                _ => None,
            },
        )
        .collect()
}

fn any_value(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
