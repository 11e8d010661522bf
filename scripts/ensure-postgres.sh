#!/usr/bin/env bash
# Makes the local PostgreSQL ready for the tests: installs it (apt, when run
# as root on Debian), starts its cluster if it is down, and creates the role
# the tests log in as (async_micro_test, password async_micro_test, allowed to
# create databases: each test makes its own and drops it). The tests reach it
# at TEST_POSTGRES_URL (default
# postgres://async_micro_test:async_micro_test@127.0.0.1:5432/postgres).
set -euo pipefail
# shellcheck source=scripts/lib/provision.sh
. "$(dirname "$0")/lib/provision.sh"

ensure_installed pg_ctlcluster postgresql

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

version=$(pg_lsclusters -h | awk 'NR == 1 { print $1 }')
if [ -z "$version" ]; then
  echo "PostgreSQL is installed but has no cluster: pg_createcluster --start <version> main" >&2
  exit 1
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online" { found = 1 } END { exit !found }'; then
  echo "starting PostgreSQL $version..."
  pg_ctlcluster "$version" main start
fi
for _ in $(seq 1 60); do
  as_postgres psql -qAtc 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.5
done
as_postgres psql -qAt -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'async_micro_test') THEN
    CREATE ROLE async_micro_test LOGIN PASSWORD 'async_micro_test' CREATEDB;
  END IF;
END
$$;
SQL
echo "PostgreSQL $version is up (tests log in as async_micro_test)"
