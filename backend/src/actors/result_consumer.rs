//! Consumes the worker's status reports and applies them to the task store.
//!
//! A message carries one report or a batch of them (the worker batches).
//! Each message is a CONSUMER span `process <result queue>`, a child of the
//! worker's PRODUCER span (its context travels in the headers); each report
//! in it carries the context of the worker's `report-status` span, so its
//! `apply-status-update` continues the task's own trace (and links to the
//! CONSUMER span that received it).
//!
//! Messages are applied in batches: whatever arrived while the previous
//! batch was being written goes into the next transaction. A message is
//! acknowledged only once its batch is committed; if the database cannot
//! take it, the batch goes back to the queue (after a pause that grows while
//! the outage lasts), so RabbitMQ redelivers it and every task still reaches
//! its true final status.

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, ResponseActFuture, StreamHandler,
    WrapFuture,
};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
};
use opentelemetry::trace::Status;
use opentelemetry::trace::TraceContextExt;
use shared::{
    amqp::{process_span, Backoff, Broker, QueueConsumer, QueueSpec, Subscription},
    task::StatusReport,
    Traced,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{ApplyStatusUpdates, ReceivedReport, TaskStore};

/// Reports in flight: the largest batch one transaction applies.
const PREFETCH: u16 = 256;

/// One delivery waiting to be applied, with its CONSUMER span (open until the
/// delivery is settled).
struct Report {
    delivery: Delivery,
    span: Span,
    // Empty for a malformed message (acknowledged with its batch).
    reports: Vec<StatusReport>,
    // Which subscription it came from: delivery tags restart with each channel.
    subscription: u64,
}

/// The actor consuming the results queue.
pub struct ResultConsumer {
    broker: Broker,
    queue: QueueSpec,
    store: Addr<TaskStore>,
    pending: Vec<Report>,
    applying: bool,
    subscription: u64,
    backoff: Backoff,
}

impl ResultConsumer {
    /// A consumer of `queue` feeding `store`.
    pub fn new(broker: Broker, queue: QueueSpec, store: Addr<TaskStore>) -> Self {
        Self {
            broker,
            queue,
            store,
            pending: Vec::new(),
            applying: false,
            subscription: 0,
            backoff: Backoff::default(),
        }
    }

    /// Starts applying what is pending, unless a batch is being applied.
    fn apply_pending(&mut self, ctx: &mut Context<Self>) {
        if self.applying || self.pending.is_empty() {
            return;
        }
        self.applying = true;
        let batch = std::mem::take(&mut self.pending);
        let updates: Vec<ReceivedReport> = batch
            .iter()
            .flat_map(|message| {
                let received = message.span.context();
                message.reports.iter().map(move |report| {
                    // A report without a context of its own stays under the message.
                    let own = report.context();
                    let parent = if own.span().span_context().is_valid() {
                        own
                    } else {
                        received.clone()
                    };
                    ReceivedReport {
                        report: Traced::with_context(report.update.clone(), parent),
                        received_by: received.span().span_context().clone(),
                    }
                })
            })
            .collect();
        let store = self.store.clone();
        let applied = async move {
            if updates.is_empty() {
                return Ok(());
            }
            match store.send(ApplyStatusUpdates(updates)).await {
                Ok(Ok(_outcomes)) => Ok(()),
                Ok(Err(err)) => Err(err.to_string()),
                Err(mailbox) => Err(format!("task store unavailable: {mailbox}")),
            }
        };
        ctx.spawn(
            applied
                .into_actor(self)
                .then(|result, act, _| act.settle(batch, result))
                .map(|(), act, ctx| {
                    act.applying = false;
                    act.apply_pending(ctx);
                }),
        );
    }

    /// Acknowledges an applied batch, or hands it back to the broker.
    fn settle(
        &mut self,
        batch: Vec<Report>,
        result: Result<(), String>,
    ) -> ResponseActFuture<Self, ()> {
        let pause = match &result {
            Ok(()) => {
                self.backoff.reset();
                None
            }
            Err(_) => Some(self.backoff.next_delay()),
        };
        Box::pin(
            async move {
                match result {
                    Ok(()) => acknowledge(&batch).await,
                    Err(err) => {
                        for report in &batch {
                            report.span.set_status(Status::error(err.clone()));
                        }
                        // The database logs its outage once; this is per batch.
                        tracing::debug!(error = %err, reports = batch.len(), ?pause, "status reports not stored; handing them back");
                        if let Some(pause) = pause {
                            actix::clock::sleep(pause).await;
                        }
                        requeue(&batch).await;
                    }
                }
                // Dropping the batch ends its CONSUMER spans.
            }
            .into_actor(self),
        )
    }
}

/// Acks each subscription's part of `batch` with one `multiple` ack: every
/// earlier delivery of that channel is settled already (batches go in order).
async fn acknowledge(batch: &[Report]) {
    for last in last_of_each_subscription(batch) {
        let multiple = BasicAckOptions { multiple: true };
        if let Err(err) = last.delivery.acker.ack(multiple).await {
            tracing::warn!(error = %err, "ack failed; the reports will be redelivered");
        }
    }
}

async fn requeue(batch: &[Report]) {
    for last in last_of_each_subscription(batch) {
        let requeue = BasicNackOptions {
            multiple: true,
            requeue: true,
        };
        if let Err(err) = last.delivery.acker.nack(requeue).await {
            tracing::debug!(error = %err, "nack failed; the broker redelivers anyway");
        }
    }
}

fn last_of_each_subscription(batch: &[Report]) -> impl Iterator<Item = &Report> {
    last_of_each_run(batch, |report| report.subscription)
}

/// The last item of each run of equal keys.
fn last_of_each_run<T>(items: &[T], key: impl Fn(&T) -> u64) -> impl Iterator<Item = &T> {
    items
        .iter()
        .enumerate()
        .filter(move |(i, item)| items.get(i + 1).is_none_or(|next| key(next) != key(item)))
        .map(|(_, item)| item)
}

impl Actor for ResultConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.resubscribe(ctx);
    }
}

