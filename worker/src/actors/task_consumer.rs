//! One consumer of the task queue, with its own channel and prefetch.
//!
//! For each delivery: a CONSUMER span `process <queue>` continuing the
//! producer's trace; inside it `process-task`, which reports `processing`,
//! asks the [`TaskExecutor`] to run the task, reports the outcome, and only
//! then acknowledges the message. A report the broker does not confirm leaves
//! the message unacknowledged (requeued), so nothing is lost.

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message,
    ResponseActFuture, StreamHandler, WrapFuture,
};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
    Channel,
};
use opentelemetry::trace::Status;
use shared::{
    amqp::{process_span, subscribe_with_retry, Broker, Publish, PublishError, QueuePublisher},
    task::{StatusUpdate, TaskMessage, TaskStatus},
    TracedSend,
};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{ExecuteTask, TaskExecutor};

/// The consumer actor.
pub struct TaskConsumer {
    tag: String,
    broker: Broker,
    queue: String,
    prefetch: u16,
    executor: Addr<TaskExecutor>,
    reporter: Addr<QueuePublisher>,
    channel: Option<Channel>,
    stopping: bool,
}

impl TaskConsumer {
    /// Consumer number `index` of `queue`, running tasks on `executor` and
    /// reporting through `reporter`.
    pub fn new(
        index: usize,
        broker: Broker,
        queue: String,
        prefetch: u16,
        executor: Addr<TaskExecutor>,
        reporter: Addr<QueuePublisher>,
    ) -> Self {
        Self {
            tag: format!("worker-{}-{index}", std::process::id()),
            broker,
            queue,
            prefetch,
            executor,
            reporter,
            channel: None,
            stopping: false,
        }
    }

    fn subscribe(&self, ctx: &mut Context<Self>) {
        let broker = self.broker.clone();
        let queue = self.queue.clone();
        let (prefetch, tag) = (self.prefetch, self.tag.clone());
        ctx.wait(
            async move { subscribe_with_retry(&broker, &queue, prefetch, &tag).await }
                .into_actor(self)
                .map(|(channel, consumer), act, ctx| {
                    tracing::info!(consumer = %act.tag, queue = %act.queue, "consuming tasks");
                    act.channel = Some(channel);
                    ctx.add_stream(consumer);
                }),
        );
    }
}

impl Actor for TaskConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.subscribe(ctx);
    }
}

impl StreamHandler<lapin::Result<Delivery>> for TaskConsumer {
    fn handle(&mut self, item: lapin::Result<Delivery>, ctx: &mut Self::Context) {
        let delivery = match item {
            Ok(delivery) => delivery,
            Err(err) => {
                tracing::warn!(consumer = %self.tag, error = %err, "task stream error");
                return;
            }
        };
        let span = process_span(&delivery, &self.queue);
        let work = process(delivery, self.executor.clone(), self.reporter.clone());
        // `wait`: this actor takes its next message (or StopConsuming) only
        // after the current task is acknowledged.
        ctx.wait(work.instrument(span).into_actor(self));
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.channel = None;
        if self.stopping {
            ctx.stop();
        } else {
            tracing::warn!(consumer = %self.tag, "task subscription ended; resubscribing");
            self.subscribe(ctx);
        }
    }
}

/// Stop taking tasks: answered once the task in hand (if any) is finished and
/// acknowledged, then the channel is closed and the actor stops.
pub struct StopConsuming;

impl Message for StopConsuming {
    type Result = ();
}

impl Handler<StopConsuming> for TaskConsumer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopConsuming, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let channel = self.channel.take();
        let tag = self.tag.clone();
        Box::pin(
            async move {
                if let Some(channel) = channel {
                    // Closing the channel requeues anything prefetched but unstarted.
                    if let Err(err) = channel.close(200, "worker shutting down".into()).await {
                        tracing::debug!(consumer = %tag, error = %err, "closing channel");
                    }
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

async fn process(delivery: Delivery, executor: Addr<TaskExecutor>, reporter: Addr<QueuePublisher>) {
    let consumer_span = tracing::Span::current();
    let task: TaskMessage = match serde_json::from_slice(&delivery.data) {
        Ok(task) => task,
        Err(err) => {
            consumer_span.set_status(Status::error(format!("not a task message: {err}")));
            tracing::error!(error = %err, "discarding a message that is not a task");
            ack(&delivery).await;
            return;
        }
    };
    consumer_span.set_attribute("task.id", task.id.to_string());
    let attempt = 1;
    let span = tracing::info_span!(
        "process-task",
        task.id = %task.id,
        task.type = %task.kind,
        task.attempt = attempt,
    );
    async move {
        let span = tracing::Span::current();
        let id = task.id;
        if let Err(err) = report(&reporter, StatusUpdate {
            id,
            status: TaskStatus::Processing,
            attempt,
            result: None,
            error: None,
        })
        .await
        {
            span.set_status(Status::error(err.to_string()));
            tracing::warn!(task.id = %id, error = %err, "cannot report progress; requeueing the task");
            requeue(&delivery).await;
            return;
        }

        let update = match executor.send_traced(ExecuteTask(task)).await {
            Ok(Ok(result)) => StatusUpdate {
                id,
                status: TaskStatus::Succeeded,
                attempt,
                result: Some(result),
                error: None,
            },
            Ok(Err(failure)) => {
                span.set_status(Status::error(failure.to_string()));
                tracing::warn!(task.id = %id, error = %failure, "task failed");
                StatusUpdate {
                    id,
                    status: TaskStatus::Failed,
                    attempt,
                    result: None,
                    error: Some(failure.to_string()),
                }
            }
            Err(err) => {
                tracing::error!(task.id = %id, error = %err, "executor unavailable; requeueing");
                requeue(&delivery).await;
                return;
            }
        };
        let status = update.status;
        match report(&reporter, update).await {
            Ok(()) => {
                ack(&delivery).await;
                tracing::info!(task.id = %id, status = status.as_str(), "task done");
            }
            Err(err) => {
                span.set_status(Status::error(err.to_string()));
                tracing::warn!(task.id = %id, error = %err, "result not confirmed; requeueing the task");
                requeue(&delivery).await;
            }
        }
    }
    .instrument(span)
    .await
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error(transparent)]
    NotConfirmed(#[from] PublishError),
    #[error("reporter unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
    #[error("encoding the report: {0}")]
    Encode(#[from] serde_json::Error),
}

async fn report(reporter: &Addr<QueuePublisher>, update: StatusUpdate) -> Result<(), ReportError> {
    let payload = serde_json::to_vec(&update)?;
    reporter
        .send_traced(Publish {
            message_id: format!(
                "{}-{}-{}",
                update.id,
                update.attempt,
                update.status.as_str()
            ),
            payload,
        })
        .await??;
    Ok(())
}

async fn ack(delivery: &Delivery) {
    if let Err(err) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %err, "ack failed; the broker will redeliver");
    }
}

async fn requeue(delivery: &Delivery) {
    let options = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Err(err) = delivery.acker.nack(options).await {
        tracing::warn!(error = %err, "nack failed; the broker will redeliver");
    }
}
