//! A database of the test's own, removed when dropped: a SQLite file in a
//! fresh directory, or a fresh PostgreSQL database on the local server
//! (created and dropped through `TEST_POSTGRES_URL`).

use std::path::PathBuf;

use sqlx::{postgres::PgConnection, Connection, Executor};

/// Where the tests reach PostgreSQL as a role that may create databases
/// (`scripts/ensure-postgres.sh` creates it).
pub fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| {
        "postgres://async_micro_test:async_micro_test@127.0.0.1:5432/postgres".to_string()
    })
}

/// Which database system a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A database for one test.
pub struct TestDatabase {
    kind: DbKind,
    url: String,
    name: String,
    dir: Option<PathBuf>,
}

impl TestDatabase {
    /// A fresh one of `kind`, named after `label`.
    pub async fn create(kind: DbKind, label: &str) -> Self {
        match kind {
            DbKind::Sqlite => Self::sqlite(label),
            DbKind::Postgres => Self::postgres(label).await,
        }
    }

    /// A SQLite file (not created yet: the service creates it) in a fresh
    /// directory under the target directory.
    pub fn sqlite(label: &str) -> Self {
        let name = unique(label);
        let dir = crate::platform::bin_dir().join("e2e-data").join(&name);
        std::fs::create_dir_all(&dir).expect("create the test's data directory");
        Self {
            kind: DbKind::Sqlite,
            url: format!("sqlite://{}/{label}.db", dir.display()),
            name,
            dir: Some(dir),
        }
    }

    /// A new PostgreSQL database.
    pub async fn postgres(label: &str) -> Self {
        let name = unique(label).replace('-', "_");
        let admin = admin_url();
        let mut connection = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {admin} ({e}): run scripts/ensure-postgres.sh, or set TEST_POSTGRES_URL"
            )
        });
        connection
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create the test database");
        let _ = connection.close().await;
        let mut url = url::Url::parse(&admin).expect("TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Self {
            kind: DbKind::Postgres,
            url: url.to_string(),
            name,
            dir: None,
        }
    }

    /// What it is.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Its `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `("DATABASE_URL", url)`, for a service's environment.
    pub fn env(&self) -> (String, String) {
        ("DATABASE_URL".to_string(), self.url.clone())
    }

    /// The database's name (PostgreSQL) or directory name (SQLite).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut connection) = PgConnection::connect(&admin_url()).await {
                    let _ = connection
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .await;
                    let _ = connection.close().await;
                }
            });
        })
        .join();
    }
}

fn unique(label: &str) -> String {
    format!(
        "e2e-{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A PostgreSQL server of the test's own (`initdb` into a fresh directory,
/// its own port), so that a test can stop and start it without touching the
/// shared server other tests use. Stopped and removed when dropped.
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    /// Initialises and starts a server; trust authentication on loopback.
    pub fn start(label: &str) -> Self {
        let bin = postgres_bin_dir();
        let dir = std::env::temp_dir().join(unique(label));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        if is_root() {
            // initdb refuses to run as root.
            run(std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir));
        }
        let server = Self {
            dir,
            port: crate::platform::free_port(),
            bin,
        };
        server.as_owner(&[
            server.bin.join("initdb").to_str().expect("utf-8 path"),
            "-D",
            server.data().to_str().expect("utf-8 path"),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        ]);
        server.start_again();
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database`.
    pub async fn create_database(&self, database: &str) {
        let mut connection = PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the private server");
        connection
            .execute(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE \"{database}\""
            )))
            .await
            .expect("create database");
        let _ = connection.close().await;
    }

    /// Stops the server the way `pg_ctl stop -m fast` does (a planned
    /// shutdown: clients are disconnected).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast", "-w"]);
    }

    /// Starts it again (after [`stop`](Self::stop)).
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.pg_ctl(&[
            "start",
            "-w",
            "-o",
            &options,
            "-l",
            log.to_str().expect("utf-8 path"),
        ]);
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) {
        run(&mut self.pg_ctl_command(args));
    }

    fn pg_ctl_command(&self, args: &[&str]) -> std::process::Command {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let mut command = vec![
            pg_ctl.to_str().expect("utf-8 path"),
            "-D",
            data.to_str().expect("utf-8 path"),
        ];
        command.extend_from_slice(args);
        self.owner_command(&command)
    }

    fn as_owner(&self, command: &[&str]) {
        run(&mut self.owner_command(command));
    }

    /// `command` run as the owner of the data directory (`postgres` when we
    /// are root).
    fn owner_command(&self, command: &[&str]) -> std::process::Command {
        let mut process = if is_root() {
            let mut p = std::process::Command::new("runuser");
            p.args(["-u", "postgres", "--"]).args(command);
            p
        } else {
            let mut p = std::process::Command::new(command[0]);
            p.args(&command[1..]);
            p
        };
        process.current_dir(&self.dir);
        process
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl_command(&["stop", "-m", "immediate", "-w"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's server binaries (`/usr/lib/postgresql/<version>/bin`), or
/// `TEST_POSTGRES_BIN`.
fn postgres_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TEST_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect(
        "no PostgreSQL server binaries under /usr/lib/postgresql: run scripts/ensure-postgres.sh (or set TEST_POSTGRES_BIN)",
    )
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(command: &mut std::process::Command) {
    let output = command.output().expect("run a PostgreSQL tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