impl QueueConsumer for ResultConsumer {
    fn subscription(&self) -> Subscription {
        Subscription {
            broker: self.broker.clone(),
            queue: self.queue.clone(),
            prefetch: PREFETCH,
            tag: "backend-results".to_string(),
            also_declare: Vec::new(),
        }
    }

    fn subscribed(&mut self, _channel: lapin::Channel, _: &mut Context<Self>) {
        tracing::info!(queue = %self.queue.name, "consuming status reports");
        self.subscription += 1;
    }
}

impl StreamHandler<lapin::Result<Delivery>> for ResultConsumer {
    fn handle(&mut self, item: lapin::Result<Delivery>, ctx: &mut Self::Context) {
        let delivery = match item {
            Ok(delivery) => delivery,
            Err(err) => {
                tracing::debug!(error = %err, "status report stream error");
                return;
            }
        };
        let span = process_span(&delivery, &self.queue.name);
        let reports = match StatusReport::decode_batch(&delivery.data) {
            Ok(reports) => {
                span.set_attribute("task.reports", reports.len() as i64);
                if let [report] = reports.as_slice() {
                    span.set_attribute("task.id", report.update.id.to_string());
                    span.set_attribute("task.status", report.update.status.as_str());
                }
                reports
            }
            Err(err) => {
                span.set_status(Status::error(format!("malformed status report: {err}")));
                // Acknowledged with its batch: requeueing a message that can
                // never parse would loop forever.
                tracing::error!(parent: &span, error = %err, "discarding a malformed status report");
                Vec::new()
            }
        };
        self.pending.push(Report {
            delivery,
            span,
            reports,
            subscription: self.subscription,
        });
        self.apply_pending(ctx);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The Broker logs the connection loss once.
        tracing::debug!(queue = %self.queue.name, "status report subscription ended; resubscribing");
        self.resubscribe(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::last_of_each_run;

    #[test]
    fn the_last_report_of_each_subscription_carries_the_multiple_ack() {
        let subscriptions = [1u64, 1, 1, 2, 2, 3];
        let last: Vec<u64> = last_of_each_run(&subscriptions, |s| *s).copied().collect();
        assert_eq!(last, [1, 2, 3]);
        let positions: Vec<usize> = last_of_each_run(&[(0, 7u64), (1, 7), (2, 8)], |p| p.1)
            .map(|p| p.0)
            .collect();
        assert_eq!(positions, [1, 2]);
    }
}
