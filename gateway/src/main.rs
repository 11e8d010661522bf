//! gateway: the public entry; proxies `/api/tasks*` to backend and
//! `/api/products*` to product.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: shared::service::Allocator = shared::service::Allocator;

fn main() -> ExitCode {
    shared::service::run(
        "gateway-service",
        env!("CARGO_PKG_VERSION"),
        gateway::config::Config::from_env,
        gateway::startup::run,
    )
}
