//! Where spans go: OTLP over gRPC (default) or HTTP/protobuf, chosen from the
//! standard environment, with a fallback for setups written for the Jaeger
//! agent.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{error::OTelSdkResult, trace::SpanData, Resource};

use super::TelemetryError;

/// The OTLP destination resolved from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportTarget {
    /// `grpc` or `http/protobuf`.
    pub protocol: ExportProtocol,
    /// An endpoint we set in code; `None` lets the exporter follow the
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` rules of the specification.
    pub endpoint: Option<String>,
    /// The Jaeger agent host that produced `endpoint`, if any.
    pub jaeger_agent_host: Option<String>,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl ExportTarget {
    /// Reads `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`, `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`
    /// and `JAEGER_AGENT_HOST`.
    pub fn from_env() -> Result<Self, String> {
        Self::resolve(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    fn resolve(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        // Enum values are case-insensitive, as the OTLP exporter reads them.
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("grpc") => ExportProtocol::Grpc,
            Some("http/protobuf") => ExportProtocol::HttpProtobuf,
            Some(other) => {
                return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported; use grpc or http/protobuf"
            ))
            }
        };
        let mut endpoint_set = false;
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            if let Some(value) = var(name) {
                check_endpoint(name, value.trim())?;
                endpoint_set = true;
            }
        }
        let jaeger_agent_host = if endpoint_set {
            None
        } else {
            var("JAEGER_AGENT_HOST").map(|h| h.trim().to_string())
        };
        let endpoint = jaeger_agent_host.as_ref().map(|host| match protocol {
            ExportProtocol::Grpc => format!("http://{host}:4317"),
            ExportProtocol::HttpProtobuf => format!("http://{host}:4318/v1/traces"),
        });
        Ok(Self {
            protocol,
            endpoint,
            jaeger_agent_host,
        })
    }

    /// The start-up line explaining a Jaeger-agent fallback, if one happened.
    pub fn jaeger_agent_note(&self) -> Option<String> {
        let host = self.jaeger_agent_host.as_ref()?;
        Some(format!(
            "JAEGER_AGENT_HOST={host} and no OTEL_EXPORTER_OTLP_ENDPOINT: exporting OTLP to {} (Jaeger ingests OTLP natively; the agent protocol is not used)",
            self.endpoint.as_deref().unwrap_or_default()
        ))
    }
}

impl fmt::Display for ExportTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            ExportProtocol::Grpc => "otlp/grpc",
            ExportProtocol::HttpProtobuf => "otlp/http-protobuf",
        };
        match &self.endpoint {
            Some(endpoint) => write!(f, "{protocol} {endpoint}"),
            None => {
                let from_env = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                    .unwrap_or_else(|_| match self.protocol {
                        ExportProtocol::Grpc => "http://localhost:4317 (default)".into(),
                        ExportProtocol::HttpProtobuf => "http://localhost:4318 (default)".into(),
                    });
                write!(f, "{protocol} {from_env}")
            }
        }
    }
}

/// An OTLP endpoint this build can reach: `http://` only. The exporter
/// itself takes a scheme-less endpoint for `https://`, and reports a missing
/// TLS feature in terms of Cargo features; this says what to write instead.
fn check_endpoint(name: &str, value: &str) -> Result<(), String> {
    match value.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => Ok(()),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => Err(format!(
            "{name}={value:?}: this build exports OTLP without TLS; give an http:// endpoint \
             (a collector beside the service can forward over TLS)"
        )),
        Some(_) => Err(format!(
            "{name}={value:?}: the endpoint must start with http://"
        )),
        None => Err(format!(
            "{name}={value:?} has no scheme; write http://{value}"
        )),
    }
}

