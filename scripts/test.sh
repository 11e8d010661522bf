#!/usr/bin/env bash
# Runs the whole test suite: unit tests of every crate and the end-to-end
# tests (one binary): the HTTP API with the services built in process, and
# the four services as processes against the local RabbitMQ and PostgreSQL,
# a real Prometheus and an in-process OTLP receiver.
# Provisions what they need first (installs with apt when run as root on
# Debian; otherwise says what to install).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-build-tools.sh
scripts/ensure-rabbitmq.sh
scripts/ensure-postgres.sh
scripts/ensure-prometheus.sh
scripts/ensure-python-deps.sh
# Build once: the service binaries the e2e tests run, and every test binary.
cargo build --workspace --bins --tests

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
