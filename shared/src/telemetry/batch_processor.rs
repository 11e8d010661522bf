//! The span processor: each span encoded to OTLP on the thread that ends
//! it, and sent in batches from the exporter's runtime.
//!
//! The SDK's `BatchSpanProcessor` moves every ended `SpanData` through a
//! channel to a thread of its own, which converts and frees it there: the
//! channel, and the allocator handing memory freed on one thread back to
//! another, cost a products request two thirds as much as encoding its
//! spans (BENCHMARKS.md). Here a span becomes its protobuf bytes where it ends,
//! its memory is freed where it was allocated, and only bytes queue up.
//! It honours the same `OTEL_BSP_*` variables.

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::Duration,
};

use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::{
    error::{OTelSdkError, OTelSdkResult},
    trace::{Span, SpanData, SpanProcessor},
    Resource,
};
use prost::bytes::Bytes;

use crate::config;

use super::{
    exporter::OtlpExporter,
    otlp_encoding::{encode_batch, encode_span, same_scope, EncodedResource, TYPICAL_SPAN_BYTES},
    TelemetryError,
};

/// Spans queued per service before new ones are dropped, unless
/// `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise (the SDK's default is 2,048).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 4_096;
/// Export requests in flight at once, unless
/// `OTEL_BSP_MAX_CONCURRENT_EXPORTS` says otherwise (the SDK exports one
/// batch at a time).
pub const DEFAULT_CONCURRENT_EXPORTS: u32 = 8;
/// Spans per export, unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` says otherwise
/// (the specification's default).
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
/// How long a span waits at most for its batch to fill, unless
/// `OTEL_BSP_SCHEDULE_DELAY` (milliseconds) says otherwise (the
/// specification's default).
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(5);

/// How long `force_flush` waits for the exports it started.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The batch processor's settings, from the `OTEL_BSP_*` variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BatchSettings {
    /// Spans ended and not yet being sent, at most; more are dropped.
    pub(super) max_queue_size: usize,
    /// Spans per export request, at most (no more than the queue).
    pub(super) max_export_batch_size: usize,
    /// What is pending is sent at least this often, full batch or not.
    pub(super) schedule_delay: Duration,
    /// Export requests in flight at once.
    pub(super) concurrent_exports: u32,
}

impl BatchSettings {
    /// The settings the process environment gives.
    pub(super) fn from_env() -> Result<Self, TelemetryError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The settings `var` gives (a variable's value, if set); a value that
    /// is not a whole number in range is refused, naming the variable.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let number = |name: &'static str, default: u64, max: u64| {
            config::value_in_range(name, var(name), default, 1, max)
                .map_err(|err| TelemetryError::Config(err.to_string()))
        };
        let max_queue_size = number(
            "OTEL_BSP_MAX_QUEUE_SIZE",
            DEFAULT_MAX_QUEUE_SIZE as u64,
            1_000_000,
        )? as usize;
        let max_export_batch_size = number(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            DEFAULT_MAX_EXPORT_BATCH_SIZE as u64,
            1_000_000,
        )? as usize;
        let schedule_delay = number(
            "OTEL_BSP_SCHEDULE_DELAY",
            DEFAULT_SCHEDULE_DELAY.as_millis() as u64,
            3_600_000,
        )?;
        let concurrent_exports = number(
            "OTEL_BSP_MAX_CONCURRENT_EXPORTS",
            u64::from(DEFAULT_CONCURRENT_EXPORTS),
            64,
        )? as u32;
        Ok(Self {
            max_queue_size,
            // As the specification says: a batch never larger than the queue.
            max_export_batch_size: max_export_batch_size.min(max_queue_size),
            schedule_delay: Duration::from_millis(schedule_delay),
            concurrent_exports,
        })
    }
}

/// The SDK span processor the services export with: spans are encoded as
/// they end and sent in batches of `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, and
/// whatever is pending every `OTEL_BSP_SCHEDULE_DELAY`, with up to
/// `OTEL_BSP_MAX_CONCURRENT_EXPORTS` requests in flight.
///
/// Up to `OTEL_BSP_MAX_QUEUE_SIZE` spans wait to be sent (encoded, about a
/// quarter of a kilobyte each); beyond that new spans are dropped, the
/// first drop logged at once and the total at shutdown, so a missing
/// collector costs bounded memory and nothing on the request path.
/// `force_flush` and shutdown send what is queued and wait for every export
/// in flight to end.
#[derive(Debug)]
pub(super) struct OtlpBatchProcessor {
    shared: Arc<Shared>,
    /// Sends what is pending every `OTEL_BSP_SCHEDULE_DELAY`.
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    settings: BatchSettings,
    exporter: OtlpExporter,
    runtime: tokio::runtime::Handle,
    /// The service's resource, encoded once (the SDK hands it over when
    /// the provider is built).
    resource: Mutex<Arc<EncodedResource>>,
    pending: Mutex<Pending>,
    /// Spans ended and not yet being sent: pending, or in batches waiting
    /// for an export slot.
    queued: AtomicUsize,
    slots: Arc<tokio::sync::Semaphore>,
    /// Batches handed to the runtime whose export has not ended.
    exports: Mutex<usize>,
    exports_ended: Condvar,
    dropped: AtomicU64,
    shut_down: AtomicBool,
}

