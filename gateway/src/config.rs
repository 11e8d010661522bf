//! Gateway configuration from the environment.

use std::time::Duration;

use shared::config::{env_millis, env_or, env_string, ConfigError, ServiceConfig};

/// The port the service listens on unless `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 3000;

/// Every variable this service reads, besides the telemetry ones
/// (`shared::telemetry::ENV_VARS`).
pub const ENV_VARS: &[&str] = &["PORT", "BACKEND_URL", "PRODUCT_URL", "UPSTREAM_TIMEOUT_MS"];

/// Everything the gateway reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT` (3000).
    pub port: u16,
    /// `BACKEND_URL` (`http://localhost:8000`).
    pub backend_url: String,
    /// `PRODUCT_URL` (`http://localhost:8001`).
    pub product_url: String,
    /// `UPSTREAM_TIMEOUT_MS` (8000): past it the gateway answers 504.
    pub upstream_timeout: Duration,
}

impl Config {
    /// Reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            port: env_or("PORT", DEFAULT_PORT)?,
            backend_url: env_string("BACKEND_URL", "http://localhost:8000"),
            product_url: env_string("PRODUCT_URL", "http://localhost:8001"),
            upstream_timeout: env_millis("UPSTREAM_TIMEOUT_MS", 8_000, 100, 120_000)?,
        })
    }
}

impl ServiceConfig for Config {
    fn port(&self) -> u16 {
        self.port
    }
}
