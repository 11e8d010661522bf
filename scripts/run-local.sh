#!/usr/bin/env bash
# Runs the whole platform on this machine: starts RabbitMQ if it is installed
# and not running, builds the services (release), starts the four of them and
# prints where each listens. Ctrl-C stops them all.
#
# Traces go to OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4317),
# e.g. a Jaeger started with compose/docker-compose.dev.yml.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-rabbitmq.sh
cargo build --release --workspace --bins

logs=".local/logs"
mkdir -p "$logs"
pids=()
cleanup() {
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() {
  local name=$1; shift
  # job=<service.name>: Grafana's trace-to-metrics links (compose/grafana).
  env OTEL_RESOURCE_ATTRIBUTES="job=$name-service${OTEL_RESOURCE_ATTRIBUTES:+,$OTEL_RESOURCE_ATTRIBUTES}" \
    "$@" "target/release/$name" >"$logs/$name.log" 2>&1 &
  pids+=("$!")
}

start backend PORT="${BACKEND_PORT:-8000}"
start product PORT="${PRODUCT_PORT:-8001}"
start worker PORT="${WORKER_PORT:-8002}"
start gateway PORT="${GATEWAY_PORT:-3000}" \
  BACKEND_URL="http://localhost:${BACKEND_PORT:-8000}" \
  PRODUCT_URL="http://localhost:${PRODUCT_PORT:-8001}"

for port in "${GATEWAY_PORT:-3000}" "${BACKEND_PORT:-8000}" "${PRODUCT_PORT:-8001}" "${WORKER_PORT:-8002}"; do
  for _ in $(seq 1 100); do
    curl -sf "http://localhost:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

cat <<MSG
async-micro is running (logs in $logs/):
  gateway  http://localhost:${GATEWAY_PORT:-3000}   <- send requests here
  backend  http://localhost:${BACKEND_PORT:-8000}
  product  http://localhost:${PRODUCT_PORT:-8001}
  worker   http://localhost:${WORKER_PORT:-8002}   (health, readiness, metrics)
  traces   OTLP to ${OTEL_EXPORTER_OTLP_ENDPOINT:-http://localhost:4317}
Try: curl -s -XPOST localhost:${GATEWAY_PORT:-3000}/api/tasks -H 'content-type: application/json' -d '{"type":"hash","payload":{"data":"hi","rounds":1000}}'
Ctrl-C stops everything.
MSG
wait
