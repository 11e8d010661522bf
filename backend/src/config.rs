//! Backend configuration from the environment.

use std::time::Duration;

use shared::{
    amqp::BrokerSettings,
    config::{env_duration, env_or, ConfigError, ServiceConfig},
    db::DatabaseSettings,
};

/// The port the service listens on unless `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8000;

/// How long tasks are kept unless `TASK_RETENTION` says otherwise: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every variable this service reads, besides the broker ones
/// ([`BrokerSettings::ENV_VARS`]) and the telemetry ones
/// (`shared::telemetry::ENV_VARS`); the database ones are
/// [`DatabaseSettings::ENV_VARS`].
pub const ENV_VARS: &[&str] = &[
    "PORT",
    "TASK_RETENTION",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_TIMEOUT_MS",
    "PGUSER",
    "PGPASSWORD",
];

/// Everything the backend reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (8000).
    pub port: u16,
    /// RabbitMQ and the queues.
    pub broker: BrokerSettings,
    /// `DATABASE_URL` (`sqlite://data/backend.db`) and the pool.
    pub database: DatabaseSettings,
    /// `TASK_RETENTION` (`7d`): tasks older than this are deleted.
    pub retention: Duration,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", DEFAULT_PORT)?,
            broker: BrokerSettings::from_env()?,
            database: DatabaseSettings::from_env(&DatabaseSettings::default_sqlite_url(
                "backend.db",
            ))?,
            retention: env_duration(
                "TASK_RETENTION",
                DEFAULT_RETENTION,
                Duration::from_secs(1),
                Duration::from_secs(10 * 365 * 24 * 3600),
            )?,
        })
    }
}

impl ServiceConfig for Config {
    fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_database_variable_is_listed() {
        for var in DatabaseSettings::ENV_VARS {
            assert!(ENV_VARS.contains(var), "{var}");
        }
    }
}
