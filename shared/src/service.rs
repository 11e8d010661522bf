//! The start-up sequence every service binary shares: telemetry, config, the
//! actix system, and the span flush after it stops.

use std::{future::Future, process::ExitCode};

use crate::{
    config::{ConfigError, ServiceConfig},
    telemetry,
};

/// The allocator every service binary installs as its `#[global_allocator]`:
/// jemalloc instead of glibc's malloc.
///
/// Allocation was about a quarter of a service's instructions under glibc
/// (a request or task allocates for its connections, its JSON and its
/// spans); with jemalloc a request or task takes 0.84-0.94x of them, and
/// the gateway's 0.85x. Its options are compiled in from
/// `.cargo/config.toml` (`JEMALLOC_SYS_WITH_MALLOC_CONF`): one arena, and a
/// background thread that returns pages freed for a second to the system,
/// so a service gives back what a burst of load took. The four services
/// then hold 0.95x of their memory after load, and about 1.7 MiB more each
/// at idle (BENCHMARKS.md). `_RJEM_MALLOC_CONF` overrides the options at
/// run time.
pub use tikv_jemallocator::Jemalloc as Allocator;

/// Why a service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Configuration that cannot be used, found while starting (e.g. a
    /// database that cannot be reached): exit code 2, as for a bad variable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server failed: exit code 1.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs a service: sets up telemetry for `default_service_name`, loads its
/// configuration, runs `start` on a fresh actix system until it returns (the
/// HTTP server stops on SIGTERM/SIGINT), then flushes spans outside the
/// runtime. Exit code 0 on a clean stop, 1 on a runtime error, 2 on bad
/// configuration (read from the environment or found unusable at start).
pub fn run<C, F, Fut>(
    default_service_name: &str,
    version: &str,
    load_config: impl FnOnce() -> Result<C, ConfigError>,
    start: F,
) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    // `<binary> --healthcheck`: probe our own /health on the configured port
    // (container images without curl or a shell use this as HEALTHCHECK).
    if std::env::args().nth(1).as_deref() == Some("--healthcheck") {
        return match load_config() {
            Ok(config) => healthcheck(config.port()),
            Err(err) => {
                eprintln!("healthcheck: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let telemetry = match telemetry::init(default_service_name, version) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("{default_service_name}: cannot start telemetry: {err}");
            return ExitCode::from(2);
        }
    };
    let config = match load_config() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "invalid configuration");
            telemetry.shutdown();
            return ExitCode::from(2);
        }
    };
    let outcome = actix::System::new().block_on(start(config));
    let code = match outcome {
        Ok(()) => {
            tracing::info!("stopped; flushing spans");
            ExitCode::SUCCESS
        }
        Err(ServiceError::Config(err)) => {
            tracing::error!(error = %err, "invalid configuration");
            ExitCode::from(2)
        }
        Err(ServiceError::Io(err)) => {
            tracing::error!(error = %err, "stopped with an error");
            ExitCode::FAILURE
        }
    };
    // Outside the actix runtime: the flush may block until the exporter is done.
    telemetry.shutdown();
    code
}

/// An HTTP server bound to its port and not yet serving: what each
/// service's `Application` holds between `build` and `run_until_stopped`.
pub struct BoundServer {
    port: u16,
    server: actix_web::dev::Server,
}

impl BoundServer {
    /// Binds all interfaces on `port` (0 picks a free one) and hands the
    /// listener to `build`, which builds the server on it (an `HttpServer`
    /// with `disable_signals()`, then `.listen(listener)?.run()`).
    pub fn bind(
        port: u16,
        build: impl FnOnce(std::net::TcpListener) -> std::io::Result<actix_web::dev::Server>,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            port,
            server: build(listener)?,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops gracefully: no new
    /// connections, in-flight requests finish (within the server's
    /// `shutdown_timeout`). `on_shutdown` runs as soon as `shutdown` resolves
    /// (the worker stops taking tasks then, not after the HTTP server
    /// drained). The binaries pass [`shutdown_signal`]; tests pass a channel.
    pub async fn serve_until(
        self,
        shutdown: impl Future<Output = ()> + 'static,
        on_shutdown: impl FnOnce() + 'static,
    ) -> Result<(), ServiceError> {
        let handle = self.server.handle();
        actix::spawn(async move {
            shutdown.await;
            on_shutdown();
            handle.stop(true).await;
        });
        self.server.await?;
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT, logging which; a second signal afterwards
/// exits the process at once (code 130). actix-server's own handling treats
/// SIGINT as a forced stop, which would cut requests off, so the services
/// build their servers with `disable_signals()` and stop on this instead.
pub async fn shutdown_signal() {
    let signal = wait_for_signal().await;
    tracing::info!(
        signal,
        "shutdown requested; finishing in-flight work (again to force)"
    );
    actix::spawn(async {
        let signal = wait_for_signal().await;
        tracing::warn!(signal, "second signal: exiting now");
        std::process::exit(130);
    });
}

/// Waits for SIGTERM or SIGINT and names it.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the service");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// `GET http://127.0.0.1:<port>/health` with a 2 s budget: exit 0 on a 200.
fn healthcheck(port: u16) -> ExitCode {
    use std::{
        io::{Read, Write},
        net::{SocketAddr, TcpStream},
        time::Duration,
    };
    let timeout = Duration::from_secs(2);
    let probe = || -> std::io::Result<bool> {
        let mut stream =
            TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.starts_with("HTTP/1.1 200"))
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("healthcheck: {err}");
            ExitCode::FAILURE
        }
    }
}