/// How often at most an export failure is logged.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Wraps the OTLP exporter so that a missing or hanging collector costs one
/// warning a minute (with a count of what failed meanwhile) instead of one
/// error line per batch, and a recovery is logged once.
///
/// Failures are not handed back to the SDK: its only reaction would be to log
/// each one. Spans of a failed batch are dropped; the SDK's queue
/// (`OTEL_BSP_MAX_QUEUE_SIZE`) bounds memory while the collector is away.
///
/// Over gRPC, up to `OTEL_BSP_MAX_CONCURRENT_EXPORTS` batches are in flight
/// at once. The SDK's batch processor waits for each export before it takes
/// the next batch, so one export at a time caps the spans a service can ship
/// at a batch per collector round trip; under load the queue overflowed and
/// most spans were dropped (BENCHMARKS.md). Shutdown waits for the batches
/// in flight.
#[derive(Debug)]
pub(super) struct ReportingExporter {
    inner: Arc<SpanExporter>,
    failures: Arc<Mutex<FailureLog>>,
    /// `None`: one export at a time, on the SDK's thread (HTTP, whose
    /// blocking client needs no runtime).
    pipeline: Option<Pipeline>,
}

/// Where exports run side by side, and how many may.
#[derive(Debug)]
struct Pipeline {
    runtime: tokio::runtime::Handle,
    slots: Arc<tokio::sync::Semaphore>,
    size: u32,
}

impl Pipeline {
    /// Waits until no export is in flight (or `timeout` passes).
    fn drain(&self, timeout: Duration) -> bool {
        self.runtime.block_on(async {
            tokio::time::timeout(timeout, self.slots.acquire_many(self.size))
                .await
                .is_ok_and(|permits| permits.is_ok())
        })
    }
}

#[derive(Debug, Default)]
struct FailureLog {
    failing: bool,
    last_logged: Option<Instant>,
    batches_since: u64,
    spans_since: u64,
}

impl FailureLog {
    /// Records a failed batch; returns what to log now, if anything.
    fn failed(&mut self, spans: usize, now: Instant) -> Option<(u64, u64)> {
        self.failing = true;
        self.batches_since += 1;
        self.spans_since += spans as u64;
        let due = self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_logged = Some(now);
        let counts = (self.batches_since, self.spans_since);
        self.batches_since = 0;
        self.spans_since = 0;
        Some(counts)
    }

    /// Records a success; true when it ends a failure streak.
    fn succeeded(&mut self) -> bool {
        let recovered = self.failing;
        self.failing = false;
        self.batches_since = 0;
        self.spans_since = 0;
        recovered
    }
}

impl ReportingExporter {
    fn new(inner: SpanExporter, pipeline: Option<Pipeline>) -> Self {
        Self {
            inner: Arc::new(inner),
            failures: Arc::default(),
            pipeline,
        }
    }
}

/// Logs the outcome of one export as [`ReportingExporter`] describes.
fn report(failures: &Mutex<FailureLog>, spans: usize, result: OTelSdkResult) {
    let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(()) => {
            if failures.succeeded() {
                tracing::info!("span export to the collector works again");
            }
        }
        Err(err) => {
            if let Some((batches, spans)) = failures.failed(spans, Instant::now()) {
                tracing::warn!(
                    error = %err,
                    failed_batches = batches,
                    dropped_spans = spans,
                    "span export failed; spans are dropped until the collector is reachable (logged at most once a minute)"
                );
            } else {
                tracing::debug!(error = %err, dropped_spans = spans, "span export still failing");
            }
        }
    }
}

impl opentelemetry_sdk::trace::SpanExporter for ReportingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let Some(pipeline) = &self.pipeline else {
            let result = self.inner.export(batch).await;
            report(&self.failures, spans, result);
            return Ok(());
        };
        // With every slot taken, the SDK's thread waits here and its queue
        // absorbs the backlog.
        let Ok(slot) = pipeline.slots.clone().acquire_owned().await else {
            return Ok(()); // closed: shutting down
        };
        let (inner, failures) = (self.inner.clone(), self.failures.clone());
        pipeline.runtime.spawn(async move {
            let result = inner.export(batch).await;
            report(&failures, spans, result);
            drop(slot);
        });
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if let Some(pipeline) = &self.pipeline {
            if !pipeline.drain(timeout) {
                tracing::warn!(?timeout, "span exports still in flight at shutdown");
            }
        }
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        if let Some(pipeline) = &self.pipeline {
            pipeline.drain(Duration::from_secs(5));
        }
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Before the first export (the SDK sets it at start-up), the only
        // holder of `inner`; afterwards the resource cannot change.
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.set_resource(resource),
            None => tracing::warn!("span exporter resource not updated: exports in flight"),
        }
    }
}

