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

url=${TEST_POSTGRES_URL:-postgres://async_micro_test:async_micro_test@127.0.0.1:5432/postgres}
if psql "$url" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  cat >&2 <<MSG
PostgreSQL does not accept the tests' login ($url). As root, run
  scripts/ensure-postgres.sh
or by hand:
  sudo pg_ctlcluster <version> main start
  sudo -u postgres psql -c "CREATE ROLE async_micro_test LOGIN PASSWORD 'async_micro_test' CREATEDB"
MSG
  exit 1
fi

as_postgres() {
  runuser -u postgres -- "$@"
}

# The cluster on the port the tests use (5432), else the first one.
version=$(pg_lsclusters -h | awk '$3 == 5432 { print $1; found = 1; exit } END { }')
[ -n "$version" ] || version=$(pg_lsclusters -h | awk 'NR == 1 { print $1 }')
if [ -z "$version" ]; then
  echo "PostgreSQL is installed but has no cluster: pg_createcluster --start <version> main" >&2
  exit 1
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online" { found = 1 } END { exit !found }'; then
  echo "starting PostgreSQL $version..."
  pg_ctlcluster "$version" main start
fi
ready=0
for _ in $(seq 1 60); do
  if as_postgres psql -qAtc 'SELECT 1' >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
if [ "$ready" -ne 1 ]; then
  echo "PostgreSQL $version did not accept connections within 30 s (see /var/log/postgresql/)" >&2
  exit 1
fi
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
