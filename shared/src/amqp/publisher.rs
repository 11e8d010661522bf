//! Publishing with broker confirms, one PRODUCER span per message.

use std::time::Duration;

use actix::{Actor, ActorFutureExt, Context, Handler, Message, ResponseActFuture, WrapFuture};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::FieldTable,
    BasicProperties, Channel,
};
use opentelemetry::trace::Status;
use tracing::{field::Empty, Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{propagation::inject_context, Broker, BrokerError, MESSAGING_SYSTEM};
use crate::traced::Traced;

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// Why a message was not confirmed by the broker.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection or channel to publish on.
    #[error(transparent)]
    Unavailable(#[from] BrokerError),
    /// The channel failed while publishing.
    #[error("publishing failed: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker answered the publish with a nack.
    #[error("the broker refused the message (nack)")]
    Nacked,
    /// No confirm arrived in time.
    #[error("no publisher confirm within {0:?}")]
    Timeout(Duration),
}

/// Declares `queue` as a durable queue (idempotent; every service that uses
/// the queue declares it the same way so that whichever starts first wins
/// nothing).
pub async fn declare_durable_queue(channel: &Channel, queue: &str) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map(|_| ())
}

/// Send one message to the publisher's queue; the reply comes once the broker
/// has confirmed it (or with the reason it was not).
#[derive(Debug, Clone)]
pub struct Publish {
    /// Becomes the AMQP `message_id` and `messaging.message.id`.
    pub message_id: String,
    /// The message body (JSON).
    pub payload: Vec<u8>,
}

impl Message for Publish {
    type Result = Result<(), PublishError>;
}

/// Owns a confirm-mode channel to one durable queue on the default exchange.
///
/// Handles [`Traced<Publish>`]: the handler's span is the PRODUCER span
/// `send <queue>`, a child of the sender's context, and its context is what
/// travels in the message headers.
pub struct QueuePublisher {
    broker: Broker,
    queue: String,
    timeout: Duration,
    channel: Option<Channel>,
}

impl QueuePublisher {
    /// A publisher to `queue`; a publish that is not confirmed within
    /// `timeout` (connecting included) fails.
    pub fn new(broker: Broker, queue: impl Into<String>, timeout: Duration) -> Self {
        Self {
            broker,
            queue: queue.into(),
            timeout,
            channel: None,
        }
    }
}

impl Actor for QueuePublisher {
    type Context = Context<Self>;
}

impl Handler<Traced<Publish>> for QueuePublisher {
    type Result = ResponseActFuture<Self, Result<(), PublishError>>;

    fn handle(&mut self, msg: Traced<Publish>, _: &mut Self::Context) -> Self::Result {
        let queue = self.queue.clone();
        let span = producer_span(
            &queue,
            &msg.message().message_id,
            msg.message().payload.len(),
        );
        let (msg, span) = msg.into_parts(span);
        let cached = self
            .channel
            .clone()
            .filter(|channel| channel.status().connected());
        let broker = self.broker.clone();
        let timeout = self.timeout;

        let publish = async move {
            let channel = match cached {
                Some(channel) => channel,
                None => open_channel(&broker, &queue).await?,
            };
            publish_confirmed(&channel, &queue, &msg).await?;
            Ok::<_, PublishError>(channel)
        };
        let span_for_result = span.clone();
        let publish = async move {
            match tokio::time::timeout(timeout, publish).await {
                Ok(result) => result,
                Err(_) => Err(PublishError::Timeout(timeout)),
            }
        }
        .instrument(span);

        Box::pin(
            publish
                .into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(channel) => {
                        act.channel = Some(channel);
                        Ok(())
                    }
                    Err(err) => {
                        act.channel = None;
                        span_for_result.record("error.type", error_type(&err));
                        span_for_result.set_status(Status::error(err.to_string()));
                        Err(err)
                    }
                }),
        )
    }
}

async fn open_channel(broker: &Broker, queue: &str) -> Result<Channel, PublishError> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    declare_durable_queue(&channel, queue).await?;
    Ok(channel)
}

async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    msg: &Publish,
) -> Result<(), PublishError> {
    let mut headers = FieldTable::default();
    inject_context(&Span::current().context(), &mut headers);
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_message_id(msg.message_id.as_str().into())
        .with_headers(headers);
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &msg.payload,
            properties,
        )
        .await?
        .await?;
    if confirm.is_ack() {
        Ok(())
    } else {
        Err(PublishError::Nacked)
    }
}

fn producer_span(queue: &str, message_id: &str, body_size: usize) -> Span {
    tracing::info_span!(
        "send",
        otel.name = %format!("send {queue}"),
        otel.kind = "producer",
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = %queue,
        messaging.rabbitmq.destination.routing_key = %queue,
        messaging.message.id = %message_id,
        messaging.message.body.size = body_size as i64,
        error.type = Empty,
    )
}

fn error_type(err: &PublishError) -> &'static str {
    match err {
        PublishError::Unavailable(_) => "broker_unavailable",
        PublishError::Amqp(_) => "amqp_error",
        PublishError::Nacked => "nack",
        PublishError::Timeout(_) => "timeout",
    }
}
