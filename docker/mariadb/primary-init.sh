#!/usr/bin/env bash
# Runs once, from /docker-entrypoint-initdb.d/ of the official mariadb image, when the primary's
# data directory is first created (after MARIADB_DATABASE / MARIADB_USER made `app`): the
# replication and monitor logins. Written to the binary log on purpose, so the replicas, which
# replay the primary's GTID history from the start, get the same users (a promoted replica needs
# them too).
set -euo pipefail

: "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
: "${MONITOR_PASSWORD:?MONITOR_PASSWORD must be set}"

# SQL string literal: backslashes and quotes escaped.
sql_quote() {
    local s="${1//\\/\\\\}"
    printf "'%s'" "${s//\'/\\\'}"
}

# The image's temporary init server listens on the default socket only (no networking).
mariadb --protocol=socket -uroot --password="${MARIADB_ROOT_PASSWORD}" <<SQL
CREATE USER 'repl'@'%' IDENTIFIED BY $(sql_quote "${REPLICATION_PASSWORD}");
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE USER 'monitor'@'%' IDENTIFIED BY $(sql_quote "${MONITOR_PASSWORD}");
GRANT SLAVE MONITOR, BINLOG MONITOR, REPLICATION CLIENT ON *.* TO 'monitor'@'%';
SQL
