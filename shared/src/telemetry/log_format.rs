//! Log lines that carry the OpenTelemetry `trace_id` and `span_id` of the span
//! they were written in, so a log line leads straight to its trace.

use std::{fmt, sync::OnceLock};

use opentelemetry::trace::TraceContextExt;
use tracing::{dispatcher::WeakDispatch, field::Field, Dispatch, Event, Subscriber};
use tracing_subscriber::{
    fmt::{
        format::Writer,
        time::{FormatTime, SystemTime},
        FmtContext, FormatEvent, FormatFields,
    },
    registry::LookupSpan,
    Layer,
};

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line (`LOG_FORMAT=json`).
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (`text` by default, or `json`).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("LOG_FORMAT").ok().as_deref().map(str::trim) {
            None | Some("") | Some("text") | Some("pretty") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(format!("LOG_FORMAT={other:?}: expected text or json")),
        }
    }
}

// The dispatcher the formatter asks for OpenTelemetry ids. Inside an event
// callback `tracing::Span::current()` sees no dispatcher, so we keep our own.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

pub(super) fn layer<S>(format: LogFormat) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    EventsOnly(
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(TraceAwareFormat { format }),
    )
}

/// A layer told of events only. The lines name their span but never list
/// its fields (those are in the trace), while the fmt layer, told of spans,
/// formats every new span's fields and keeps them on the span: once a
/// tenth of a request's cost, and still a record per span when it formatted
/// nothing (BENCHMARKS.md). The line's span name and ids come from the
/// registry and the OpenTelemetry layer instead. The layer's filter still
/// sees every callback (an `EnvFilter`'s span directives need them).
struct EventsOnly<L>(L);

impl<S, L> Layer<S> for EventsOnly<L>
where
    S: Subscriber,
    L: Layer<S>,
{
    fn on_event(&self, event: &Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_event(event, ctx);
    }
}

pub(super) fn install<S>(subscriber: S) -> Result<(), tracing::subscriber::SetGlobalDefaultError>
where
    S: Subscriber + Send + Sync + 'static,
{
    let dispatch = Dispatch::new(subscriber);
    let _ = DISPATCH.set(dispatch.downgrade());
    tracing::dispatcher::set_global_default(dispatch)
}

struct TraceAwareFormat {
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for TraceAwareFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // An explicit `parent:` wins over the thread's current span.
        let current = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        let ids = current.as_ref().and_then(|span| otel_ids(&span.id()));
        match self.format {
            LogFormat::Text => {
                // One short line: what happened, its fields, where (the span),
                // and the ids that lead to the trace. Span attributes stay in
                // the trace instead of being repeated on every line.
                let mut timestamp = String::new();
                SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
                let mut fields = JsonFields::default();
                event.record(&mut fields);
                let metadata = event.metadata();
                write!(
                    writer,
                    "{timestamp} {:>5} {}: {}",
                    metadata.level(),
                    metadata.target(),
                    fields.message.as_deref().unwrap_or_default()
                )?;
                for (key, value) in &fields.fields {
                    match value {
                        serde_json::Value::String(text) => write!(writer, " {key}={text}")?,
                        other => write!(writer, " {key}={other}")?,
                    }
                }
                if let Some(span) = &current {
                    write!(writer, " span={}", span.name())?;
                }
                if let Some((trace_id, span_id)) = ids {
                    write!(writer, " trace_id={trace_id} span_id={span_id}")?;
                }
                writeln!(writer)
            }
            LogFormat::Json => {
                let mut timestamp = String::new();
                SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
                let mut fields = JsonFields::default();
                event.record(&mut fields);
                let mut object = serde_json::Map::new();
                object.insert("timestamp".into(), timestamp.into());
                object.insert("level".into(), event.metadata().level().as_str().into());
                object.insert("target".into(), event.metadata().target().into());
                if let Some(message) = fields.message.take() {
                    object.insert("message".into(), message.into());
                }
                if !fields.fields.is_empty() {
                    object.insert("fields".into(), fields.fields.into());
                }
                if let Some(span) = &current {
                    object.insert("span".into(), span.name().into());
                }
                if let Some((trace_id, span_id)) = ids {
                    object.insert("trace_id".into(), trace_id.into());
                    object.insert("span_id".into(), span_id.into());
                }
                let line = serde_json::Value::Object(object).to_string();
                writeln!(writer, "{line}")
            }
        }
    }
}

fn otel_ids(id: &tracing::span::Id) -> Option<(String, String)> {
    let dispatch = DISPATCH.get()?.upgrade()?;
    let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        (
            super::w3c::trace_id_hex(sc.trace_id()),
            super::w3c::span_id_hex(sc.span_id()),
        )
    })
}

#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl tracing::field::Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            self.fields.insert(field.name().into(), value.into());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}
