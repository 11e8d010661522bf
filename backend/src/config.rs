//! Backend configuration from the environment.

use std::time::Duration;

use shared::config::{env_in_range, env_or, env_string, ConfigError};

/// Everything the backend reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (8000).
    pub port: u16,
    /// `AMQP_URL`.
    pub amqp_url: String,
    /// `TASK_QUEUE` (`task_queue`).
    pub task_queue: String,
    /// `RESULT_QUEUE` (`task_results`): status reports from the worker.
    pub result_queue: String,
    /// `TASK_STORE_CAPACITY` (100000): tasks kept for `GET /api/tasks/{id}`.
    pub store_capacity: usize,
    /// `PUBLISH_TIMEOUT_MS` (4000): longest wait for a broker confirm before 503.
    pub publish_timeout: Duration,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", 8000)?,
            amqp_url: env_string("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f"),
            task_queue: env_string("TASK_QUEUE", "task_queue"),
            result_queue: env_string("RESULT_QUEUE", "task_results"),
            store_capacity: env_in_range("TASK_STORE_CAPACITY", 100_000, 1, 100_000_000)?,
            publish_timeout: Duration::from_millis(env_in_range(
                "PUBLISH_TIMEOUT_MS",
                4_000,
                100,
                60_000,
            )?),
        })
    }
}
