//! Consumes the worker's status reports and applies them to the task store.
//! Each report is a CONSUMER span `process <result queue>` in the task's own
//! trace (the worker's context travels in the headers).

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, StreamHandler, WrapFuture};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
};
use opentelemetry::trace::Status;
use shared::{
    amqp::{process_span, subscribe_with_retry, Broker, QueueSpec},
    task::StatusUpdate,
    TracedSend,
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{ApplyStatusUpdate, TaskStore};

/// Reports are small and applying one is cheap: a few in flight keep the
/// round trips off the critical path.
const PREFETCH: u16 = 32;

/// The actor consuming the results queue.
pub struct ResultConsumer {
    broker: Broker,
    queue: QueueSpec,
    store: Addr<TaskStore>,
}

impl ResultConsumer {
    /// A consumer of `queue` feeding `store`.
    pub fn new(broker: Broker, queue: QueueSpec, store: Addr<TaskStore>) -> Self {
        Self {
            broker,
            queue,
            store,
        }
    }

    fn subscribe(&self, ctx: &mut Context<Self>) {
        let broker = self.broker.clone();
        let queue = self.queue.clone();
        ctx.wait(
            async move { subscribe_with_retry(&broker, &queue, PREFETCH, "backend-results").await }
                .into_actor(self)
                .map(|(_channel, consumer), act, ctx| {
                    tracing::info!(queue = %act.queue.name, "consuming status reports");
                    ctx.add_stream(consumer);
                }),
        );
    }
}

impl Actor for ResultConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.subscribe(ctx);
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
        let store = self.store.clone();
        // In order, one at a time: reports of one task must not overtake each other.
        ctx.wait(apply(delivery, store).instrument(span).into_actor(self));
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The Broker logs the connection loss once.
        tracing::debug!(queue = %self.queue.name, "status report subscription ended; resubscribing");
        self.subscribe(ctx);
    }
}

async fn apply(delivery: Delivery, store: Addr<TaskStore>) {
    let span = tracing::Span::current();
    let update: StatusUpdate = match serde_json::from_slice(&delivery.data) {
        Ok(update) => update,
        Err(err) => {
            span.set_status(Status::error(format!("malformed status report: {err}")));
            tracing::error!(error = %err, "discarding a malformed status report");
            // Requeueing a message that can never parse would loop forever.
            if let Err(err) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::warn!(error = %err, "ack failed");
            }
            return;
        }
    };
    span.set_attribute("task.id", update.id.to_string());
    span.set_attribute("task.status", update.status.as_str());
    match store.send_traced(ApplyStatusUpdate(update)).await {
        Ok(_) => {
            if let Err(err) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::warn!(error = %err, "ack failed; the report will be redelivered");
            }
        }
        Err(err) => {
            tracing::error!(error = %err, "task store unavailable; requeueing the report");
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(err) = delivery.acker.nack(requeue).await {
                tracing::warn!(error = %err, "nack failed");
            }
        }
    }
}
