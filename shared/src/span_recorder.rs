//! Unit-test support: run code under a `tracing` subscriber whose
//! OpenTelemetry layer exports to memory, then look at the finished spans.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

/// Runs `work` with the OpenTelemetry layer installed (only on this thread)
/// and returns every span it finished.
pub(crate) fn record_spans(work: impl FnOnce()) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::with_default(subscriber, work);
    provider.force_flush().expect("flush");
    exporter.get_finished_spans().expect("spans")
}

/// The span called `name`; panics listing all of them when there is none.
pub(crate) fn span_named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}
