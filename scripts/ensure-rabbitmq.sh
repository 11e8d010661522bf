#!/usr/bin/env bash
# Makes the local RabbitMQ ready: installs it (apt, when run as root on
# Debian; otherwise prints the command and fails), starts it if it is not
# running, waits until it accepts connections, and enables its Prometheus
# plugin (port 15692, scraped by tests/tests/e2e/dashboards.rs).
set -euo pipefail
# shellcheck source=scripts/lib/provision.sh
. "$(dirname "$0")/lib/provision.sh"

ensure_installed rabbitmqctl rabbitmq-server

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
echo "RabbitMQ did not come up within 120 s (see /var/log/rabbitmq/)" >&2
exit 1
