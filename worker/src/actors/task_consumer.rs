//! One consumer of the task queue, with its own channel; it runs up to its
//! prefetch (`WORKER_PREFETCH`) deliveries at once, so a slow task never
//! holds back the ones prefetched behind it.
//!
//! For each delivery: a CONSUMER span `process <queue>` continuing the
//! producer's trace; inside it one `process-task` span for this attempt,
//! which asks the [`TaskExecutor`] to run the task (reporting `processing`
//! if it is still running after `PROCESSING_REPORT_DELAY_MS`), then settles
//! the outcome:
//! - success: reports `succeeded`;
//! - a failure with attempts left: reports `queued` and republishes the task
//!   to the delay queue `<queue>.retry.<n>`, from which the broker hands it
//!   back after the retry delay (the consumer is not blocked meanwhile);
//! - the last attempt, or a failure retrying cannot fix: reports `failed` and
//!   dead-letters the message to `<queue>.dlq` with the reason in headers.
//!
//! The delivery is acknowledged only after those publishes were confirmed;
//! if one is not, the delivery is requeued, so nothing is lost (at least
//! once, with idempotent status updates). Poison messages (not a task) go
//! straight to the dead-letter queue. Deliveries settled together are
//! acknowledged together (an [`AckWindow`] per channel).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message,
    ResponseActFuture, StreamHandler, WrapFuture,
};
use futures_util::future::{select, Either};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
    types::AMQPValue,
    Acker, Channel,
};
use opentelemetry::{trace::Status, KeyValue};
use serde_json::Value;
use shared::{
    actor_spawn::PollWhenWoken as _,
    amqp::{
        header_u32, process_span, Backoff, Broker, Publish, PublishError, QueueConsumer,
        QueuePublisher, Subscription, TaskQueues,
    },
    metrics::{
        self, current_trace_exemplar, ReasonLabel, TaskOutcome, TaskOutcomeLabels, WorkerMetrics,
    },
    task::{
        DeadLetterKind, StatusUpdate, TaskIdText, TaskMessage, TaskStatus, TaskType, ATTEMPT_HEADER,
    },
    telemetry::int_attribute,
    TracedSend,
};
use tokio::sync::watch;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{
    ack_window::{Ack, AckQueue, AckWindow},
    ExecuteTask, ReportFailed, ReportStatus, StatusReporter, TaskExecutor, TaskFailure,
};

/// Pause before handing a delivery back after a failure of ours.
const REQUEUE_PAUSE: Duration = Duration::from_millis(500);

/// How often and how patiently a failing task is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// The wait before the second attempt, doubling for each further one
    /// (at most [`RetryPolicy::MAX_DELAY`]).
    pub delays: Backoff,
}

impl RetryPolicy {
    /// Longest delay between two attempts, however many there are.
    pub const MAX_DELAY: Duration = Duration::from_secs(3600);

    /// `max_attempts` attempts, the second `base_delay` after the first.
    pub fn new(max_attempts: u32, base_delay: Duration) -> Self {
        Self {
            max_attempts,
            delays: Backoff::new(base_delay, Self::MAX_DELAY),
        }
    }

    /// The wait before attempt `next_attempt` (2 or more).
    pub fn delay_before(&self, next_attempt: u32) -> Duration {
        self.delays.delay_for(next_attempt.saturating_sub(2))
    }
}

/// What every consumer actor needs to handle a task.
#[derive(Clone)]
pub struct TaskHandling {
    /// Runs tasks.
    pub executor: Addr<TaskExecutor>,
    /// Sends status reports to the results queue (batched).
    pub reporter: Addr<StatusReporter>,
    /// Publishes to the retry and dead-letter queues.
    pub requeuer: Addr<QueuePublisher>,
    /// The task queue and the queues around it.
    pub queues: TaskQueues,
    /// Task counters, durations and busy consumers.
    pub metrics: WorkerMetrics,
    /// Set (by start-up, not through the mailbox) when the worker is shutting
    /// down: from then on no consumer starts a new task.
    pub draining: Arc<AtomicBool>,
    /// How many consumer actors are subscribed right now (readiness).
    pub subscribed: Arc<AtomicUsize>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// `processing` is reported for a task still running after this long
    /// (zero: before it starts).
    pub processing_delay: Duration,
}

