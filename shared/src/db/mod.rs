//! The database of a service (backend: tasks; product: the catalog), SQLite
//! by default and PostgreSQL for replicas, through one code path: sqlx's
//! `Any` driver picks the backend from `DATABASE_URL`, and every statement
//! is written once with `$n` placeholders, which both understand.
//!
//! Every statement runs as a CLIENT span named and attributed as the stable
//! OpenTelemetry database conventions say (`INSERT tasks`, `db.system.name`,
//! `db.query.text`, ...; see [`Statement`]), under the span that issued it,
//! and is timed in `db_client_operation_duration_seconds`.
//!
//! Start-up ([`Database::connect`]) applies the service's versioned
//! migrations (`sqlx::migrate!`, written in the SQL both systems take):
//! PostgreSQL serialises replicas that start together with an advisory lock;
//! SQLite with a lock file beside the database.
//!
//! An unreachable, stopped or too slow database is one condition,
//! [`DbError::is_unavailable`]: callers answer 503 (or leave a message
//! unacknowledged); the change is logged once per outage, and the pools
//! reconnect by themselves.

mod error;
mod metrics;
mod settings;
mod statement;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus_client::registry::Registry;
use sqlx::{
    any::AnyPoolOptions, migrate::Migrator, pool::PoolConnectionMetadata, AnyConnection, AnyPool,
    AssertSqlSafe, Connection, Executor, Transaction,
};

use crate::config::ConfigError;

pub use error::DbError;
pub use metrics::DbOperationLabels;
pub use settings::{DatabaseSettings, DbSystem, DbTarget};
pub use statement::{Statement, TracedQuery};

use metrics::{DbMetrics, PoolGauges};

/// What the client waits beyond the statement budget, for a silent network.
const CLIENT_MARGIN: Duration = Duration::from_millis(500);

/// `COMMIT` of a transaction, traced like any statement.
pub const COMMIT: Statement = Statement {
    operation: "COMMIT",
    collection: "",
    text: "COMMIT",
};

/// A cloneable handle to the service's database.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    target: DbTarget,
    url: String,
    // SQLite has one writer at a time: writes go through one connection, so
    // that the process's own writers queue here instead of spinning on the
    // file lock. PostgreSQL: the same pool twice.
    writer: AnyPool,
    reader: AnyPool,
    // The statement budget plus a margin: PostgreSQL's own statement_timeout
    // (the budget) cancels a slow statement server-side; this one also
    // covers a silent network.
    client_timeout: Duration,
    available: AtomicBool,
    metrics: DbMetrics,
    pools: PoolGauges,
}

