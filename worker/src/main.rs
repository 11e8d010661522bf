//! worker: consumes the task queue with N consumer actors and reports results.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: shared::service::Allocator = shared::service::Allocator;

fn main() -> ExitCode {
    shared::service::run(
        "worker-service",
        env!("CARGO_PKG_VERSION"),
        worker::config::Config::from_env,
        worker::startup::run,
    )
}