/// The consumer actor.
pub struct TaskConsumer {
    tag: String,
    broker: Broker,
    prefetch: u16,
    handling: TaskHandling,
    channel: Option<Channel>,
    stopping: bool,
    // Deliveries started and not yet acknowledged or handed back;
    // StopConsuming waits for zero.
    in_flight: watch::Sender<usize>,
    // The current channel's deliveries, acknowledged in groups.
    acks: AckWindow<Acker>,
    // Counts subscriptions: a delivery settled after its channel was
    // replaced is not one of the current window's.
    generation: u64,
    // A send of the window's settled deliveries is scheduled.
    acks_due: bool,
    // What is to be sent, strictly in order.
    unsent: AckQueue<Acker>,
}

impl TaskConsumer {
    /// Consumer number `index`.
    pub fn new(index: usize, broker: Broker, prefetch: u16, handling: TaskHandling) -> Self {
        Self {
            tag: format!("worker-{}-{index}", std::process::id()),
            broker,
            prefetch,
            handling,
            channel: None,
            stopping: false,
            in_flight: watch::Sender::new(0),
            acks: AckWindow::default(),
            generation: 0,
            acks_due: false,
            unsent: AckQueue::default(),
        }
    }

    /// Counts a delivery in or out; the busy gauge counts actors with work.
    fn track(&mut self, started: bool) {
        let metrics = &self.handling.metrics;
        self.in_flight.send_modify(|n| {
            if started {
                if *n == 0 {
                    metrics.consumers_busy.inc();
                }
                *n += 1;
            } else {
                *n -= 1;
                if *n == 0 {
                    metrics.consumers_busy.dec();
                }
            }
        });
    }

    /// A delivery of subscription `generation` is settled.
    fn settled(
        &mut self,
        generation: u64,
        tag: u64,
        settlement: Settlement,
        ctx: &mut Context<Self>,
    ) {
        match settlement {
            Settlement::HandedBack => {
                if generation == self.generation {
                    self.acks.handed_back(tag);
                }
                self.track(false);
            }
            Settlement::Acknowledge(acker) if generation != self.generation => {
                // Its channel was replaced: acknowledged on its own (a no-op
                // when that channel is closed and the broker took it back).
                let ack = Ack {
                    acker,
                    multiple: false,
                    deliveries: 1,
                };
                self.send_acks(vec![ack], ctx);
            }
            Settlement::Acknowledge(acker) => {
                self.acks.settled(tag, acker);
                if !self.acks_due {
                    // Sent once the deliveries settling in this same turn
                    // (a batch of reports confirmed at once) are in too.
                    self.acks_due = true;
                    ctx.spawn(actix::fut::wrap_future(tokio::task::yield_now()).map(
                        |(), act: &mut Self, ctx| {
                            act.acks_due = false;
                            let acks = act.acks.take();
                            act.send_acks(acks, ctx);
                        },
                    ));
                }
            }
        }
    }

    /// Queues `acks` to be sent after those queued before them.
    fn send_acks(&mut self, acks: Vec<Ack<Acker>>, ctx: &mut Context<Self>) {
        self.unsent.push(acks);
        self.send_unsent(ctx);
    }

    /// Sends what is queued, each acknowledgement once the one before it is
    /// on the wire; its deliveries leave `in_flight` once sent.
    fn send_unsent(&mut self, ctx: &mut Context<Self>) {
        let Some(acks) = self.unsent.next_batch() else {
            return;
        };
        let deliveries: usize = acks.iter().map(|ack| ack.deliveries).sum();
        let consumer = self.tag.clone();
        let sends = async move {
            for Ack {
                acker, multiple, ..
            } in acks
            {
                match acker.ack(BasicAckOptions { multiple }).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(%consumer, "channel closed before the ack; the broker will redeliver")
                    }
                    Err(err) => {
                        tracing::warn!(%consumer, error = %err, "ack failed; the broker will redeliver")
                    }
                }
            }
        };
        ctx.spawn(sends.into_actor(self).map(move |(), act, ctx| {
            act.unsent.sent();
            for _ in 0..deliveries {
                act.track(false);
            }
            act.send_unsent(ctx);
        }));
    }
}

