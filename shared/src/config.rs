//! Environment parsing with errors that name the variable and the bad value.

use std::{fmt::Display, str::FromStr};

/// What every service configuration knows: the port it serves HTTP on (the
/// container healthcheck probes it).
pub trait ServiceConfig {
    /// The HTTP port.
    fn port(&self) -> u16;
}

/// A configuration value that is present but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The variable is set to something that does not parse.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// The raw value found.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// Reads `name` from the environment, parsing it as `T`; an unset or empty
/// variable yields `default`.
pub fn env_or<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    value,
                    reason: e.to_string(),
                })
        }
        _ => Ok(default),
    }
}

/// Like [`env_or`], and also rejects values outside `min..=max`.
pub fn env_in_range<T>(name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display + Copy,
    T::Err: Display,
{
    let value = env_or(name, default)?;
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            reason: format!("must be between {min} and {max}"),
        });
    }
    Ok(value)
}

/// A duration given in milliseconds, `default_ms` when unset, rejected
/// outside `min_ms..=max_ms`.
pub fn env_millis(
    name: &'static str,
    default_ms: u64,
    min_ms: u64,
    max_ms: u64,
) -> Result<std::time::Duration, ConfigError> {
    env_in_range(name, default_ms, min_ms, max_ms).map(std::time::Duration::from_millis)
}

/// Reads a string variable, `default` when unset or empty.
pub fn env_string(name: &'static str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variable_gives_default_and_bad_value_names_the_variable() {
        assert_eq!(env_or::<u16>("ASYNC_MICRO_TEST_UNSET", 7).unwrap(), 7);
        std::env::set_var("ASYNC_MICRO_TEST_BAD_PORT", "eighty");
        let err = env_or::<u16>("ASYNC_MICRO_TEST_BAD_PORT", 7).unwrap_err();
        assert!(
            err.to_string().contains("ASYNC_MICRO_TEST_BAD_PORT"),
            "{err}"
        );
        std::env::set_var("ASYNC_MICRO_TEST_RANGE", "0");
        assert!(env_in_range::<u32>("ASYNC_MICRO_TEST_RANGE", 4, 1, 64).is_err());
    }
}
