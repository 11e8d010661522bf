//! gateway: the public entry; proxies `/api/tasks*` to backend and
//! `/api/products*` to product.

use std::process::ExitCode;

// jemalloc, not glibc's malloc: 0.85x the gateway's CPU per proxied request
// for about 2 MiB more resident memory (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    shared::service::run(
        "gateway-service",
        env!("CARGO_PKG_VERSION"),
        gateway::config::Config::from_env,
        gateway::startup::run,
    )
}
