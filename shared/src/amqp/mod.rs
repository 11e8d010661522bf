//! RabbitMQ with the trace context riding in the message headers.
//!
//! - [`propagation`]: OpenTelemetry propagator <-> AMQP `FieldTable` headers.
//! - `topology`: the queues ([`TaskQueues`]: the task queue, its retry
//!   queues and its dead-letter queue) and their declaration ([`QueueSpec`]).
//! - [`Broker`]: one connection per process, reconnected on demand with a
//!   capped exponential backoff; hands out channels.
//! - [`QueuePublisher`]: an actor owning a confirm-mode channel; each publish
//!   is a PRODUCER span `send <queue>` and completes only once the broker has
//!   confirmed the persistent message.
//! - [`subscribe`]: the consumer side, with per-consumer QoS.
//! - `spans`: the PRODUCER span `send <queue>` and the CONSUMER span
//!   [`process_span`] `process <queue>` that continues the producer's trace,
//!   named and attributed in one place.

mod backoff;
mod broker;
mod consumer;
pub mod propagation;
mod publisher;
mod settings;
mod spans;
mod topology;

pub use backoff::Backoff;
pub use broker::{Broker, BrokerError};
pub use consumer::{header_u32, subscribe, subscribe_with_retry, QueueConsumer, Subscription};
pub use publisher::{Publish, PublishError, QueuePublisher};
pub use settings::{BrokerSettings, DEFAULT_AMQP_URL};
pub use spans::process_span;
pub use topology::{QueueSpec, QueueType, TaskQueues, DEFAULT_RESULT_QUEUE, DEFAULT_TASK_QUEUE};

/// `messaging.system` for every span of ours that touches the broker.
pub const MESSAGING_SYSTEM: &str = "rabbitmq";
