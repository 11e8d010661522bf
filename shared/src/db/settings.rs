//! Which database to use and how patiently, from the environment.

use std::time::Duration;

use crate::config::{env_in_range, env_millis, env_string, redact_url, ConfigError, SecretUrl};

/// The database system behind a `DATABASE_URL`, named as the OpenTelemetry
/// conventions name it (`db.system.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbSystem {
    /// An embedded SQLite file: the default, nothing to install.
    Sqlite,
    /// PostgreSQL: for several replicas of a service.
    Postgresql,
}

impl DbSystem {
    /// `sqlite` or `postgresql`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgresql => "postgresql",
        }
    }
}

/// Where the database is, as the spans describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTarget {
    /// The system.
    pub system: DbSystem,
    /// `db.namespace`: the SQLite file's path, or the PostgreSQL database.
    pub namespace: String,
    /// `server.address` and `server.port` (PostgreSQL only).
    pub server: Option<(String, u16)>,
}

impl DbTarget {
    /// Parses a `sqlite://PATH` or `postgres://…` URL; the error says why
    /// the URL cannot be used.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path.contains(":memory:") {
                return Err("a SQLite URL needs a file path (sqlite://data/tasks.db); in-memory databases would lose every task at exit".into());
            }
            return Ok(Self {
                system: DbSystem::Sqlite,
                namespace: path.to_string(),
                server: None,
            });
        }
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "unsupported scheme {:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                parsed.scheme()
            ));
        }
        // What the URL leaves out, the driver takes from the libpq variables.
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let host = parsed
            .host_str()
            .map(str::to_string)
            .or_else(|| var("PGHOST"))
            .unwrap_or_else(|| "localhost".to_string());
        let port = parsed
            .port()
            .or_else(|| var("PGPORT").and_then(|p| p.parse().ok()))
            .unwrap_or(5432);
        let database = Some(parsed.path().trim_start_matches('/'))
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .or_else(|| var("PGDATABASE"))
            .unwrap_or_else(|| "postgres".to_string());
        Ok(Self {
            system: DbSystem::Postgresql,
            namespace: database,
            server: Some((host, port)),
        })
    }
}

/// How to reach the database and how long to wait for it.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: `sqlite://PATH` (created if missing) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (user and password may
    /// come from `PGUSER`/`PGPASSWORD` instead).
    pub url: SecretUrl,
    /// What the URL points at.
    pub target: DbTarget,
    /// `DATABASE_MAX_CONNECTIONS` (4): the pool's size (SQLite: readers;
    /// it writes through one connection). Writes are grouped, so few
    /// connections carry the load; each costs a thread (SQLite) or a server
    /// process (PostgreSQL).
    pub max_connections: u32,
    /// `DATABASE_TIMEOUT_MS` (2000): the longest wait for a connection or
    /// for one statement (PostgreSQL enforces it as `statement_timeout`).
    pub timeout: Duration,
}

impl DatabaseSettings {
    /// The variables [`from_env`](Self::from_env) reads (`PGUSER` and
    /// `PGPASSWORD` are read by the PostgreSQL driver).
    pub const ENV_VARS: &'static [&'static str] = &[
        "DATABASE_URL",
        "DATABASE_MAX_CONNECTIONS",
        "DATABASE_TIMEOUT_MS",
        "PGUSER",
        "PGPASSWORD",
    ];

    /// Reads the environment; `default_url` when `DATABASE_URL` is unset.
    pub fn from_env(default_url: &str) -> Result<Self, ConfigError> {
        let url = env_string("DATABASE_URL", default_url);
        let target = DbTarget::parse(&url).map_err(|reason| ConfigError::Invalid {
            name: "DATABASE_URL",
            value: redact_url(&url),
            reason,
        })?;
        Ok(Self {
            url: SecretUrl::new(url),
            target,
            max_connections: env_in_range("DATABASE_MAX_CONNECTIONS", 4, 1, 1000)?,
            timeout: env_millis("DATABASE_TIMEOUT_MS", 2_000, 100, 60_000)?,
        })
    }

    /// Settings for `url` with the default pool size and timeout.
    pub fn for_url(url: &str) -> Result<Self, String> {
        Ok(Self {
            url: SecretUrl::new(url),
            target: DbTarget::parse(url)?,
            max_connections: 4,
            timeout: Duration::from_secs(2),
        })
    }

    /// The default `DATABASE_URL` of a service: a SQLite file under `data/`
    /// of the working directory.
    pub fn default_sqlite_url(file_name: &str) -> String {
        format!("sqlite://data/{file_name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_system_the_namespace_and_the_server() {
        let sqlite = DbTarget::parse("sqlite://data/backend.db").unwrap();
        assert_eq!(sqlite.system, DbSystem::Sqlite);
        assert_eq!(sqlite.namespace, "data/backend.db");
        assert_eq!(sqlite.server, None);
        assert_eq!(
            DbTarget::parse("sqlite:///var/lib/tasks.db?mode=rwc")
                .unwrap()
                .namespace,
            "/var/lib/tasks.db"
        );
        let pg = DbTarget::parse("postgres://app:secret@db.internal:6543/backend").unwrap();
        assert_eq!(pg.system, DbSystem::Postgresql);
        assert_eq!(pg.namespace, "backend");
        assert_eq!(pg.server, Some(("db.internal".to_string(), 6543)));
    }

    #[test]
    fn unusable_urls_say_why() {
        assert!(DbTarget::parse("mysql://x/y")
            .unwrap_err()
            .contains("mysql"));
        assert!(DbTarget::parse("sqlite::memory:")
            .unwrap_err()
            .contains("file path"));
        assert!(DbTarget::parse("not a url").unwrap_err().contains("URL"));
    }
}