/// Builds the span exporter; for gRPC also the runtime it must live on.
pub(super) fn build(
    target: &ExportTarget,
    concurrent_exports: u32,
) -> Result<(ReportingExporter, Option<tokio::runtime::Runtime>), TelemetryError> {
    match target.protocol {
        ExportProtocol::Grpc => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otel-export")
                .enable_all()
                .build()?;
            // tonic binds its connection to the runtime current at build time.
            let _entered = runtime.enter();
            let mut builder = SpanExporter::builder().with_tonic();
            if let Some(endpoint) = &target.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            let exporter = builder.build()?;
            drop(_entered);
            let pipeline = Pipeline {
                runtime: runtime.handle().clone(),
                slots: Arc::new(tokio::sync::Semaphore::new(concurrent_exports as usize)),
                size: concurrent_exports,
            };
            Ok((
                ReportingExporter::new(exporter, Some(pipeline)),
                Some(runtime),
            ))
        }
        ExportProtocol::HttpProtobuf => {
            let mut builder = SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary);
            if let Some(endpoint) = &target.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            Ok((ReportingExporter::new(builder.build()?, None), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)]) -> Result<ExportTarget, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportTarget::resolve(|name| vars.get(name).cloned())
    }

    #[test]
    fn export_failures_are_logged_once_a_minute_with_counts_and_recovery_once() {
        let start = Instant::now();
        let mut log = FailureLog::default();
        assert_eq!(log.failed(10, start), Some((1, 10)));
        assert_eq!(log.failed(5, start + Duration::from_secs(1)), None);
        assert_eq!(log.failed(5, start + Duration::from_secs(59)), None);
        assert_eq!(
            log.failed(1, start + Duration::from_secs(60)),
            Some((3, 11))
        );
        assert!(log.succeeded());
        assert!(!log.succeeded());
    }

    #[test]
    fn grpc_is_the_default_and_the_exporter_reads_the_endpoint_itself() {
        let target = resolve(&[]).unwrap();
        assert_eq!(target.protocol, ExportProtocol::Grpc);
        assert_eq!(target.endpoint, None);
    }

    #[test]
    fn http_protobuf_is_selected_by_the_protocol_variable() {
        let target = resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap();
        assert_eq!(target.protocol, ExportProtocol::HttpProtobuf);
        let target = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", " HTTP/Protobuf ")]).unwrap();
        assert_eq!(target.protocol, ExportProtocol::HttpProtobuf);
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]).is_err());
    }

    #[test]
    fn an_endpoint_without_http_is_refused_with_what_to_write_instead() {
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317")]).is_ok());
        assert!(resolve(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "HTTP://jaeger:4318/v1/traces"
        )])
        .is_ok());

        let err = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4317")]).unwrap_err();
        assert!(err.contains("write http://jaeger:4317"), "{err}");
        let err = resolve(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://otel.example.com",
        )])
        .unwrap_err();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") && err.contains("without TLS"),
            "{err}"
        );
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://jaeger:4317")]).is_err());
    }

    #[test]
    fn jaeger_agent_host_alone_points_otlp_at_that_host() {
        let target = resolve(&[("JAEGER_AGENT_HOST", "jaeger")]).unwrap();
        assert_eq!(target.endpoint.as_deref(), Some("http://jaeger:4317"));
        assert!(target
            .jaeger_agent_note()
            .unwrap()
            .contains("http://jaeger:4317"));
    }

    #[test]
    fn an_otlp_endpoint_wins_over_jaeger_agent_host() {
        let target = resolve(&[
            ("JAEGER_AGENT_HOST", "jaeger"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ])
        .unwrap();
        assert_eq!(target.endpoint, None);
        assert_eq!(target.jaeger_agent_note(), None);
    }
}
