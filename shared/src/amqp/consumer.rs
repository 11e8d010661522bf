//! The consuming side: a subscription with per-consumer QoS, retried while
//! RabbitMQ is away, and [`QueueConsumer`], the actor that keeps one alive.

use super::{Backoff, Broker, BrokerError, QueueSpec};
use actix::{Actor, ActorFutureExt, AsyncContext, Context, StreamHandler, WrapFuture};
use lapin::{
    message::Delivery,
    options::{BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
    Channel, Consumer,
};

/// Opens a channel with its own prefetch (`basic.qos`, per consumer), declares
/// the durable `queue` and starts consuming from it with manual acks. The
/// channel is returned too, so the caller can close it to stop consuming.
pub async fn subscribe(
    broker: &Broker,
    queue: &QueueSpec,
    prefetch: u16,
    consumer_tag: &str,
) -> Result<(Channel, Consumer), BrokerError> {
    let channel = broker.channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await?;
    queue.declare(&channel).await?;
    let consumer = channel
        .basic_consume(
            queue.name.as_str().into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

/// [`subscribe`], retried with a capped exponential backoff until it
/// succeeds. Failures are logged by the [`Broker`] once per outage.
pub async fn subscribe_with_retry(
    broker: &Broker,
    queue: &QueueSpec,
    prefetch: u16,
    consumer_tag: &str,
) -> (Channel, Consumer) {
    let mut backoff = Backoff::default();
    let mut reported = false;
    loop {
        match subscribe(broker, queue, prefetch, consumer_tag).await {
            Ok(subscription) => return subscription,
            Err(err) => {
                // The broker logs its own outages; a failure with the broker
                // up (e.g. the queue exists with other arguments) is ours.
                if broker.is_connected() && !reported {
                    reported = true;
                    tracing::warn!(error = %err, queue = %queue.name, "cannot subscribe; retrying with backoff");
                }
                let delay = backoff.next_delay();
                tracing::debug!(error = %err, queue = %queue.name, ?delay, "subscribe failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// What a [`QueueConsumer`] subscribes to.
pub struct Subscription {
    /// The connection to open the channel on.
    pub broker: Broker,
    /// The queue to consume (declared first).
    pub queue: QueueSpec,
    /// Unacknowledged deliveries at most (`basic.qos`, per consumer).
    pub prefetch: u16,
    /// The consumer tag (shown by `rabbitmqctl list_consumers`).
    pub tag: String,
    /// Queues declared on the channel before the first delivery (e.g. the
    /// dead-letter queue the consumer publishes to); a failure is logged.
    pub also_declare: Vec<QueueSpec>,
}

/// An actor that consumes one queue for as long as it runs: it calls
/// [`resubscribe`](Self::resubscribe) when it starts and again from
/// `StreamHandler::finished` whenever a subscription's stream ends (the
/// broker went away, the channel closed). Subscribing runs in the
/// background, retried with backoff, so the actor's mailbox keeps working
/// while RabbitMQ is away. The worker's task consumers and the backend's
/// status-report consumer are both one.
pub trait QueueConsumer:
    Actor<Context = Context<Self>> + StreamHandler<lapin::Result<Delivery>>
{
    /// What to subscribe to.
    fn subscription(&self) -> Subscription;

    /// Subscribed, on `channel` (the one to close to stop consuming); the
    /// deliveries follow on the actor's stream.
    fn subscribed(&mut self, channel: Channel, ctx: &mut Context<Self>);

    /// Subscribes (again), then adds the deliveries as the actor's stream.
    fn resubscribe(&self, ctx: &mut Context<Self>) {
        let Subscription {
            broker,
            queue,
            prefetch,
            tag,
            also_declare,
        } = self.subscription();
        ctx.spawn(
            async move {
                let (channel, consumer) =
                    subscribe_with_retry(&broker, &queue, prefetch, &tag).await;
                for spec in &also_declare {
                    if let Err(err) = spec.declare(&channel).await {
                        tracing::warn!(error = %err, queue = %spec.name, "declaring a queue failed");
                    }
                }
                (channel, consumer)
            }
            .into_actor(self)
            .map(|(channel, consumer), act, ctx| {
                act.subscribed(channel, ctx);
                ctx.add_stream(consumer);
            }),
        );
    }
}

/// An integer header (any AMQP integer type) as `u32`.
pub fn header_u32(headers: Option<&FieldTable>, key: &str) -> Option<u32> {
    use lapin::types::AMQPValue::*;
    let value = headers?.inner().get(key)?;
    let n: i64 = match value {
        ShortShortInt(n) => (*n).into(),
        ShortShortUInt(n) => (*n).into(),
        ShortInt(n) => (*n).into(),
        ShortUInt(n) => (*n).into(),
        LongInt(n) => (*n).into(),
        LongUInt(n) => (*n).into(),
        LongLongInt(n) => *n,
        _ => return None,
    };
    u32::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::AMQPValue;

    #[test]
    fn integer_headers_of_any_width_are_read() {
        let mut headers = FieldTable::default();
        headers.insert("a".into(), AMQPValue::LongUInt(3));
        headers.insert("b".into(), AMQPValue::LongLongInt(4));
        headers.insert("c".into(), AMQPValue::LongString("5".into()));
        headers.insert("d".into(), AMQPValue::LongLongInt(-1));
        assert_eq!(header_u32(Some(&headers), "a"), Some(3));
        assert_eq!(header_u32(Some(&headers), "b"), Some(4));
        assert_eq!(header_u32(Some(&headers), "c"), None);
        assert_eq!(header_u32(Some(&headers), "d"), None);
        assert_eq!(header_u32(None, "a"), None);
    }
}
