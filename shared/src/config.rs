//! Environment parsing with errors that name the variable and the bad value.

use std::{
    fmt::{self, Display},
    str::FromStr,
};

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
    /// The variable parses, but what it names cannot be used (a database
    /// that cannot be reached at start-up).
    #[error("environment variable {name}={value:?} cannot be used: {reason}")]
    Unusable {
        /// Variable name.
        name: &'static str,
        /// The value, with any password masked.
        value: String,
        /// What went wrong.
        reason: String,
    },
}

/// A connection URL that may hold a password (`AMQP_URL`, `DATABASE_URL`).
/// `Debug` and `Display` show it with the password masked, so a config
/// struct can be logged whole; [`expose`](Self::expose) is for the one call
/// that connects. The secret is wiped from memory when dropped.
#[derive(Clone)]
pub struct SecretUrl(secrecy::SecretString);

impl SecretUrl {
    /// Wraps `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(secrecy::SecretString::from(url.into()))
    }

    /// The URL itself, password included.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", redact_url(self.expose()))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.expose()))
    }
}

/// A URL without its password (`scheme://user:***@host/...`), for logs and
/// error messages. A malformed URL missing its `//` is masked as well: it is
/// the one that ends up quoted in an error.
pub fn redact_url(url: &str) -> String {
    let Some(colon) = url.find(':') else {
        return url.to_string();
    };
    let authority = if url[colon + 1..].starts_with("//") {
        colon + 3
    } else {
        colon + 1
    };
    match url.rfind('@') {
        Some(at) if at > authority => {
            let user = url[authority..at].split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..authority], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Reads `name` from the environment, parsing it as `T`; an unset or empty
/// variable yields `default`.
pub fn env_or<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    value_or(name, std::env::var(name).ok(), default)
}

/// Like [`env_or`], and also rejects values outside `min..=max`.
pub fn env_in_range<T>(name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display + Copy,
    T::Err: Display,
{
    value_in_range(name, std::env::var(name).ok(), default, min, max)
}

/// [`env_or`] for a value already looked up (`raw`: the variable `name`'s
/// value, if set), for settings read through a lookup of their own.
pub fn value_or<T>(name: &'static str, raw: Option<String>, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match raw {
        Some(value) if !value.trim().is_empty() => {
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

/// [`env_in_range`] for a value already looked up, as [`value_or`].
pub fn value_in_range<T>(
    name: &'static str,
    raw: Option<String>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Display + Copy,
    T::Err: Display,
{
    let value = value_or(name, raw, default)?;
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

/// A duration written the human way (`7d`, `12h`, `90s`, `1h 30m`),
/// `default` when unset, rejected outside `min..=max`.
pub fn env_duration(
    name: &'static str,
    default: std::time::Duration,
    min: std::time::Duration,
    max: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    let raw = match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => return Ok(default),
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name,
        value: raw.clone(),
        reason,
    };
    let value = humantime::parse_duration(raw.trim())
        .map_err(|e| invalid(format!("{e} (write it like 7d, 12h or 90s)")))?;
    if value < min || value > max {
        return Err(invalid(format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(value)
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

    #[test]
    fn durations_are_read_the_human_way_and_bounded() {
        use std::time::Duration;
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(365 * 86_400));
        let day = Duration::from_secs(86_400);
        assert_eq!(
            env_duration("ASYNC_MICRO_TEST_UNSET_DURATION", day, min, max).unwrap(),
            day
        );
        std::env::set_var("ASYNC_MICRO_TEST_DURATION", "7d");
        assert_eq!(
            env_duration("ASYNC_MICRO_TEST_DURATION", day, min, max).unwrap(),
            7 * day
        );
        std::env::set_var("ASYNC_MICRO_TEST_BAD_DURATION", "a week");
        let err = env_duration("ASYNC_MICRO_TEST_BAD_DURATION", day, min, max).unwrap_err();
        assert!(
            err.to_string().contains("ASYNC_MICRO_TEST_BAD_DURATION"),
            "{err}"
        );
        std::env::set_var("ASYNC_MICRO_TEST_SHORT_DURATION", "10ms");
        assert!(env_duration("ASYNC_MICRO_TEST_SHORT_DURATION", day, min, max).is_err());
    }

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redact_url("amqp://guest:secret@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://app:p%40ss@db:5432/backend"),
            "postgres://app:***@db:5432/backend"
        );
        assert_eq!(redact_url("amqp://rabbit:5672"), "amqp://rabbit:5672");
        assert_eq!(
            redact_url("amqp:guest:secret@rabbit"),
            "amqp:guest:***@rabbit"
        );
        let secret = SecretUrl::new("postgres://app:hunter2@db/backend");
        assert_eq!(secret.expose(), "postgres://app:hunter2@db/backend");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
    }
}
