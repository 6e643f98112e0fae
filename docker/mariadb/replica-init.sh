#!/usr/bin/env bash
# Runs once, from /docker-entrypoint-initdb.d/ of the official mariadb image, when a replica's data
# directory is first created: points the replica at the primary by GTID. Nothing here (nor in the
# image's own init, since MARIADB_DATABASE / MARIADB_USER are not set on replicas) is written to the
# replica's binary log, so its GTID history stays empty and, with gtid_strict_mode, it replays the
# primary's history from the first transaction (the app database and users included). The server
# that the image starts afterwards starts the replication threads by itself.
set -euo pipefail

: "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
PRIMARY_HOST="${PRIMARY_HOST:-mariadb-primary}"
PRIMARY_PORT="${PRIMARY_PORT:-3306}"
REPLICATION_USER="${REPLICATION_USER:-repl}"

sql_quote() {
    local s="${1//\\/\\\\}"
    printf "'%s'" "${s//\'/\\\'}"
}

case "${PRIMARY_PORT}" in
    '' | *[!0-9]*) echo "replica-init: PRIMARY_PORT must be a number" >&2; exit 1 ;;
esac

mariadb --protocol=socket -uroot --password="${MARIADB_ROOT_PASSWORD}" <<SQL
SET SESSION sql_log_bin = 0;
RESET MASTER;
CHANGE MASTER TO
  MASTER_HOST = $(sql_quote "${PRIMARY_HOST}"),
  MASTER_PORT = ${PRIMARY_PORT},
  MASTER_USER = $(sql_quote "${REPLICATION_USER}"),
  MASTER_PASSWORD = $(sql_quote "${REPLICATION_PASSWORD}"),
  MASTER_USE_GTID = slave_pos,
  MASTER_CONNECT_RETRY = 1;
SET GLOBAL gtid_slave_pos = '';
SQL
