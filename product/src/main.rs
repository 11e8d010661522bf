//! product: serves the product catalog.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: shared::service::Allocator = shared::service::Allocator;

fn main() -> ExitCode {
    shared::service::run(
        "product-service",
        env!("CARGO_PKG_VERSION"),
        product::config::Config::from_env,
        product::startup::run,
    )
}