/// The spans of the batch being filled, encoded, by scope.
#[derive(Debug, Default)]
struct Pending {
    scopes: Vec<(InstrumentationScope, Vec<u8>)>,
    spans: usize,
}

impl Pending {
    fn push(&mut self, scope: &InstrumentationScope, span: &[u8], batch_size: usize) {
        // A service's spans come from one scope or two: a scan beats a map.
        match self
            .scopes
            .iter_mut()
            .find(|(known, _)| same_scope(known, scope))
        {
            Some((_, spans)) => spans.extend_from_slice(span),
            None => {
                let mut spans = Vec::with_capacity(batch_size * TYPICAL_SPAN_BYTES);
                spans.extend_from_slice(span);
                self.scopes.push((scope.clone(), spans));
            }
        }
        self.spans += 1;
    }
}

thread_local! {
    /// Where a span is encoded before it joins the batch: the lock is held
    /// for a copy, not for the encoding.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4 * TYPICAL_SPAN_BYTES));
}

impl OtlpBatchProcessor {
    /// A processor sending through `exporter`, whose requests run on
    /// `runtime`.
    pub(super) fn new(
        exporter: OtlpExporter,
        settings: BatchSettings,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let shared = Arc::new(Shared {
            settings,
            exporter,
            runtime: runtime.clone(),
            resource: Mutex::default(),
            pending: Mutex::default(),
            queued: AtomicUsize::new(0),
            slots: Arc::new(tokio::sync::Semaphore::new(
                settings.concurrent_exports as usize,
            )),
            exports: Mutex::new(0),
            exports_ended: Condvar::new(),
            dropped: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
        });
        let ticking = shared.clone();
        let timer = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(ticking.settings.schedule_delay);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                ticking.send_pending();
            }
        });
        Self {
            shared,
            timer: Mutex::new(Some(timer)),
        }
    }
}

/// A lock whose holder panicked is still usable: what it guards is a
/// buffer or a count, never half-updated in a way that matters.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Takes `span` into the batch; sends the batch once it is full.
    fn take(self: &Arc<Self>, span: &SpanData) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.settings.max_queue_size {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    max_queue_size = self.settings.max_queue_size,
                    "the span queue is full (OTEL_BSP_MAX_QUEUE_SIZE); spans are dropped until it drains (the total is logged at shutdown)"
                );
            }
            return;
        }
        let full = SCRATCH
            .try_with(|scratch| match scratch.try_borrow_mut() {
                Ok(mut scratch) => {
                    scratch.clear();
                    encode_span(&mut scratch, span);
                    self.push(span, &scratch)
                }
                Err(_) => self.push_encoded_alone(span),
            })
            .unwrap_or_else(|_| self.push_encoded_alone(span));
        if let Some(batch) = full {
            self.send(batch);
        }
    }

    /// As [`take`](Self::take) does, without the thread's scratch buffer
    /// (a thread being torn down).
    fn push_encoded_alone(&self, span: &SpanData) -> Option<Pending> {
        let mut encoded = Vec::with_capacity(TYPICAL_SPAN_BYTES);
        encode_span(&mut encoded, span);
        self.push(span, &encoded)
    }

    /// Adds an encoded span to the batch; the batch, if that filled it.
    fn push(&self, span: &SpanData, encoded: &[u8]) -> Option<Pending> {
        let batch_size = self.settings.max_export_batch_size;
        let mut pending = lock(&self.pending);
        pending.push(&span.instrumentation_scope, encoded, batch_size);
        (pending.spans >= batch_size).then(|| std::mem::take(&mut *pending))
    }

    /// Sends the spans pending, if any.
    fn send_pending(self: &Arc<Self>) {
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.spans > 0 {
            self.send(batch);
        }
    }

    /// Sends `batch` from the runtime when an export slot is free.
    fn send(self: &Arc<Self>, batch: Pending) {
        *lock(&self.exports) += 1;
        let ended = ExportEnded(self.clone());
        let slots = self.slots.clone();
        // A runtime already shut down drops the task, and `ended` with it.
        self.runtime.spawn(async move {
            let shared = &ended.0;
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let resource = lock(&shared.resource).clone();
            let request = encode_batch(
                &resource,
                batch
                    .scopes
                    .iter()
                    .map(|(scope, spans)| (scope, spans.as_slice())),
            );
            let spans = batch.spans;
            drop(batch);
            shared.queued.fetch_sub(spans, Ordering::Relaxed);
            shared.exporter.export(Bytes::from(request), spans).await;
        });
    }

    /// Waits until no export is in flight, or `timeout` has passed; false
    /// if some still are.
    fn wait_for_exports(&self, timeout: Duration) -> bool {
        let exports = lock(&self.exports);
        let (exports, _) = self
            .exports_ended
            .wait_timeout_while(exports, timeout, |in_flight| *in_flight > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *exports == 0
    }
}

