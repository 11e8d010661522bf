//! Building blocks every async-micro service uses, so that the services cannot
//! drift apart on how they trace, talk to RabbitMQ, read configuration or
//! report errors.
//!
//! - [`telemetry`]: OpenTelemetry + `tracing` set-up from the standard
//!   `OTEL_*` environment, and the guard that flushes spans at exit.
//! - [`traced`]: the envelope that carries an OpenTelemetry `Context` across
//!   an actix mailbox.
//! - [`actor_spawn`]: futures spawned on an actor's context, polled only
//!   when they were woken.
//! - [`amqp`]: RabbitMQ connection, header propagation, a confirming
//!   publisher actor and the consumer-side span.
//! - [`db`]: the database (SQLite or PostgreSQL) with traced statements.
//! - [`task`]: the task message schema shared by backend and worker.
//! - [`http`]: JSON errors, the SERVER span middleware and `traceresponse`.
//! - [`metrics`]: Prometheus `/metrics` with trace-id exemplars.
//! - [`config`]: environment parsing with clear errors.
//! - [`service`]: the start-up and shutdown sequence of a service binary.

pub mod actor_spawn;
pub mod amqp;
pub mod config;
pub mod db;
pub mod http;
pub mod metrics;
pub mod service;
pub mod task;
pub mod telemetry;
pub mod traced;

#[cfg(test)]
mod span_recorder;

pub use traced::{Traced, TracedSend};
