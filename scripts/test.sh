#!/usr/bin/env bash
# Runs the whole test suite: unit tests of every crate and the end-to-end
# tests, which start the four services as processes against the local
# RabbitMQ (started here if needed) and an in-process OTLP receiver.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-rabbitmq.sh
# Build once: the service binaries the e2e tests run, and every test binary.
cargo build --workspace --bins --tests
cargo test --workspace
