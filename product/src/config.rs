//! Product configuration from the environment.

use shared::config::{env_or, ConfigError, ServiceConfig};

/// The port the service listens on unless `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8001;

/// Every variable this service reads, besides the telemetry ones
/// (`shared::telemetry::ENV_VARS`).
pub const ENV_VARS: &[&str] = &["PORT"];

/// Everything the product service reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (8001).
    pub port: u16,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", DEFAULT_PORT)?,
        })
    }
}

impl ServiceConfig for Config {
    fn port(&self) -> u16 {
        self.port
    }
}
