#!/usr/bin/env bash
# Installs what the Python examples need (examples/python/requirements.txt:
# pika and the OpenTelemetry API and SDK) for the interoperability tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if python3 -c "import pika, opentelemetry.sdk" >/dev/null 2>&1; then
  exit 0
fi
echo "installing the Python examples' dependencies (pip)..."
python3 -m pip install --quiet --disable-pip-version-check -r examples/python/requirements.txt
