//! OpenTelemetry and `tracing` set-up for a service, driven by the standard
//! `OTEL_*` environment variables.
//!
//! Call [`init`] once at start-up, before the actix system starts, and keep the
//! returned [`TelemetryGuard`] until the system has stopped; then call
//! [`TelemetryGuard::shutdown`] from plain (non-async) code so the last spans
//! are flushed.

mod batch_processor;
mod export_target;
mod exporter;
mod in_span;
mod log_format;
mod otlp_encoding;
mod propagator;
pub mod w3c;

use opentelemetry::{global, trace::TracerProvider as _, InstrumentationScope, KeyValue};
use opentelemetry_sdk::{
    resource::{EnvResourceDetector, SdkProvidedResourceDetector, TelemetryResourceDetector},
    trace::SdkTracerProvider,
    Resource,
};
use tracing_subscriber::{
    filter::Targets,
    layer::{Filter, SubscriberExt},
    EnvFilter, Layer,
};

pub use batch_processor::{
    DEFAULT_CONCURRENT_EXPORTS, DEFAULT_MAX_EXPORT_BATCH_SIZE, DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_SCHEDULE_DELAY,
};
pub use export_target::{ExportProtocol, ExportTarget, DEFAULT_EXPORT_TIMEOUT};
pub use in_span::{InSpan, PolledInSpan};
pub use log_format::LogFormat;
pub use propagator::W3cPropagator;

/// Every environment variable the telemetry set-up honours (the SDK reads
/// the resource and sampler ones, the batch processor the `OTEL_BSP_*`
/// ones, [`ExportTarget`] the `OTEL_EXPORTER_OTLP_*` ones;
/// `JAEGER_AGENT_PORT` is accepted and ignored: Jaeger takes OTLP on 4317,
/// not the agent's UDP port). `OTEL_BSP_EXPORT_TIMEOUT` is not among them:
/// `OTEL_EXPORTER_OTLP_TIMEOUT` bounds each export, retries included.
pub const ENV_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_MAX_CONCURRENT_EXPORTS",
    "JAEGER_AGENT_HOST",
    "JAEGER_AGENT_PORT",
    "LOG_FORMAT",
    "RUST_LOG",
];

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An `OTEL_*` or logging variable has a value we cannot honour.
    #[error("telemetry configuration: {0}")]
    Config(String),
    /// A global subscriber was already installed.
    #[error("installing the tracing subscriber: {0}")]
    Subscriber(#[from] tracing::subscriber::SetGlobalDefaultError),
    /// The runtime that drives the span exporter could not start.
    #[error("starting the telemetry runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Keeps the tracer provider (and the runtime its exporter runs on) alive;
/// flushes and shuts them down on [`shutdown`](Self::shutdown) or drop.
///
/// Must be shut down outside any async context: flushing blocks the calling
/// thread until the exporter is done, and dropping a Tokio runtime inside one
/// panics.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    // The exporter's requests run on this runtime, not on actix's
    // single-threaded one: flushing from the actix thread would otherwise wait
    // on a future that needs that very thread (a deadlock until the timeout).
    runtime: Option<tokio::runtime::Runtime>,
}

