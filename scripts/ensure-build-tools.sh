#!/usr/bin/env bash
# Installs what building the workspace needs beyond Rust: make, for jemalloc
# (the services' allocator, built from C by tikv-jemalloc-sys with its own
# configure and make). A C compiler is there already: Rust links with it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/provision.sh
. scripts/lib/provision.sh
ensure_installed make make
