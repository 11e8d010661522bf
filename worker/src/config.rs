//! Worker configuration from the environment.

use std::time::Duration;

use shared::{
    amqp::BrokerSettings,
    config::{env_in_range, env_millis, env_or, ConfigError, ServiceConfig},
};

/// The port the service listens on unless `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8002;

/// Every variable this service reads, besides the broker ones
/// ([`BrokerSettings::ENV_VARS`]) and the telemetry ones
/// (`shared::telemetry::ENV_VARS`).
pub const ENV_VARS: &[&str] = &[
    "PORT",
    "WORKER_CONCURRENCY",
    "WORKER_PREFETCH",
    "TASK_MAX_ATTEMPTS",
    "TASK_RETRY_DELAY_MS",
    "SHUTDOWN_TIMEOUT_MS",
    "PROCESSING_REPORT_DELAY_MS",
];

/// Everything the worker reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (8002): health, readiness and metrics only.
    pub port: u16,
    /// RabbitMQ and the queues.
    pub broker: BrokerSettings,
    /// `WORKER_CONCURRENCY` (4): consumer actors, each with its own channel.
    pub concurrency: usize,
    /// `WORKER_PREFETCH` (32): deliveries each consumer actor holds and runs
    /// at once.
    pub prefetch: u16,
    /// `TASK_MAX_ATTEMPTS` (3): attempts before a task is failed and dead-lettered.
    pub max_attempts: u32,
    /// `TASK_RETRY_DELAY_MS` (1000): wait before the 2nd attempt, doubling after.
    pub retry_delay: Duration,
    /// `SHUTDOWN_TIMEOUT_MS` (30000): how long in-flight tasks may run after
    /// SIGTERM; past it they are left unacknowledged for redelivery.
    pub shutdown_timeout: Duration,
    /// `PROCESSING_REPORT_DELAY_MS` (250): `processing` is reported for a
    /// task still running after this long (0: for every task, before it runs).
    pub processing_delay: Duration,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", DEFAULT_PORT)?,
            broker: BrokerSettings::from_env()?,
            concurrency: env_in_range("WORKER_CONCURRENCY", 4, 1, 256)?,
            prefetch: env_in_range("WORKER_PREFETCH", 32, 1, 1000)?,
            max_attempts: env_in_range("TASK_MAX_ATTEMPTS", 3, 1, 100)?,
            retry_delay: env_millis("TASK_RETRY_DELAY_MS", 1_000, 0, 3_600_000)?,
            shutdown_timeout: env_millis("SHUTDOWN_TIMEOUT_MS", 30_000, 0, 600_000)?,
            processing_delay: env_millis("PROCESSING_REPORT_DELAY_MS", 250, 0, 60_000)?,
        })
    }
}

impl ServiceConfig for Config {
    fn port(&self) -> u16 {
        self.port
    }
}