impl TelemetryGuard {
    /// The tracer provider (until shut down).
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Flushes pending spans and stops the exporter.
    pub fn shutdown(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(error = %err, "flushing spans at shutdown failed");
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// Installs the W3C trace-context and baggage propagators globally
/// ([`W3cPropagator`]).
///
/// Without it every `traceparent` is silently ignored. [`init`] calls it;
/// tests that skip [`init`] call it directly. Idempotent.
pub fn install_propagator() {
    global::set_text_map_propagator(W3cPropagator::new());
}

/// Sets up tracing for a service whose default `service.name` is
/// `default_service_name` (overridden by `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES`): the OTLP exporter with a batch span
/// processor, the propagators, and the log output (`LOG_FORMAT`, `RUST_LOG`).
pub fn init(default_service_name: &str, version: &str) -> Result<TelemetryGuard, TelemetryError> {
    install_propagator();
    let log_format = LogFormat::from_env().map_err(TelemetryError::Config)?;
    let disabled = sdk_disabled();

    let resource = resource(default_service_name, version);
    let service_name = resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|v| v.to_string())
        .unwrap_or_else(|| default_service_name.to_string());

    let (target, provider, runtime) = if disabled {
        let provider = SdkTracerProvider::builder().with_resource(resource).build();
        (None, provider, None)
    } else {
        let target = ExportTarget::from_env().map_err(TelemetryError::Config)?;
        let (provider, runtime) = exporting_provider(&target, resource)?;
        (Some(target), provider, Some(runtime))
    };
    global::set_tracer_provider(provider.clone());

    // RUST_LOG filters the log output only: a registry-wide filter would also
    // drop spans before the OpenTelemetry layer sees them.
    let log_filter = log_filter();
    let subscriber = tracing_subscriber::registry()
        .with(span_layer(&provider))
        .with(log_format::layer(log_format).with_filter(log_filter));
    log_format::install(subscriber)?;

    match &target {
        Some(target) => tracing::info!(
            service.name = %service_name,
            exporter = %target,
            "telemetry ready"
        ),
        None => tracing::info!(
            service.name = %service_name,
            "telemetry ready; OTEL_SDK_DISABLED is set, spans are not exported"
        ),
    }
    for note in target.iter().flat_map(ExportTarget::notes) {
        tracing::info!("{note}");
    }

    Ok(TelemetryGuard {
        provider: Some(provider),
        runtime,
    })
}

/// A tracer provider exporting to `target` the way the services do: the
/// platform's batch processor with its settings ([`DEFAULT_MAX_QUEUE_SIZE`]
/// spans queued, [`DEFAULT_CONCURRENT_EXPORTS`] exports in flight, unless
/// `OTEL_BSP_*` say otherwise). [`init`] builds the services' with it. The
/// provider's `force_flush`, and shutting the guard down, return once every
/// span queued has been delivered (or its export has failed).
pub fn export_pipeline(
    target: &ExportTarget,
    resource: Resource,
) -> Result<TelemetryGuard, TelemetryError> {
    let (provider, runtime) = exporting_provider(target, resource)?;
    Ok(TelemetryGuard {
        provider: Some(provider),
        runtime: Some(runtime),
    })
}

fn exporting_provider(
    target: &ExportTarget,
    resource: Resource,
) -> Result<(SdkTracerProvider, tokio::runtime::Runtime), TelemetryError> {
    let settings = batch_processor::BatchSettings::from_env()?;
    let (exporter, runtime) = exporter::build(target)?;
    let processor =
        batch_processor::OtlpBatchProcessor::new(exporter, settings, runtime.handle().clone());
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(processor)
        .build();
    Ok((provider, runtime))
}

/// The instrumentation scope of every span the platform makes: the library
/// that makes them (this crate, at its version), as OpenTelemetry defines a
/// scope; which service sent a span is its resource's `service.name`.
pub const INSTRUMENTATION_SCOPE: &str = "async-micro";

/// The layer that turns `tracing` spans into OpenTelemetry spans of
/// `provider`. Only the platform's own spans (all of them INFO) become
/// OpenTelemetry spans: libraries open spans of their own (h2 under the gRPC
/// exporter and hyper on every poll at DEBUG/TRACE, which would feed the
/// exporter its own activity; lapin's `io_loop` at INFO when a connection
/// closes). The filter is on this layer alone and does not follow
/// `RUST_LOG`. [`init`] installs it; tests that build services in process
/// install it with a provider of their own.
pub fn span_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    // Static strings: the SDK clones the tracer's scope into every span it
    // ends, and an owned name made that an allocation and a free per span.
    let scope = InstrumentationScope::builder(INSTRUMENTATION_SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer_with_scope(scope))
        .with_error_records_to_exceptions(true)
        // Off: per-span source location, thread and busy/idle time
        // attributes. Every span would carry five more attributes (and two
        // clock reads per poll) that the traces here do not need;
        // BENCHMARKS.md has what they cost.
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // Off: a `target` attribute (the Rust module that opened the span)
        // on every span. No semantic convention has it, the span's name
        // and service already say where it comes from, and it was about
        // a tenth of every span's bytes: encoded, sent and received again
        // for each span (BENCHMARKS.md).
        .with_target(false)
        // Off: making each entered span OpenTelemetry's current `Context` as
        // well, a clone and a thread-local push on every poll of every
        // instrumented future. Only code that reads `Context::current()`
        // (libraries instrumented with the OpenTelemetry API itself) needs
        // it; nothing here does: propagation takes the context from the
        // `tracing` span (`OpenTelemetrySpanExt::context`).
        .with_context_activation(false)
        .with_filter(platform_spans())
}

/// The crates whose spans are exported: the services and this library.
/// A new service crate is added here.
pub const PLATFORM_CRATES: &[&str] = &["shared", "gateway", "backend", "product", "worker"];

/// INFO spans of [`PLATFORM_CRATES`], nothing else.
fn platform_spans() -> Targets {
    Targets::new().with_targets(
        PLATFORM_CRATES
            .iter()
            .map(|krate| (*krate, tracing::Level::INFO)),
    )
}

/// `RUST_LOG` (default `info`). lapin logs every failed reconnect attempt as
/// an error; the `Broker` already logs each connection state change once, so
/// lapin is silenced unless `RUST_LOG` names it.
///
/// A plain list of `target=level` directives (what the README's examples
/// use) becomes a [`Targets`] filter, which decides per callsite once.
/// [`EnvFilter`] takes a lock and a hash lookup on every span's creation,
/// entry, exit, record and close, for the span and field directives
/// (`[span]=debug`) only it understands; a `RUST_LOG` with those still gets
/// it (BENCHMARKS.md has what the lookups cost).
fn log_filter<S>() -> Box<dyn Filter<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    log_filter_of(std::env::var("RUST_LOG").ok())
}

