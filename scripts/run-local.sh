#!/usr/bin/env bash
# Runs the whole platform on this machine: makes sure RabbitMQ is installed
# and running, builds the services (release), starts the four of them and
# prints where each listens once every one answers /health. A service that
# does not come up is reported with the end of its log, and the script stops
# the others and exits non-zero. Ctrl-C stops them all.
#
# State: backend and product keep SQLite files under data/ (DATABASE_URL
# overrides). Traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set (a
# Jaeger, a collector). Otherwise, if nothing listens on localhost:4317, the
# terminal trace viewer (trace-view) is started there and prints every trace
# as a tree into .local/traces.txt (tail -f it); a Jaeger already listening
# there (compose/docker-compose.dev.yml) is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-rabbitmq.sh
scripts/ensure-build-tools.sh
scripts/build-release.sh
# Where cargo put the binaries: honours CARGO_TARGET_DIR and .cargo/config.
target_dir=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release"

logs=".local/logs"
mkdir -p "$logs"
names=()
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
    "$@" "$bin/$name" >"$logs/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
}

# wait_healthy NAME PID PORT: 0 once /health answers; otherwise reports why.
wait_healthy() {
  local name=$1 pid=$2 port=$3
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited during start-up; the end of $logs/$name.log:" >&2
      tail -n 20 "$logs/$name.log" >&2
      return 1
    fi
    curl -sf "http://localhost:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$name did not answer http://localhost:$port/health within 30 s; the end of $logs/$name.log:" >&2
  tail -n 20 "$logs/$name.log" >&2
  return 1
}

# Traces: to the endpoint given, to whatever listens on 4317 already, or to
# a trace-view started here.
traces="OTLP to ${OTEL_EXPORTER_OTLP_ENDPOINT:-http://localhost:4317}"
if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/4317) 2>/dev/null; then
  : >.local/traces.txt
  "$bin/trace-view" --color never >.local/traces.txt 2>"$logs/trace-view.log" &
  pids+=("$!")
  names+=("trace-view")
  for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/4317) 2>/dev/null && break
    sleep 0.1
  done
  # Spans leave every half second instead of every 5 s, so a trace is
  # printed moments after it ends.
  export OTEL_BSP_SCHEDULE_DELAY="${OTEL_BSP_SCHEDULE_DELAY:-500}"
  traces="trace-view prints each trace as a tree: tail -f .local/traces.txt"
fi

gateway_port=${GATEWAY_PORT:-3000}
backend_port=${BACKEND_PORT:-8000}
product_port=${PRODUCT_PORT:-8001}
worker_port=${WORKER_PORT:-8002}
start backend PORT="$backend_port"
start product PORT="$product_port"
start worker PORT="$worker_port"
start gateway PORT="$gateway_port" \
  BACKEND_URL="http://localhost:$backend_port" \
  PRODUCT_URL="http://localhost:$product_port"

failed=0
for i in "${!names[@]}"; do
  case ${names[$i]} in
    backend) port=$backend_port ;;
    product) port=$product_port ;;
    worker) port=$worker_port ;;
    gateway) port=$gateway_port ;;
    *) continue ;;
  esac
  wait_healthy "${names[$i]}" "${pids[$i]}" "$port" || failed=1
done
if [ "$failed" -ne 0 ]; then
  echo "async-micro did not start (logs in $logs/)" >&2
  exit 1
fi

cat <<MSG
async-micro is running (logs in $logs/, state in data/):
  gateway  http://localhost:$gateway_port   <- send requests here
  backend  http://localhost:$backend_port
  product  http://localhost:$product_port
  worker   http://localhost:$worker_port   (health, readiness, metrics)
  traces   $traces
Try: curl -s -XPOST localhost:$gateway_port/api/tasks -H 'content-type: application/json' -d '{"type":"hash","payload":{"data":"hi","rounds":1000}}'
Ctrl-C stops everything.
MSG
# Until Ctrl-C, or until a service dies.
set +e
wait -n "${pids[@]}"
echo "a service exited; see $logs/" >&2
exit 1
