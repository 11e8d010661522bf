//! Backend configuration from the environment.

use std::time::Duration;

use crate::actors::StoreLimits;
use shared::amqp::QueueType;
use shared::config::{env_in_range, env_millis, env_or, env_string, ConfigError, ServiceConfig};
use shared::task::{DEFAULT_AMQP_URL, DEFAULT_RESULT_QUEUE, DEFAULT_TASK_QUEUE};

/// The port the service listens on unless `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8000;

/// Every variable this service reads, besides the telemetry ones
/// (`shared::telemetry::ENV_VARS`).
pub const ENV_VARS: &[&str] = &[
    "PORT",
    "AMQP_URL",
    "TASK_QUEUE",
    "RESULT_QUEUE",
    "QUEUE_TYPE",
    "TASK_STORE_CAPACITY",
    "TASK_STORE_MAX_BYTES",
    "PUBLISH_TIMEOUT_MS",
];

/// Everything the backend reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (8000).
    pub port: u16,
    /// `AMQP_URL`.
    pub amqp_url: String,
    /// `TASK_QUEUE` (`task_queue`).
    pub task_queue: String,
    /// `QUEUE_TYPE` (`classic`): `quorum` on a multi-node cluster. Backend
    /// and worker must agree (RabbitMQ refuses a redeclaration that differs).
    pub queue_type: QueueType,
    /// `RESULT_QUEUE` (`task_results`): status reports from the worker.
    pub result_queue: String,
    /// `TASK_STORE_CAPACITY` (100000): tasks kept for `GET /api/tasks/{id}`.
    pub store_capacity: usize,
    /// `TASK_STORE_MAX_BYTES` (536870912, 512 MiB): memory the kept tasks may take.
    pub store_max_bytes: usize,
    /// `PUBLISH_TIMEOUT_MS` (4000): longest wait for a broker confirm before 503.
    pub publish_timeout: Duration,
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
            store_capacity: env_in_range(
                "TASK_STORE_CAPACITY",
                StoreLimits::default().max_tasks,
                1,
                100_000_000,
            )?,
            store_max_bytes: env_in_range(
                "TASK_STORE_MAX_BYTES",
                StoreLimits::default().max_bytes,
                1024 * 1024,
                usize::MAX,
            )?,
            publish_timeout: env_millis("PUBLISH_TIMEOUT_MS", 4_000, 100, 60_000)?,
        })
    }
}

impl ServiceConfig for Config {
    fn port(&self) -> u16 {
        self.port
    }
}