impl Actor for TaskConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.resubscribe(ctx);
    }
}

impl QueueConsumer for TaskConsumer {
    fn subscription(&self) -> Subscription {
        Subscription {
            broker: self.broker.clone(),
            queue: self.handling.queues.tasks(),
            prefetch: self.prefetch,
            tag: self.tag.clone(),
            // Declared up front, before a delivery can need it, so that
            // operators see (and can alert on) it.
            also_declare: vec![self.handling.queues.dead_letters()],
        }
    }

    fn subscribed(&mut self, channel: Channel, _: &mut Context<Self>) {
        tracing::info!(consumer = %self.tag, prefetch = self.prefetch, "consuming tasks");
        self.channel = Some(channel);
        self.handling.subscribed.fetch_add(1, Ordering::AcqRel);
    }
}

impl StreamHandler<lapin::Result<Delivery>> for TaskConsumer {
    fn handle(&mut self, item: lapin::Result<Delivery>, ctx: &mut Self::Context) {
        let delivery = match item {
            Ok(delivery) => delivery,
            Err(err) => {
                tracing::debug!(consumer = %self.tag, error = %err, "task stream error");
                return;
            }
        };
        let tag = delivery.delivery_tag;
        self.acks.delivered(tag);
        if self.stopping || self.handling.draining.load(Ordering::Acquire) {
            // Left unacknowledged (and out of every `multiple` ack): closing
            // the channel hands it back to the broker.
            tracing::debug!(consumer = %self.tag, "shutting down; not starting a new task");
            return;
        }
        let span = process_span(&delivery, &self.handling.queues.tasks().name);
        // Polled only when woken: the context polls every task in flight
        // whenever one of them is woken, and each poll enters the span.
        let work = process(delivery, self.handling.clone())
            .instrument(span)
            .polled_when_woken();
        let generation = self.generation;
        self.track(true);
        ctx.spawn(
            work.into_actor(self)
                .map(move |settlement, act, ctx| act.settled(generation, tag, settlement, ctx)),
        );
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // Every subscription's stream ends exactly once.
        self.handling.subscribed.fetch_sub(1, Ordering::AcqRel);
        self.channel = None;
        // Tags are per channel: what settles from now on is acknowledged
        // on its own, and what was ready is sent (a no-op on a closed
        // channel) so that it leaves `in_flight`.
        self.generation += 1;
        let ready = std::mem::take(&mut self.acks).take();
        self.send_acks(ready, ctx);
        if self.stopping || self.handling.draining.load(Ordering::Acquire) {
            ctx.stop();
        } else {
            // The Broker logs the connection loss once; this is per actor.
            tracing::debug!(consumer = %self.tag, "task subscription ended; resubscribing");
            self.resubscribe(ctx);
        }
    }
}

/// Stop taking tasks: answered once the tasks in hand are settled (their
/// acknowledgements need the channel), then the channel is closed (which
/// hands prefetched, unstarted deliveries back) and the actor stops.
pub struct StopConsuming;

impl Message for StopConsuming {
    type Result = ();
}

