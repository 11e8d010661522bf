//! gateway: the public entry; proxies `/api/tasks*` to backend and
//! `/api/products*` to product.

use std::process::ExitCode;

// jemalloc, not glibc's malloc: a proxied request allocates for both of its
// connections, and glibc's malloc was 27 % of the gateway's instructions;
// jemalloc takes 0.85x of them and of its CPU per request, for about 2 MiB
// more resident memory (BENCHMARKS.md).
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
