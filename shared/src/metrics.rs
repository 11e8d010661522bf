//! Prometheus metrics with trace-id exemplars (a click from a slow bucket in
//! Grafana lands on a trace that was that slow): the exemplar and histogram
//! types every metric uses, and the task metrics, split by the service that
//! exports them ([`PublishedTasks`] for the backend, [`WorkerMetrics`] for
//! the worker). The HTTP metrics and `/metrics` live with the HTTP edge
//! (`crate::http::metrics`), the database's with it (`crate::db`).

use opentelemetry::trace::TraceContextExt;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, exemplar::HistogramWithExemplars, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::task::{DeadLetterKind, TaskType};

/// The exemplar attached to a latency observation: the trace it belongs to.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    /// 32 hex chars.
    pub trace_id: String,
}

/// The current span's trace id as an exemplar, if the span is sampled (an
/// unsampled trace cannot be looked up, so it makes a useless exemplar).
pub fn current_trace_exemplar() -> Option<TraceExemplar> {
    trace_exemplar_of(&tracing::Span::current())
}

/// `span`'s trace id as an exemplar, if the span is sampled.
pub fn trace_exemplar_of(span: &tracing::Span) -> Option<TraceExemplar> {
    let context = span.context();
    let span = context.span();
    let span_context = span.span_context();
    (span_context.is_valid() && span_context.is_sampled()).then(|| TraceExemplar {
        trace_id: crate::telemetry::w3c::trace_id_hex(span_context.trace_id()),
    })
}

/// A latency histogram family whose observations carry trace exemplars.
pub type LatencyHistogram<L> =
    Family<L, HistogramWithExemplars<TraceExemplar>, fn() -> HistogramWithExemplars<TraceExemplar>>;

/// Buckets (seconds) recommended by the HTTP semantic conventions, extended
/// to 30 s for long tasks.
const LATENCY_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0,
];

/// A histogram with the latency buckets.
pub fn latency_histogram() -> HistogramWithExemplars<TraceExemplar> {
    HistogramWithExemplars::new(LATENCY_BUCKETS.into_iter())
}

/// Label: the task type.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskTypeLabel {
    /// `echo`, `sleep`, `hash`.
    pub task_type: String,
}

impl From<TaskType> for TaskTypeLabel {
    fn from(task_type: TaskType) -> Self {
        Self {
            task_type: task_type.as_str().to_string(),
        }
    }
}

/// How one task attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// It returned a result.
    Succeeded,
    /// It returned an error.
    Failed,
}

impl TaskOutcome {
    /// The label value (`succeeded`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// Labels of the processing duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskOutcomeLabels {
    /// `echo`, `sleep`, `hash`.
    pub task_type: String,
    /// `succeeded` or `failed`.
    pub outcome: String,
}

impl TaskOutcomeLabels {
    /// The labels of one attempt of `task_type` that ended with `outcome`.
    pub fn new(task_type: TaskType, outcome: TaskOutcome) -> Self {
        Self {
            task_type: task_type.as_str().to_string(),
            outcome: outcome.as_str().to_string(),
        }
    }
}

/// Label: why a message was dead-lettered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `max-attempts`, `invalid-payload`, `poison`.
    pub reason: String,
}

impl From<DeadLetterKind> for ReasonLabel {
    fn from(kind: DeadLetterKind) -> Self {
        Self {
            reason: kind.as_str().to_string(),
        }
    }
}

/// Adds one to `family` for `task_type`.
pub fn count(family: &Family<TaskTypeLabel, Counter>, task_type: TaskType) {
    family.get_or_create(&TaskTypeLabel::from(task_type)).inc();
}

/// The backend's task counter.
#[derive(Clone)]
pub struct PublishedTasks {
    /// `tasks_published_total{task_type}`: confirmed by the broker.
    pub published: Family<TaskTypeLabel, Counter>,
}

impl PublishedTasks {
    /// Registers `tasks_published_total`, every task type's series at zero:
    /// Prometheus sees no increase in a series whose first sample is already
    /// 1, so without it the first task of a type never shows in `rate()`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            published: Family::default(),
        };
        registry.register(
            "tasks_published",
            "Tasks confirmed by the broker",
            metrics.published.clone(),
        );
        for &task_type in TaskType::ALL {
            // Creating the series is the point; the guard is not needed.
            drop(
                metrics
                    .published
                    .get_or_create(&TaskTypeLabel::from(task_type)),
            );
        }
        metrics
    }
}

/// The worker's task counters, histograms and gauges.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// `tasks_processed_total{task_type}`: attempts executed, any outcome.
    pub processed: Family<TaskTypeLabel, Counter>,
    /// `tasks_failed_total{task_type}`: attempts that failed.
    pub failed: Family<TaskTypeLabel, Counter>,
    /// `tasks_retried_total{task_type}`: retries scheduled.
    pub retried: Family<TaskTypeLabel, Counter>,
    /// `tasks_dead_lettered_total{reason}`.
    pub dead_lettered: Family<ReasonLabel, Counter>,
    /// `task_processing_duration_seconds{task_type, outcome}`.
    pub duration: LatencyHistogram<TaskOutcomeLabels>,
    /// `worker_consumers_busy`: consumer actors running a task now.
    pub consumers_busy: Gauge,
    /// `worker_consumers`: consumer actors configured.
    pub consumers: Gauge,
}

impl WorkerMetrics {
    /// Registers the worker's metrics, every task type's, outcome's and
    /// dead-letter reason's series at zero (see [`PublishedTasks::register`]).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            processed: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            consumers_busy: Gauge::default(),
            consumers: Gauge::default(),
        };
        registry.register(
            "tasks_processed",
            "Task attempts executed, any outcome",
            metrics.processed.clone(),
        );
        registry.register(
            "tasks_failed",
            "Task attempts that failed",
            metrics.failed.clone(),
        );
        registry.register(
            "tasks_retried",
            "Task retries scheduled",
            metrics.retried.clone(),
        );
        registry.register(
            "tasks_dead_lettered",
            "Messages moved to the dead-letter queue",
            metrics.dead_lettered.clone(),
        );
        registry.register_with_unit(
            "task_processing_duration",
            "Duration of one task attempt's execution",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "worker_consumers_busy",
            "Consumer actors running a task",
            metrics.consumers_busy.clone(),
        );
        registry.register(
            "worker_consumers",
            "Consumer actors configured",
            metrics.consumers.clone(),
        );
        for &task_type in TaskType::ALL {
            let label = TaskTypeLabel::from(task_type);
            for family in [&metrics.processed, &metrics.failed, &metrics.retried] {
                drop(family.get_or_create(&label));
            }
            for outcome in [TaskOutcome::Succeeded, TaskOutcome::Failed] {
                drop(
                    metrics
                        .duration
                        .get_or_create(&TaskOutcomeLabels::new(task_type, outcome)),
                );
            }
        }
        for kind in DeadLetterKind::ALL {
            drop(
                metrics
                    .dead_lettered
                    .get_or_create(&ReasonLabel::from(kind)),
            );
        }
        metrics
    }
}
