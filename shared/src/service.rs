//! The start-up sequence every service binary shares: telemetry, config, the
//! actix system, and the span flush after it stops.

use std::{future::Future, process::ExitCode};

use crate::{config::ConfigError, telemetry};

/// Runs a service: sets up telemetry for `default_service_name`, loads its
/// configuration, runs `start` on a fresh actix system until it returns (the
/// HTTP server stops on SIGTERM/SIGINT), then flushes spans outside the
/// runtime. Exit code 0 on a clean stop, 1 on a runtime error, 2 on bad
/// configuration.
pub fn run<C, F, Fut>(
    default_service_name: &str,
    version: &str,
    load_config: impl FnOnce() -> Result<C, ConfigError>,
    start: F,
) -> ExitCode
where
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
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
        Err(err) => {
            tracing::error!(error = %err, "stopped with an error");
            ExitCode::FAILURE
        }
    };
    // Outside the actix runtime: the flush may block until the exporter is done.
    telemetry.shutdown();
    code
}
