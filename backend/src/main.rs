//! backend: accepts tasks, owns their status, publishes them to RabbitMQ.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: shared::service::Allocator = shared::service::Allocator;

fn main() -> ExitCode {
    shared::service::run(
        "backend-service",
        env!("CARGO_PKG_VERSION"),
        backend::config::Config::from_env,
        backend::startup::run,
    )
}
