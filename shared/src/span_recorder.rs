//! Unit-test support: run code under a `tracing` subscriber whose
//! OpenTelemetry layer exports to memory, then look at the finished spans.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

/// Runs `work` with the OpenTelemetry layer installed (only on this thread)
/// and returns every span it finished.
pub(crate) fn record_spans(work: impl FnOnce()) -> Vec<SpanData> {
    record_spans_watching(|_| work())
}

/// [`record_spans`], with `work` given the spans finished so far: each span
/// is there from the moment it ends.
pub(crate) fn record_spans_watching(
    work: impl FnOnce(&dyn Fn() -> Vec<SpanData>),
) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let finished = || exporter.get_finished_spans().expect("spans");
    tracing::subscriber::with_default(subscriber, || work(&finished));
    provider.force_flush().expect("flush");
    finished()
}

/// The span called `name`; panics listing all of them when there is none.
pub(crate) fn span_named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}
