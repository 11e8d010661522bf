#!/usr/bin/env bash
# The release build, as the container images make it (Dockerfile): the four
# services on their own, so Cargo unifies their dependencies' features among
# themselves only (not with the load generator's HTTP client or the tests'),
# then the tools. Symbol names, and with them link-layout/*.order, depend on
# that feature set and on the toolchain (link-layout/mod.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p gateway -p backend -p product -p worker
cargo build --release --locked -p trace-view -p loadgen
