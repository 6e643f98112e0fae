#!/usr/bin/env bash
# Entrypoint of a PostgreSQL streaming replica on the official postgres image. On first start (no
# PG_VERSION in $PGDATA) it waits for the primary, clones it with
#   pg_basebackup -R -X stream -C -S <slot>
# (-R writes primary_conninfo and standby.signal; -C -S creates and uses a physical replication
# slot named after the replica), then hands over to the image's own docker-entrypoint.sh, which
# sees an initialised data directory and starts postgres as a hot standby.
#
# Environment: PRIMARY_HOST (default pg-primary), PRIMARY_PORT (5432), REPLICATION_USER
# (replicator), REPLICATION_PASSWORD (required), REPLICA_NAME (slot and application_name,
# default the container hostname), PGDATA (set by the image).
set -euo pipefail

PRIMARY_HOST="${PRIMARY_HOST:-pg-primary}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICATION_USER="${REPLICATION_USER:-replicator}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
: "${PGDATA:?PGDATA must be set}"
REPLICA_NAME="${REPLICA_NAME:-$(hostname)}"
# Slot names: lower-case letters, digits and underscores only.
SLOT="$(printf '%s' "${REPLICA_NAME,,}" | tr -c 'a-z0-9_' '_')"

log() { printf 'replica-entrypoint: %s\n' "$*" >&2; }

# Run as the postgres OS user (the image starts us as root; PostgreSQL refuses root).
as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        gosu postgres "$@"
    else
        "$@"
    fi
}

if [ ! -s "${PGDATA}/PG_VERSION" ]; then
    mkdir -p "${PGDATA}"
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "${PGDATA}"
    fi
    chmod 0700 "${PGDATA}"

    export PGPASSWORD="${REPLICATION_PASSWORD}" PGCONNECT_TIMEOUT=5
    log "waiting for the primary ${PRIMARY_HOST}:${PRIMARY_PORT}"
    for i in $(seq 1 120); do
        if pg_isready -q -h "${PRIMARY_HOST}" -p "${PRIMARY_PORT}" -U "${REPLICATION_USER}" -d postgres; then
            break
        fi
        [ "${i}" -eq 120 ] && { log "primary not ready after 120 s"; exit 1; }
        sleep 1
    done

    # Re-creating a replica whose slot survived on the primary: reuse the slot instead of -C.
    slot_args=(-C -S "${SLOT}")
    exists="$(psql -X -A -t -q -h "${PRIMARY_HOST}" -p "${PRIMARY_PORT}" -U "${REPLICATION_USER}" -d postgres \
        -v slot="${SLOT}" <<<"SELECT count(*) FROM pg_replication_slots WHERE slot_name = :'slot';" || echo 0)"
    if [ "${exists}" = "1" ]; then
        log "replication slot ${SLOT} already exists on the primary: reusing it"
        slot_args=(-S "${SLOT}")
    fi

    log "pg_basebackup from ${PRIMARY_HOST}:${PRIMARY_PORT} into ${PGDATA} (slot ${SLOT})"
    # cd /: the postgres user may not be allowed into the current directory.
    (cd / && PGAPPNAME="${REPLICA_NAME}" as_postgres pg_basebackup -h "${PRIMARY_HOST}" -p "${PRIMARY_PORT}" \
        -U "${REPLICATION_USER}" -D "${PGDATA}" -R -X stream "${slot_args[@]}" -c fast --no-password) || {
        log "pg_basebackup failed; clearing ${PGDATA} so the next start retries"
        find "${PGDATA}" -mindepth 1 -delete
        exit 1
    }
    unset PGPASSWORD
    log "base backup done; starting as a hot standby"
fi

exec docker-entrypoint.sh "$@"
