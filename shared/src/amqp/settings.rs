//! The RabbitMQ settings backend and worker both read, in one place so they
//! cannot disagree on names, defaults or queue arguments.

use std::time::Duration;

use super::{QueueType, DEFAULT_RESULT_QUEUE, DEFAULT_TASK_QUEUE};
use crate::config::{env_millis, env_or, env_string, ConfigError, SecretUrl};

/// Where RabbitMQ is unless `AMQP_URL` says otherwise.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@localhost:5672/%2f";

/// How to reach RabbitMQ and which queues to use.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `AMQP_URL` (`amqp://guest:guest@localhost:5672/%2f`).
    pub amqp_url: SecretUrl,
    /// `TASK_QUEUE` (`task_queue`).
    pub task_queue: String,
    /// `RESULT_QUEUE` (`task_results`): status reports from the worker.
    pub result_queue: String,
    /// `QUEUE_TYPE` (`classic`): `quorum` on a multi-node cluster. Backend and
    /// worker must agree (RabbitMQ refuses a redeclaration that differs).
    pub queue_type: QueueType,
    /// `PUBLISH_TIMEOUT_MS` (4000): longest wait for a publisher confirm.
    pub publish_timeout: Duration,
}

impl BrokerSettings {
    /// The variables [`from_env`](Self::from_env) reads.
    pub const ENV_VARS: &'static [&'static str] = &[
        "AMQP_URL",
        "TASK_QUEUE",
        "RESULT_QUEUE",
        "QUEUE_TYPE",
        "PUBLISH_TIMEOUT_MS",
    ];

    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let amqp_url = SecretUrl::new(env_string("AMQP_URL", DEFAULT_AMQP_URL));
        if let Err(err) = super::broker::connection_uri(&amqp_url) {
            return Err(ConfigError::Invalid {
                name: "AMQP_URL",
                value: amqp_url.to_string(),
                reason: err.to_string(),
            });
        }
        Ok(Self {
            amqp_url,
            task_queue: env_string("TASK_QUEUE", DEFAULT_TASK_QUEUE),
            result_queue: env_string("RESULT_QUEUE", DEFAULT_RESULT_QUEUE),
            queue_type: env_or("QUEUE_TYPE", QueueType::Classic)?,
            publish_timeout: env_millis("PUBLISH_TIMEOUT_MS", 4_000, 100, 60_000)?,
        })
    }

    /// The defaults, with RabbitMQ at `amqp_url` (for services built in
    /// process, e.g. by tests).
    pub fn for_url(amqp_url: &str) -> Self {
        Self {
            amqp_url: SecretUrl::new(amqp_url),
            task_queue: DEFAULT_TASK_QUEUE.to_string(),
            result_queue: DEFAULT_RESULT_QUEUE.to_string(),
            queue_type: QueueType::Classic,
            publish_timeout: Duration::from_millis(4_000),
        }
    }
}