impl Handler<StopConsuming> for TaskConsumer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopConsuming, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let mut in_flight = self.in_flight.subscribe();
        Box::pin(
            async move {
                let _ = in_flight.wait_for(|n| *n == 0).await;
            }
            .into_actor(self)
            .then(|(), act, _| {
                let channel = act.channel.take();
                let tag = act.tag.clone();
                async move {
                    if let Some(channel) = channel {
                        if let Err(err) = channel.close(200, "worker shutting down".into()).await {
                            tracing::debug!(consumer = %tag, error = %err, "closing channel");
                        }
                    }
                }
                .into_actor(act)
            })
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// How a delivery ended.
enum Settlement {
    /// Settled: acknowledge it (with the deliveries settled alongside).
    Acknowledge(Acker),
    /// Nacked back to the queue (or its channel is gone).
    HandedBack,
}

/// Why a delivery goes back to the queue instead of being acknowledged.
#[derive(Debug, thiserror::Error)]
enum Unsettled {
    #[error(transparent)]
    NotReported(#[from] ReportFailed),
    #[error("a message was not confirmed by the broker: {0}")]
    NotConfirmed(#[from] PublishError),
    #[error("an actor is unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
}

async fn process(delivery: Delivery, handling: TaskHandling) -> Settlement {
    let consumer_span = tracing::Span::current();
    let attempt = header_u32(delivery.properties.headers().as_ref(), ATTEMPT_HEADER)
        .unwrap_or(1)
        .max(1);
    let settled = match TaskMessage::decode(&delivery.data) {
        Ok(task) => {
            consumer_span.set_attribute("task.id", task.id.to_string());
            let span = tracing::info_span!(
                "process-task",
                task.id = TaskIdText::new(task.id).as_str(),
                task.type = task.kind.as_str(),
                task.attempt = int_attribute(attempt),
            );
            async {
                let (id, task_type) = (task.id, task.kind);
                let outcome = run(task, attempt, &handling).await?;
                settle(&delivery, id, task_type, attempt, outcome, &handling).await
            }
            .instrument(span)
            .await
        }
        Err(reason) => {
            consumer_span.set_status(Status::error(format!("poison message: {reason}")));
            consumer_span.set_attribute("error.type", "poison_message");
            tracing::error!(%reason, "poison message; moving it to the dead-letter queue");
            dead_letter(
                &delivery,
                &handling,
                DeadLetterKind::Poison,
                &reason,
                attempt,
            )
            .await
        }
    };
    match settled {
        Ok(()) => Settlement::Acknowledge(delivery.acker),
        Err(err) => {
            consumer_span.set_status(Status::error(err.to_string()));
            tracing::warn!(error = %err, "requeueing the task");
            // A short pause: requeueing at once would spin on the same failure.
            actix::clock::sleep(REQUEUE_PAUSE).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(err) = delivery.acker.nack(requeue).await {
                tracing::debug!(error = %err, "nack failed; the broker will redeliver");
            }
            Settlement::HandedBack
        }
    }
}

/// Runs the attempt, reporting `processing` if it is still running after
/// the delay (a task that finishes sooner was never visibly processing, and
/// saves the broker two messages); times and counts it.
async fn run(
    task: TaskMessage,
    attempt: u32,
    handling: &TaskHandling,
) -> Result<Result<Value, TaskFailure>, Unsettled> {
    let (id, task_type) = (task.id, task.kind);
    let processing = StatusUpdate {
        id,
        status: TaskStatus::Processing,
        attempt,
        result: None,
        error: None,
    };
    let started = std::time::Instant::now();
    let execution = handling.executor.send_traced(ExecuteTask { task, attempt });
    let outcome = if handling.processing_delay.is_zero() {
        handling
            .reporter
            .send_traced(ReportStatus(processing))
            .await??;
        execution.await?
    } else {
        let delay = actix::clock::sleep(handling.processing_delay);
        match select(Box::pin(execution), Box::pin(delay)).await {
            Either::Left((outcome, _)) => outcome?,
            Either::Right(((), execution)) => {
                // Not awaited before the outcome: the outcome's report is
                // what the acknowledgement waits for, and the backend
                // ignores a `processing` that arrives after it.
                let report = handling.reporter.send_traced(ReportStatus(processing));
                let (reported, outcome) = futures_util::future::join(report, execution).await;
                match reported {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::debug!(task.id = %id, error = %err, "processing report lost")
                    }
                    Err(err) => {
                        tracing::debug!(task.id = %id, error = %err, "processing report lost")
                    }
                }
                outcome?
            }
        }
    };
    metrics::count(&handling.metrics.processed, task_type);
    let label = if outcome.is_ok() {
        TaskOutcome::Succeeded
    } else {
        TaskOutcome::Failed
    };
    handling
        .metrics
        .duration
        .get_or_create(&TaskOutcomeLabels::new(task_type, label))
        .observe(
            started.elapsed().as_secs_f64(),
            current_trace_exemplar(),
            None,
        );
    Ok(outcome)
}

/// Reports the outcome, and for a failure schedules the retry or
/// dead-letters the task. `Ok` means the delivery can be acknowledged:
/// everything that had to be published was confirmed.
async fn settle(
    delivery: &Delivery,
    id: uuid::Uuid,
    task_type: TaskType,
    attempt: u32,
    outcome: Result<Value, TaskFailure>,
    handling: &TaskHandling,
) -> Result<(), Unsettled> {
    let span = tracing::Span::current();
    let report = |status, result, error| {
        ReportStatus(StatusUpdate {
            id,
            status,
            attempt,
            result,
            error,
        })
    };
    let failure = match outcome {
        Ok(result) => {
            handling
                .reporter
                .send_traced(report(TaskStatus::Succeeded, Some(result), None))
                .await??;
            tracing::debug!(task.id = %id, attempt, "task succeeded");
            return Ok(());
        }
        Err(failure) => failure,
    };

    span.set_status(Status::error(failure.to_string()));
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", failure.kind()),
            KeyValue::new("exception.message", failure.to_string()),
        ],
    );
    metrics::count(&handling.metrics.failed, task_type);
    let error = Some(failure.to_string());
    if failure.is_retryable() && attempt < handling.retry.max_attempts {
        let next = attempt + 1;
        let delay = handling.retry.delay_before(next);
        span.add_event(
            "retry-attempt",
            vec![
                KeyValue::new("attempt", i64::from(next)),
                KeyValue::new("delay_ms", delay.as_millis() as i64),
            ],
        );
        tracing::warn!(task.id = %id, attempt, error = %failure, ?delay, "attempt failed; retrying");
        handling
            .reporter
            .send_traced(report(TaskStatus::Queued, None, error))
            .await??;
        handling
            .requeuer
            .send_traced(
                Publish::new(id.to_string(), delivery.data.clone())
                    .to(handling.queues.retry(next))
                    .header(ATTEMPT_HEADER, AMQPValue::LongUInt(next))
                    .expiring_after(delay.as_millis() as u64),
            )
            .await??;
        metrics::count(&handling.metrics.retried, task_type);
        Ok(())
    } else {
        tracing::error!(task.id = %id, attempt, error = %failure, "task failed for good; dead-lettering it");
        handling
            .reporter
            .send_traced(report(TaskStatus::Failed, None, error))
            .await??;
        let kind = match failure {
            TaskFailure::Invalid(_) => DeadLetterKind::InvalidPayload,
            _ => DeadLetterKind::MaxAttempts,
        };
        dead_letter(delivery, handling, kind, &failure.to_string(), attempt).await
    }
}

