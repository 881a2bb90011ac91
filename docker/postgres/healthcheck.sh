#!/usr/bin/env bash
# Healthy means a query succeeds over TCP as the configured user in the configured database:
# the server is up, listens, and the entrypoint has applied POSTGRES_USER/PASSWORD/DB.
set -euo pipefail
user="${POSTGRES_USER:-postgres}"
PGPASSWORD="${POSTGRES_PASSWORD:-}" PGCONNECT_TIMEOUT=2 exec psql --no-psqlrc --no-password --quiet \
  --host=127.0.0.1 --port="${PGPORT:-5432}" --username="${user}" --dbname="${POSTGRES_DB:-${user}}" \
  --tuples-only --command='SELECT 1' >/dev/null
