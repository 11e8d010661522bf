#!/usr/bin/env bash
# Starts the local RabbitMQ if it is installed and not running, waits until it
# accepts connections, and enables its Prometheus plugin (port 15692, scraped
# by tests/tests/dashboards.rs). Installing it is up to you (or .ci/run):
#   apt-get install -y rabbitmq-server
set -euo pipefail

if ! command -v rabbitmqctl >/dev/null 2>&1; then
  echo "RabbitMQ is not installed: apt-get install -y rabbitmq-server" >&2
  exit 1
fi
enable_prometheus_plugin() {
  rabbitmq-plugins -q enable rabbitmq_prometheus >/dev/null
}

if rabbitmqctl -q status >/dev/null 2>&1; then
  enable_prometheus_plugin
  exit 0
fi
echo "starting RabbitMQ..."
rabbitmq-server -detached
for _ in $(seq 1 120); do
  if rabbitmqctl -q status >/dev/null 2>&1; then
    rabbitmqctl -q await_startup >/dev/null 2>&1 || true
    enable_prometheus_plugin
    echo "RabbitMQ is up"
    exit 0
  fi
  sleep 1
done
echo "RabbitMQ did not come up within 120 s" >&2
exit 1
