#!/usr/bin/env bash
# Install (Debian) and start a local PostgreSQL on loopback with a `wave` role, for the sweep
# storage tests. Prints the SQLAlchemy URL to export as WAVE_LIGHTNING_TEST_POSTGRES_URL.
set -euo pipefail
if ! ls -d /etc/postgresql/*/main >/dev/null 2>&1; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version=$(ls /etc/postgresql | sort -n | tail -1)
pg_ctlcluster "$version" main start >&2 2>/dev/null || pg_ctlcluster "$version" main status >/dev/null
for _ in $(seq 30); do su postgres -c "pg_isready -q -h 127.0.0.1" && break; sleep 1; done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='wave'\"" | grep -q 1 ||
  su postgres -c "psql -q -c \"CREATE ROLE wave LOGIN SUPERUSER PASSWORD 'wave'\"" >&2
echo "postgresql+psycopg2://wave:wave@127.0.0.1:5432/postgres"
