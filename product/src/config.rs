//! Product configuration from the environment.

use shared::config::{env_or, ConfigError};

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
            port: env_or("PORT", 8001)?,
        })
    }
}
