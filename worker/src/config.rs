//! Worker configuration from the environment.

use std::time::Duration;

use shared::amqp::QueueType;
use shared::config::{env_in_range, env_millis, env_or, env_string, ConfigError, ServiceConfig};
use shared::task::{DEFAULT_AMQP_URL, DEFAULT_RESULT_QUEUE, DEFAULT_TASK_QUEUE};

/// The port the service listens on unless `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8002;

/// Every variable this service reads, besides the telemetry ones
/// (`shared::telemetry::ENV_VARS`).
pub const ENV_VARS: &[&str] = &[
    "PORT",
    "AMQP_URL",
    "TASK_QUEUE",
    "RESULT_QUEUE",
    "QUEUE_TYPE",
    "WORKER_CONCURRENCY",
    "WORKER_PREFETCH",
    "PUBLISH_TIMEOUT_MS",
    "TASK_MAX_ATTEMPTS",
    "TASK_RETRY_DELAY_MS",
    "SHUTDOWN_TIMEOUT_MS",
];

/// Everything the worker reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (8002): health and readiness only.
    pub port: u16,
    /// `AMQP_URL`.
    pub amqp_url: String,
    /// `TASK_QUEUE` (`task_queue`).
    pub task_queue: String,
    /// `QUEUE_TYPE` (`classic`): `quorum` on a multi-node cluster. Backend
    /// and worker must agree (RabbitMQ refuses a redeclaration that differs).
    pub queue_type: QueueType,
    /// `RESULT_QUEUE` (`task_results`).
    pub result_queue: String,
    /// `WORKER_CONCURRENCY` (4): consumer actors, each with its own channel.
    pub concurrency: usize,
    /// `WORKER_PREFETCH` (1): unacknowledged messages per consumer actor.
    pub prefetch: u16,
    /// `PUBLISH_TIMEOUT_MS` (4000): longest wait for a report's confirm.
    pub publish_timeout: Duration,
    /// `TASK_MAX_ATTEMPTS` (3): attempts before a task is failed and dead-lettered.
    pub max_attempts: u32,
    /// `TASK_RETRY_DELAY_MS` (1000): wait before the 2nd attempt, doubling after.
    pub retry_delay: Duration,
    /// `SHUTDOWN_TIMEOUT_MS` (30000): how long in-flight tasks may run after
    /// SIGTERM; past it they are left unacknowledged for redelivery.
    pub shutdown_timeout: Duration,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", DEFAULT_PORT)?,
            amqp_url: env_string("AMQP_URL", DEFAULT_AMQP_URL),
            task_queue: env_string("TASK_QUEUE", DEFAULT_TASK_QUEUE),
            result_queue: env_string("RESULT_QUEUE", DEFAULT_RESULT_QUEUE),
            queue_type: env_or("QUEUE_TYPE", QueueType::Classic)?,
            concurrency: env_in_range("WORKER_CONCURRENCY", 4, 1, 256)?,
            prefetch: env_in_range("WORKER_PREFETCH", 1, 1, 1000)?,
            publish_timeout: env_millis("PUBLISH_TIMEOUT_MS", 4_000, 100, 60_000)?,
            max_attempts: env_in_range("TASK_MAX_ATTEMPTS", 3, 1, 100)?,
            retry_delay: env_millis("TASK_RETRY_DELAY_MS", 1_000, 0, 3_600_000)?,
            shutdown_timeout: env_millis("SHUTDOWN_TIMEOUT_MS", 30_000, 0, 600_000)?,
        })
    }
}

impl ServiceConfig for Config {
    fn port(&self) -> u16 {
        self.port
    }
}