impl Database {
    /// Connects, creating a SQLite file (and its directory) if missing, and
    /// applies `migrations`. A database that cannot be reached or migrated is
    /// a configuration error naming `DATABASE_URL` (the service exits 2).
    pub async fn connect(
        settings: &DatabaseSettings,
        migrations: &Migrator,
    ) -> Result<Self, ConfigError> {
        sqlx::any::install_default_drivers();
        let unusable = |reason: String| ConfigError::Unusable {
            name: "DATABASE_URL",
            value: settings.url.to_string(),
            reason,
        };
        let (writer, reader) = match settings.target.system {
            DbSystem::Sqlite => open_sqlite(settings, migrations).await.map_err(unusable)?,
            DbSystem::Postgresql => open_postgres(settings, migrations)
                .await
                .map_err(unusable)?,
        };
        let pools = match settings.target.system {
            DbSystem::Sqlite => vec![
                ("write", writer.clone(), 1),
                ("read", reader.clone(), settings.max_connections),
            ],
            DbSystem::Postgresql => vec![("main", writer.clone(), settings.max_connections)],
        };
        tracing::info!(
            db.system.name = settings.target.system.as_str(),
            db.namespace = %settings.target.namespace,
            url = %settings.url,
            "database ready; migrations applied"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                target: settings.target.clone(),
                url: settings.url.to_string(),
                writer,
                reader,
                client_timeout: settings.timeout + CLIENT_MARGIN,
                available: AtomicBool::new(true),
                metrics: DbMetrics::new(),
                pools: PoolGauges { pools },
            }),
        })
    }

    /// The statement budget (`DATABASE_TIMEOUT_MS`).
    pub fn timeout(&self) -> Duration {
        self.inner.client_timeout - CLIENT_MARGIN
    }

    /// What the database is (for spans and logs).
    pub fn target(&self) -> &DbTarget {
        &self.inner.target
    }

    /// The pool for statements that write.
    pub fn writer(&self) -> &AnyPool {
        &self.inner.writer
    }

    /// The pool for statements that only read.
    pub fn reader(&self) -> &AnyPool {
        &self.inner.reader
    }

    /// Registers `db_client_operation_duration_seconds` and the pool gauges
    /// `db_client_connection_count` / `db_client_connection_max`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner
            .metrics
            .register(registry, self.inner.pools.clone());
    }

    /// Starts a write transaction (statements on `&mut *tx`; finish with
    /// [`commit`](Self::commit)).
    pub async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Any>, DbError> {
        let begun = tokio::time::timeout(self.inner.client_timeout, self.inner.writer.begin())
            .await
            .map_err(|_| DbError::Timeout(self.inner.client_timeout))
            .and_then(|r| r.map_err(DbError::from));
        if let Err(err) = &begun {
            self.observe_failure(err);
        }
        begun
    }

    /// Commits `tx` inside a `COMMIT` CLIENT span.
    pub async fn commit(&self, tx: Transaction<'static, sqlx::Any>) -> Result<(), DbError> {
        self.traced(&COMMIT, Vec::new(), tx.commit()).await
    }

    /// Whether the last statements found the database available.
    pub fn is_available(&self) -> bool {
        self.inner.available.load(Ordering::Acquire)
    }

    /// Asks the database whether it answers (within a second); for `/ready`.
    /// Not traced: probes are not the platform's traffic. A pool whose every
    /// connection is busy serving requests counts as up (a probe that waits
    /// behind the load proves nothing), unless the last statements failed.
    pub async fn ping(&self) -> bool {
        let timeout = Duration::from_secs(1).min(self.inner.client_timeout);
        let pool = &self.inner.reader;
        let mut connection = match tokio::time::timeout(timeout, pool.acquire()).await {
            Ok(Ok(connection)) => connection,
            Err(_) if pool.size() > 0 && pool.num_idle() == 0 => return self.is_available(),
            Ok(Err(err)) => {
                self.observe_failure(&DbError::from(err));
                return false;
            }
            Err(_) => {
                self.observe_failure(&DbError::Timeout(timeout));
                return false;
            }
        };
        match tokio::time::timeout(timeout, connection.ping()).await {
            Ok(Ok(())) => {
                self.observe_success();
                true
            }
            Ok(Err(err)) => {
                self.observe_failure(&DbError::from(err));
                false
            }
            Err(_) => {
                self.observe_failure(&DbError::Timeout(timeout));
                false
            }
        }
    }

    fn observe_success(&self) {
        if !self.inner.available.swap(true, Ordering::AcqRel) {
            tracing::info!(url = %self.inner.url, "database available again");
        }
    }

    fn observe_failure(&self, err: &DbError) {
        if err.is_unavailable() && self.inner.available.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                url = %self.inner.url,
                error = %err,
                "database unavailable; what needs it answers 503 until it is back (logged once per outage)"
            );
        }
    }
}

