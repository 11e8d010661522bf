#!/usr/bin/env bash
# Makes sure `prometheus` and `promtool` are installed (the dashboards test
# runs a real Prometheus; check-deploy.sh runs promtool): apt when run as root
# on Debian, otherwise prints the command and fails. PROMETHEUS_BIN names
# another binary for the test.
set -euo pipefail
# shellcheck source=scripts/lib/provision.sh
. "$(dirname "$0")/lib/provision.sh"

if [ -n "${PROMETHEUS_BIN:-}" ] && [ -x "$PROMETHEUS_BIN" ]; then
  exit 0
fi
ensure_installed prometheus prometheus
ensure_installed promtool prometheus
