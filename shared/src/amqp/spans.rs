//! The messaging spans, in one place so that producer and consumer agree on
//! names and attributes (the OpenTelemetry messaging conventions): a
//! PRODUCER span `send <queue>` per published message, a CONSUMER span
//! `process <queue>` per delivery, parented through the message headers.

use lapin::message::Delivery;
use tracing::{field::Empty, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{propagation::extract_context, MESSAGING_SYSTEM};

/// The PRODUCER span `send <queue>` of one message (its context is what the
/// headers carry).
pub(super) fn producer_span(queue: &str, message_id: &str, body_size: usize) -> Span {
    let name = ["send ", queue].concat();
    tracing::info_span!(
        "send",
        otel.name = name.as_str(),
        otel.kind = "producer",
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = queue,
        messaging.rabbitmq.destination.routing_key = queue,
        messaging.message.id = message_id,
        messaging.message.body.size = body_size as i64,
        error.type = Empty,
    )
}

/// The CONSUMER span `process <queue>` for one delivery, a child of the
/// PRODUCER span whose context came in the headers (a new root when the
/// headers carry none or garbage).
pub fn process_span(delivery: &Delivery, queue: &str) -> Span {
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str())
        .unwrap_or_default();
    let name = ["process ", queue].concat();
    let span = tracing::info_span!(
        "process",
        otel.name = name.as_str(),
        otel.kind = "consumer",
        messaging.system = MESSAGING_SYSTEM,
        messaging.operation.type = "process",
        messaging.operation.name = "deliver",
        messaging.destination.name = queue,
        messaging.rabbitmq.destination.routing_key = delivery.routing_key.as_str(),
        messaging.rabbitmq.message.delivery_tag = delivery.delivery_tag as i64,
        messaging.message.id = message_id,
        messaging.message.body.size = delivery.data.len() as i64,
        messaging.message.redelivered = delivery.redelivered,
        error.type = Empty,
    );
    let parent = extract_context(delivery.properties.headers().as_ref());
    if let Err(err) = span.set_parent(parent) {
        tracing::debug!(error = %err, "consumer span already started; parent not set");
    }
    span
}