/// SQLite: the directory and file created if missing, WAL (readers never wait
/// for the writer), `synchronous=NORMAL` (durable across a crash of the
/// process; a power cut may lose the last commits: PostgreSQL is the choice
/// for that), a busy timeout as long as the statement budget.
async fn open_sqlite(
    settings: &DatabaseSettings,
    migrator: &Migrator,
) -> Result<(AnyPool, AnyPool), String> {
    let path = Path::new(&settings.target.namespace);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    }
    let given = settings.url.expose();
    let url = if given.contains("mode=") {
        given.to_string()
    } else if given.contains('?') {
        format!("{given}&mode=rwc")
    } else {
        format!("{given}?mode=rwc")
    };
    // A 1 MiB page cache per connection (SQLite's default is 2 MiB): the
    // OS caches the file too, and a cache per connection adds up.
    let pragmas = Arc::new(format!(
        "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -1024;",
        settings.timeout.as_millis()
    ));
    let options = |max: u32| {
        let pragmas = pragmas.clone();
        AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(settings.timeout)
            // A file does not go stale: skip the round trip per acquire.
            .test_before_acquire(false)
            .after_connect(move |conn: &mut AnyConnection, _: PoolConnectionMetadata| {
                let pragmas = pragmas.clone();
                Box::pin(async move {
                    conn.execute(AssertSqlSafe(pragmas.as_str()))
                        .await
                        .map(|_| ())
                })
            })
    };
    let writer = options(1)
        .connect(&url)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    {
        // Two processes starting on one file take turns (waiting off the
        // async thread).
        let lock_path = path.to_path_buf();
        let _lock = tokio::task::spawn_blocking(move || MigrationLock::acquire(&lock_path))
            .await
            .map_err(|e| format!("waiting for the migration lock: {e}"))??;
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&writer)
            .await
            .map_err(|e| format!("cannot switch {} to WAL: {e}", path.display()))?;
        migrator
            .run(&writer)
            .await
            .map_err(|e| format!("migrating {}: {e}", path.display()))?;
    }
    let reader = options(settings.max_connections)
        .connect(&url)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok((writer, reader))
}

/// PostgreSQL: one pool; each connection gets `statement_timeout` (the
/// server cancels a statement past the budget, so a write the client gave
/// up on cannot land later); connections are checked before use, so the
/// pool replaces the dead ones after a restart without failing a request.
async fn open_postgres(
    settings: &DatabaseSettings,
    migrator: &Migrator,
) -> Result<(AnyPool, AnyPool), String> {
    // One plain connection first: its error says what is wrong (refused,
    // authentication, no such database), where the pool would only time out.
    match tokio::time::timeout(
        settings.timeout,
        AnyConnection::connect(settings.url.expose()),
    )
    .await
    {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
        }
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => {
            return Err(format!(
                "no connection within {:?} (DATABASE_TIMEOUT_MS)",
                settings.timeout
            ))
        }
    }
    let statement_timeout = Arc::new(format!(
        "SET statement_timeout = {}",
        settings.timeout.as_millis()
    ));
    let pool = AnyPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.timeout)
        .after_connect(move |conn: &mut AnyConnection, _: PoolConnectionMetadata| {
            let statement_timeout = statement_timeout.clone();
            Box::pin(async move {
                conn.execute(AssertSqlSafe(statement_timeout.as_str()))
                    .await
                    .map(|_| ())
            })
        })
        .connect(settings.url.expose())
        .await
        .map_err(|e| e.to_string())?;
    // The migrator holds an advisory lock: replicas starting together wait.
    migrator
        .run(&pool)
        .await
        .map_err(|e| format!("migrating: {e}"))?;
    Ok((pool.clone(), pool))
}

/// An exclusive lock on `<database>.migrate-lock`, held while migrating.
struct MigrationLock(std::fs::File);

impl MigrationLock {
    fn acquire(database: &Path) -> Result<Self, String> {
        let mut name = database.as_os_str().to_owned();
        name.push(".migrate-lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)
            .map_err(|e| format!("cannot open the lock file {name:?}: {e}"))?;
        file.lock()
            .map_err(|e| format!("cannot lock {name:?}: {e}"))?;
        Ok(Self(file))
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
