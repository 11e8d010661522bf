//! Backend configuration from the environment.

use shared::{
    amqp::BrokerSettings,
    config::{env_in_range, env_or, ConfigError, ServiceConfig},
};

use crate::actors::StoreLimits;

/// The port the service listens on unless `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8000;

/// Every variable this service reads, besides the broker ones
/// ([`BrokerSettings::ENV_VARS`]) and the telemetry ones
/// (`shared::telemetry::ENV_VARS`).
pub const ENV_VARS: &[&str] = &["PORT", "TASK_STORE_CAPACITY", "TASK_STORE_MAX_BYTES"];

/// Everything the backend reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (8000).
    pub port: u16,
    /// RabbitMQ and the queues.
    pub broker: BrokerSettings,
    /// `TASK_STORE_CAPACITY` (100000): tasks kept for `GET /api/tasks/{id}`.
    pub store_capacity: usize,
    /// `TASK_STORE_MAX_BYTES` (536870912, 512 MiB): memory the kept tasks may take.
    pub store_max_bytes: usize,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", DEFAULT_PORT)?,
            broker: BrokerSettings::from_env()?,
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
        })
    }
}

impl ServiceConfig for Config {
    fn port(&self) -> u16 {
        self.port
    }
}
