//! Product configuration from the environment.

use std::time::Duration;

use shared::{
    config::{env_duration, env_or, ConfigError, ServiceConfig},
    db::DatabaseSettings,
};

/// The port the service listens on unless `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8001;

/// Every variable this service reads, besides the telemetry ones
/// (`shared::telemetry::ENV_VARS`); the database ones are
/// [`DatabaseSettings::ENV_VARS`].
pub const ENV_VARS: &[&str] = &[
    "PORT",
    "CATALOG_CACHE_TTL",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_TIMEOUT_MS",
    "PGUSER",
    "PGPASSWORD",
];

/// Everything the product service reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (8001).
    pub port: u16,
    /// `DATABASE_URL` (`sqlite://data/product.db`) and the pool.
    pub database: DatabaseSettings,
    /// `CATALOG_CACHE_TTL` (`1s`): how long a lookup's answer is reused;
    /// `0s` reads the database on every request.
    pub cache_ttl: Duration,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", DEFAULT_PORT)?,
            database: DatabaseSettings::from_env(&DatabaseSettings::default_sqlite_url(
                "product.db",
            ))?,
            cache_ttl: env_duration(
                "CATALOG_CACHE_TTL",
                Duration::from_secs(1),
                Duration::ZERO,
                Duration::from_secs(3600),
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