/// Counts an export as ended when dropped: when it ends, or when a runtime
/// shutting down drops it unfinished.
struct ExportEnded(Arc<Shared>);

impl Drop for ExportEnded {
    fn drop(&mut self) {
        let mut exports = lock(&self.0.exports);
        *exports = exports.saturating_sub(1);
        if *exports == 0 {
            self.0.exports_ended.notify_all();
        }
    }
}

impl SpanProcessor for OtlpBatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        // Only sampled spans are exported; a span recorded but not sampled
        // (a custom sampler's `RecordOnly`) is for in-process processors.
        if !span.span_context.is_sampled() || self.shared.shut_down.load(Ordering::Relaxed) {
            return;
        }
        self.shared.take(&span);
        // `span` is freed here, on the thread that allocated it.
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.shared.send_pending();
        if self.shared.wait_for_exports(FLUSH_TIMEOUT) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(FLUSH_TIMEOUT))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.shared.shut_down.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        if let Some(timer) = lock(&self.timer).take() {
            timer.abort();
        }
        self.shared.send_pending();
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped_spans = dropped,
                max_queue_size = self.shared.settings.max_queue_size,
                "spans were dropped over the process's life because the span queue was full (OTEL_BSP_MAX_QUEUE_SIZE)"
            );
        }
        if self.shared.wait_for_exports(timeout) {
            Ok(())
        } else {
            tracing::warn!(?timeout, "span exports still in flight at shutdown");
            Err(OTelSdkError::Timeout(timeout))
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Exports in flight keep the resource they started with.
        *lock(&self.shared.resource) = Arc::new(EncodedResource::new(resource));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;
    use crate::telemetry::{exporter, ExportTarget};

    fn settings_of(vars: &[(&str, &str)]) -> Result<BatchSettings, String> {
        BatchSettings::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
        .map_err(|err| err.to_string())
    }

    #[test]
    fn batch_settings_come_from_otel_bsp_variables_and_refuse_what_is_out_of_range() {
        let defaults = BatchSettings {
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
            max_export_batch_size: DEFAULT_MAX_EXPORT_BATCH_SIZE,
            schedule_delay: DEFAULT_SCHEDULE_DELAY,
            concurrent_exports: DEFAULT_CONCURRENT_EXPORTS,
        };
        assert_eq!(settings_of(&[]), Ok(defaults));
        // Empty is unset.
        assert_eq!(
            settings_of(&[("OTEL_BSP_SCHEDULE_DELAY", " ")]),
            Ok(defaults)
        );
        assert_eq!(
            settings_of(&[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", " 10 "),
                ("OTEL_BSP_SCHEDULE_DELAY", "250"),
                ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "2"),
            ]),
            Ok(BatchSettings {
                max_queue_size: 100,
                max_export_batch_size: 10,
                schedule_delay: Duration::from_millis(250),
                concurrent_exports: 2,
            })
        );
        // A batch never larger than the queue.
        let small_queue = settings_of(&[("OTEL_BSP_MAX_QUEUE_SIZE", "64")]).unwrap();
        assert_eq!(small_queue.max_export_batch_size, 64);
        for (name, bad) in [
            ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "0"),
            ("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "65"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "5s"),
        ] {
            let err = settings_of(&[(name, bad)]).unwrap_err();
            assert!(
                err.contains(name) && err.contains(bad),
                "{name}={bad}: {err}"
            );
        }
    }

    #[test]
    fn with_a_hanging_collector_spans_beyond_the_queue_are_dropped_and_shutdown_ends_on_time() {
        // Connections are accepted (by the kernel) and never answered.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = ExportTarget::grpc(format!("http://{}", listener.local_addr().unwrap()));
        let (exporter, runtime) = exporter::build(&target).unwrap();
        let settings = BatchSettings {
            max_queue_size: 8,
            max_export_batch_size: 4,
            schedule_delay: Duration::from_secs(3600),
            concurrent_exports: 1,
        };
        let processor = OtlpBatchProcessor::new(exporter, settings, runtime.handle().clone());
        let shared = processor.shared.clone();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("queue");
        for i in 0..20 {
            tracer.start(format!("span-{i}")).end();
        }
        // One batch of 4 is being sent (stuck), 8 wait in the queue, the
        // rest is dropped; until the first batch has taken its slot, its 4
        // count as queued as well.
        let dropped = shared.dropped.load(Ordering::Relaxed);
        assert!((8..=12).contains(&dropped), "dropped {dropped}");
        assert!(shared.queued.load(Ordering::Relaxed) <= 8);

        let started = Instant::now();
        let result = provider.shutdown_with_timeout(Duration::from_millis(300));
        assert!(result.is_err(), "exports still hang: {result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        runtime.shutdown_background();
    }
}
