#!/usr/bin/env bash
# Runs once, from /docker-entrypoint-initdb.d/ of the official postgres image, when the primary's
# data directory is first created: the replication, monitor and application roles, the `app`
# database, and a pg_hba.conf line for streaming replication. The replicas copy all of it (roles
# and pg_hba.conf live in the data directory) through pg_basebackup.
set -euo pipefail

: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
: "${MONITOR_PASSWORD:?MONITOR_PASSWORD must be set}"
: "${APP_PASSWORD:?APP_PASSWORD must be set}"

# psql variables (:'name') quote the passwords as SQL literals.
psql -v ON_ERROR_STOP=1 -X --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v repl_pw="${REPLICATION_PASSWORD}" -v mon_pw="${MONITOR_PASSWORD}" -v app_pw="${APP_PASSWORD}" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'repl_pw';
-- pg_monitor: read pg_stat_replication / pg_stat_wal_receiver in the switchyard probes.
CREATE ROLE switchyard_monitor WITH LOGIN PASSWORD :'mon_pw' IN ROLE pg_monitor;
CREATE ROLE app WITH LOGIN PASSWORD :'app_pw';
CREATE DATABASE app OWNER app;
SQL

# The image allows `host all all all scram-sha-256`; `all` does not cover replication connections.
echo "host replication replicator all scram-sha-256" >>"${PGDATA}/pg_hba.conf"
