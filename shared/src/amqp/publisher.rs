//! Publishing with broker confirms, one PRODUCER span per message.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Channel,
};
use opentelemetry::trace::{SpanContext, Status};
use tokio::sync::Mutex;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{propagation::inject_context, spans::producer_span, Broker, BrokerError, QueueSpec};
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
    /// The broker returned the message: no queue is bound to its routing key
    /// (the queue was deleted behind our back).
    #[error("the broker could not route the message to queue {0}")]
    Unroutable(String),
}

/// Send one persistent message; the reply comes once the broker has
/// confirmed it (or with the reason it was not).
#[derive(Debug, Clone)]
pub struct Publish {
    /// Becomes the AMQP `message_id` and `messaging.message.id`.
    pub message_id: String,
    /// The message body (JSON).
    pub payload: Vec<u8>,
    /// Destination; `None` for the publisher's own queue.
    pub queue: Option<QueueSpec>,
    /// Extra headers (the trace context is added to them).
    pub headers: FieldTable,
    /// Per-message TTL in milliseconds.
    pub expiration_ms: Option<u64>,
    /// Other spans the message serves (a batch of reports: the PRODUCER span
    /// is a child of the first report's span and linked to the others).
    pub links: Vec<SpanContext>,
}

impl Publish {
    /// A message for the publisher's own queue.
    pub fn new(message_id: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            message_id: message_id.into(),
            payload,
            queue: None,
            headers: FieldTable::default(),
            expiration_ms: None,
            links: Vec::new(),
        }
    }

    /// Links the PRODUCER span to `spans`.
    pub fn linked_to(mut self, spans: Vec<SpanContext>) -> Self {
        self.links = spans;
        self
    }

    /// Sends it to `queue` instead (declared first if needed).
    pub fn to(mut self, queue: QueueSpec) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: &str, value: AMQPValue) -> Self {
        self.headers.insert(ShortString::from(key), value);
        self
    }

    /// Lets the message expire after `ms` milliseconds.
    pub fn expiring_after(mut self, ms: u64) -> Self {
        self.expiration_ms = Some(ms);
        self
    }
}

impl Message for Publish {
    type Result = Result<(), PublishError>;
}

/// Owns a confirm-mode channel and publishes on the default exchange, to its
/// own durable queue unless a message names another.
///
/// Handles [`Traced<Publish>`]: the handler's span is the PRODUCER span
/// `send <queue>`, a child of the sender's context, and its context is what
/// travels in the message headers.
pub struct QueuePublisher {
    broker: Broker,
    queue: QueueSpec,
    timeout: Duration,
    // Shared by the publishes in flight: opening the channel and declaring
    // queues happen once, under the lock; publishing itself runs concurrently.
    link: Arc<Mutex<Option<PublishChannel>>>,
}

struct PublishChannel {
    // Channel ids restart with each connection; this tells channels apart.
    generation: u64,
    channel: Channel,
    declared: HashSet<String>,
}

impl QueuePublisher {
    /// A publisher to `queue`; a publish that is not confirmed within
    /// `timeout` (connecting included) fails.
    pub fn new(broker: Broker, queue: QueueSpec, timeout: Duration) -> Self {
        Self {
            broker,
            queue,
            timeout,
            link: Arc::default(),
        }
    }
}

impl Actor for QueuePublisher {
    type Context = Context<Self>;
}

impl Handler<Traced<Publish>> for QueuePublisher {
    type Result = ResponseFuture<Result<(), PublishError>>;

    fn handle(&mut self, msg: Traced<Publish>, _: &mut Self::Context) -> Self::Result {
        let queue = msg
            .message()
            .queue
            .clone()
            .unwrap_or_else(|| self.queue.clone());
        let span = producer_span(
            &queue.name,
            &msg.message().message_id,
            msg.message().payload.len(),
        );
        let (mut msg, span) = msg.into_parts(span);
        for linked in std::mem::take(&mut msg.links) {
            span.add_link(linked);
        }
        let (broker, link, timeout) = (self.broker.clone(), self.link.clone(), self.timeout);

        // Which channel this publish used, so a failure drops that one only.
        let used = Arc::new(AtomicU64::new(0));
        let used_by_publish = used.clone();
        let link_for_publish = link.clone();
        let publish = async move {
            let (generation, channel) = ready_channel(&broker, &link_for_publish, &queue).await?;
            used_by_publish.store(generation, Ordering::Relaxed);
            publish_confirmed(&channel, &queue.name, msg).await
        };
        Box::pin(
            async move {
                let result = match tokio::time::timeout(timeout, publish).await {
                    Ok(result) => result,
                    Err(_) => Err(PublishError::Timeout(timeout)),
                };
                if let Err(err) = &result {
                    // After any failure (a timeout included) the channel is
                    // suspect: drop it unless another publish replaced it.
                    let generation = used.load(Ordering::Relaxed);
                    let mut link = link.lock().await;
                    if link.as_ref().is_some_and(|c| c.generation == generation) {
                        *link = None;
                    }
                    let span = Span::current();
                    span.record("error.type", error_type(err));
                    span.set_status(Status::error(err.to_string()));
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The live channel, opened (in confirm mode) if there is none, with `queue`
/// declared on it.
async fn ready_channel(
    broker: &Broker,
    link: &Mutex<Option<PublishChannel>>,
    queue: &QueueSpec,
) -> Result<(u64, Channel), PublishError> {
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    let mut link = link.lock().await;
    let current = match link.take().filter(|c| c.channel.status().connected()) {
        Some(live) => link.insert(live),
        None => link.insert(PublishChannel {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            channel: open_channel(broker).await?,
            declared: HashSet::new(),
        }),
    };
    if !current.declared.contains(&queue.name) {
        queue.declare(&current.channel).await?;
        current.declared.insert(queue.name.clone());
    }
    Ok((current.generation, current.channel.clone()))
}

async fn open_channel(broker: &Broker) -> Result<Channel, PublishError> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    msg: Publish,
) -> Result<(), PublishError> {
    let mut headers = msg.headers;
    inject_context(&Span::current().context(), &mut headers);
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_message_id(msg.message_id.as_str().into())
        .with_headers(headers);
    if let Some(ms) = msg.expiration_ms {
        properties = properties.with_expiration(ms.to_string().into());
    }
    // `mandatory`: a message no queue takes comes back instead of vanishing
    // behind a positive confirm.
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &msg.payload,
            properties,
        )
        .await?
        .await?;
    if !confirm.is_ack() {
        return Err(PublishError::Nacked);
    }
    if confirm.take_message().is_some() {
        return Err(PublishError::Unroutable(queue.to_string()));
    }
    Ok(())
}

fn error_type(err: &PublishError) -> &'static str {
    match err {
        PublishError::Unavailable(_) => "broker_unavailable",
        PublishError::Amqp(_) => "amqp_error",
        PublishError::Nacked => "nack",
        PublishError::Timeout(_) => "timeout",
        PublishError::Unroutable(_) => "unroutable",
    }
}