fn log_filter_of<S>(rust_log: Option<String>) -> Box<dyn Filter<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let directives = rust_log
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".to_string());
    let directives = if directives.contains("lapin") {
        directives
    } else {
        format!("{directives},lapin=off")
    };
    // Empty parts (`info,`) are nothing to `EnvFilter`, but `Targets` would
    // read one as a bare level, ERROR, in place of the `info` before it.
    let directives = directives
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    // `Targets` would read `[span]` as a target's name.
    let span_or_field = directives.contains(['[', ']', '{', '}']);
    if let (false, Ok(targets)) = (span_or_field, directives.parse::<Targets>()) {
        return Box::new(targets);
    }
    match EnvFilter::try_new(&directives) {
        Ok(filter) => Box::new(filter),
        Err(err) => {
            eprintln!("RUST_LOG={directives:?} is invalid ({err}); using info");
            Box::new(
                Targets::new()
                    .with_default(tracing::Level::INFO)
                    .with_target("lapin", tracing_subscriber::filter::LevelFilter::OFF),
            )
        }
    }
}

/// An unsigned count or id as a span attribute value (`field = int_attribute(n)`).
///
/// tracing-opentelemetry has no unsigned visitor: a `u64`, `u32` or `usize`
/// field reaches it through `Debug` and is exported as a *string*, which
/// Jaeger's numeric tag filters and the conventions' integer attributes do
/// not match (and which costs a `format!` per span). OTLP integers are
/// `i64`; a larger value saturates.
pub fn int_attribute(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

fn sdk_disabled() -> bool {
    std::env::var("OTEL_SDK_DISABLED")
        .map(|v| v.trim().eq_ignore_ascii_case("true"))
        .unwrap_or(false)
}

/// The resource: the SDK's detectors (which read `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`) on top of our defaults, so the environment wins.
fn resource(default_service_name: &str, version: &str) -> Resource {
    let env_names_service = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    // Tells apart the processes of one service (e.g. scaled workers); the
    // environment can still set it.
    let mut builder = Resource::builder_empty()
        .with_attribute(KeyValue::new("service.version", version.to_string()))
        .with_attribute(KeyValue::new(
            "service.instance.id",
            uuid::Uuid::new_v4().to_string(),
        ))
        .with_detectors(&[
            Box::new(SdkProvidedResourceDetector),
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ]);
    if !env_names_service {
        builder = builder.with_service_name(default_service_name.to_string());
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines a fmt layer filtered by `log_filter_of(rust_log)` writes
    /// for a few events.
    fn logged_with(rust_log: &str) -> String {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt as _;

        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(log_filter_of(Some(rust_log.to_string())));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "shared::amqp", "info-line");
            tracing::debug!(target: "shared::http", "debug-in-http");
            tracing::debug!(target: "backend", "debug-in-backend");
            tracing::error!(target: "lapin::channel", "lapin-error");
            let span = tracing::info_span!(target: "backend", "probe");
            span.in_scope(|| tracing::debug!(target: "backend", "debug-in-probe"));
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn rust_log_target_lists_span_directives_and_nonsense_each_filter_as_written() {
        // A target list (a `Targets` filter): the target's own level, lapin off.
        let logged = logged_with("info,shared::http=debug");
        assert!(
            logged.contains("info-line") && logged.contains("debug-in-http"),
            "{logged}"
        );
        assert!(
            !logged.contains("debug-in-backend") && !logged.contains("lapin-error"),
            "{logged}"
        );
        // An empty part (`RUST_LOG="info,$EXTRA"`) changes nothing.
        let logged = logged_with("info,,shared::http=debug,");
        assert!(
            logged.contains("info-line") && logged.contains("debug-in-http"),
            "{logged}"
        );
        // Naming lapin brings it back.
        assert!(logged_with("info,lapin=error").contains("lapin-error"));
        // A span directive (`EnvFilter`): debug inside that span only.
        let logged = logged_with("info,[probe]=debug");
        assert!(logged.contains("debug-in-probe"), "{logged}");
        assert!(!logged.contains("debug-in-backend"), "{logged}");
        // Nonsense: info, lapin off.
        let logged = logged_with("info,=[[");
        assert!(
            logged.contains("info-line") && !logged.contains("debug-in-http"),
            "{logged}"
        );
    }

    #[test]
    fn unsigned_fields_are_exported_as_integers_only_through_int_attribute() {
        let spans = crate::span_recorder::record_spans(|| {
            let _span = tracing::info_span!(
                "counted",
                raw = 7_u32,
                converted = int_attribute(7_u32),
                huge = int_attribute(u64::MAX),
            )
            .entered();
        });
        let span = crate::span_recorder::span_named(&spans, "counted");
        let value = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.clone())
        };
        // Why the helper exists: tracing-opentelemetry formats an unsigned
        // field into a string. (Should it stop doing so, this line says the
        // helper can go.)
        assert_eq!(value("raw"), Some(opentelemetry::Value::from("7")));
        assert_eq!(value("converted"), Some(opentelemetry::Value::I64(7)));
        assert_eq!(value("huge"), Some(opentelemetry::Value::I64(i64::MAX)));
    }
}
