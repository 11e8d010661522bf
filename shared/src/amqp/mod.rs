//! RabbitMQ with the trace context riding in the message headers.
//!
//! - [`propagation`]: OpenTelemetry propagator <-> AMQP `FieldTable` headers.
//! - [`Broker`]: one connection per process, reconnected on demand with a
//!   capped exponential backoff; hands out channels.
//! - [`QueuePublisher`]: an actor owning a confirm-mode channel; each publish
//!   is a PRODUCER span `send <queue>` and completes only once the broker has
//!   confirmed the persistent message.
//! - [`subscribe`] and [`process_span`]: the consumer side, whose CONSUMER
//!   span `process <queue>` continues the producer's trace.

mod backoff;
mod broker;
mod consumer;
pub mod propagation;
mod publisher;
mod settings;

pub use backoff::Backoff;
pub use broker::{Broker, BrokerError};
pub use consumer::{header_u32, process_span, subscribe, subscribe_with_retry};
pub use publisher::{Publish, PublishError, QueuePublisher, QueueSpec, QueueType};
pub use settings::BrokerSettings;

/// `messaging.system` for every span of ours that touches the broker.
pub const MESSAGING_SYSTEM: &str = "rabbitmq";
