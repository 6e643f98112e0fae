#!/usr/bin/env bash
# Healthcheck of a MariaDB replica of docker/compose.yaml: the server answers and either both
# replication threads run, or it has no replication configured and is writable (a replica that
# Switchyard promoted: STOP SLAVE, RESET SLAVE ALL, read_only = 0).
set -euo pipefail

q() {
    mariadb --protocol=tcp -h127.0.0.1 -uroot --password="${MARIADB_ROOT_PASSWORD}" \
        --connect-timeout=3 "$@"
}

status="$(q -E -e 'SHOW SLAVE STATUS')"  # vertical: "Slave_IO_Running: Yes" lines
if [ -z "${status}" ]; then
    [ "$(q -N -B -e 'SELECT @@read_only')" = "0" ]
    exit
fi
running="$(printf '%s\n' "${status}" | grep -Ec '^ *Slave_(IO|SQL)_Running: Yes$' || true)"
[ "${running}" = "2" ]