/// Copies the delivery to `<queue>.dlq` with why it is there.
async fn dead_letter(
    delivery: &Delivery,
    handling: &TaskHandling,
    kind: DeadLetterKind,
    reason: &str,
    attempts: u32,
) -> Result<(), Unsettled> {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_else(|| format!("dead-letter-{}", uuid::Uuid::new_v4()));
    let message = Publish::new(message_id, delivery.data.clone())
        .to(handling.queues.dead_letters())
        .header(
            "x-failure-kind",
            AMQPValue::LongString(kind.as_str().into()),
        )
        .header("x-failure-reason", AMQPValue::LongString(reason.into()))
        .header("x-attempts", AMQPValue::LongUInt(attempts))
        .header(
            "x-original-queue",
            AMQPValue::LongString(handling.queues.tasks().name.into()),
        );
    handling.requeuer.send_traced(message).await??;
    handling
        .metrics
        .dead_lettered
        .get_or_create(&ReasonLabel::from(kind))
        .inc();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_per_attempt_and_are_capped() {
        let policy = RetryPolicy::new(30, Duration::from_millis(1000));
        assert_eq!(policy.delay_before(2), Duration::from_millis(1000));
        assert_eq!(policy.delay_before(3), Duration::from_millis(2000));
        assert_eq!(policy.delay_before(4), Duration::from_millis(4000));
        assert_eq!(policy.delay_before(30), RetryPolicy::MAX_DELAY);
    }
}
