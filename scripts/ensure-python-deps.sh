#!/usr/bin/env bash
# Installs the Python the tests run: what the examples need
# (examples/python/requirements.txt: pika, the OpenTelemetry API and SDK) for
# the interoperability tests, and schemathesis (tests/requirements.txt) for
# the API contract test.
set -euo pipefail
cd "$(dirname "$0")/.."
schemathesis=$(sed -n 's/^schemathesis==//p' tests/requirements.txt)
if python3 -c "import pika, opentelemetry.sdk" >/dev/null 2>&1 \
  && [ "$(st --version 2>/dev/null)" = "st, version $schemathesis" ]; then
  exit 0
fi
echo "installing the Python dependencies of the tests (pip)..."
python3 -m pip install --quiet --disable-pip-version-check \
  -r examples/python/requirements.txt -r tests/requirements.txt
