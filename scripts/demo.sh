#!/usr/bin/env bash
# Local demo: a PostgreSQL 15 primary + 2 streaming replicas under ./.demo/ and switchyard in front.
#
#   scripts/demo.sh          install deps, build, start everything (idempotent), print how to connect
#   scripts/demo.sh stop     stop switchyard and the three servers (data is kept)
#   scripts/demo.sh status   show what is running
#   scripts/demo.sh clean    stop everything and delete ./.demo/
#
# Ports (override with env): DEMO_PRIMARY_PORT=15432 DEMO_REPLICA1_PORT=15433 DEMO_REPLICA2_PORT=15434
# DEMO_LISTEN=127.0.0.1:6432 DEMO_ADMIN=127.0.0.1:9930. Run as root, servers run as OS user postgres.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="${ROOT}/.demo"
PG_BIN="/usr/lib/postgresql/15/bin"
PRIMARY_PORT="${DEMO_PRIMARY_PORT:-15432}"
REPLICA_PORTS=("${DEMO_REPLICA1_PORT:-15433}" "${DEMO_REPLICA2_PORT:-15434}")
LISTEN="${DEMO_LISTEN:-127.0.0.1:6432}"
ADMIN="${DEMO_ADMIN:-127.0.0.1:9930}"
SU_PASSWORD="postgres-demo"
CONFIG="${DEMO}/switchyard.yaml"
PROXY_LOG="${DEMO}/switchyard.log"
PROXY_PID="${DEMO}/switchyard.pid"
BIN="${ROOT}/target/release/switchyard"

log() { printf 'demo: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a server-side command as the postgres OS user when we are root (PostgreSQL refuses root).
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Where the data dirs live: ./.demo/pg, unless we are root and user postgres cannot reach it
# (e.g. the checkout is under /root), then a directory under /var/tmp linked from ./.demo/pg.
data_root() {
    if [ -L "${DEMO}/pg" ] || [ -d "${DEMO}/pg" ]; then
        readlink -f "${DEMO}/pg"
        return
    fi
    mkdir -p "${DEMO}"
    if is_root; then
        mkdir -p "${DEMO}/pg"
        chown postgres:postgres "${DEMO}/pg"
        if ! runuser -u postgres -- test -w "${DEMO}/pg"; then
            rmdir "${DEMO}/pg"
            local alt="/var/tmp/switchyard-demo-$(echo "${ROOT}" | md5sum | cut -c1-8)"
            mkdir -p "${alt}"
            chown postgres:postgres "${alt}"
            ln -s "${alt}" "${DEMO}/pg"
            log "user postgres cannot write under ${DEMO}; data lives in ${alt}"
        fi
    else
        mkdir -p "${DEMO}/pg"
    fi
    readlink -f "${DEMO}/pg"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

psql_su() { # port db sql
    PGPASSWORD="${SU_PASSWORD}" PGCONNECT_TIMEOUT=5 /usr/bin/psql -X -A -t -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}

server_running() { # datadir
    [ -f "$1/postmaster.pid" ] && as_pg "${PG_BIN}/pg_ctl" status -D "$1" >/dev/null 2>&1
}

start_server() { # name datadir port
    local name="$1" data="$2" port="$3"
    if server_running "${data}"; then
        log "${name} already running on port ${port}"
        return
    fi
    port_in_use "${port}" && die "port ${port} for ${name} is taken; set DEMO_*_PORT"
    log "starting ${name} on port ${port}"
    if ! as_pg "${PG_BIN}/pg_ctl" start -w -t 60 -D "${data}" -l "${DATA}/${name}.log" >/dev/null; then
        tail -n 30 "${DATA}/${name}.log" >&2 || true
        die "${name} did not start"
    fi
}

init_primary() {
    local data="${DATA}/primary"
    log "initdb ${data}"
    local pwfile="${DATA}/pwfile"
    echo "${SU_PASSWORD}" >"${pwfile}"
    is_root && chown postgres:postgres "${pwfile}"
    as_pg "${PG_BIN}/initdb" -D "${data}" -A scram-sha-256 --auth-local=trust -U postgres \
        --pwfile="${pwfile}" -E UTF8 --locale=C --no-instructions >/dev/null
    rm -f "${pwfile}"
    cat >>"${data}/postgresql.conf" <<CONF

# --- switchyard demo ---
listen_addresses = '127.0.0.1'
port = ${PRIMARY_PORT}
unix_socket_directories = ''
cluster_name = 'primary'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
shared_buffers = 64MB
max_connections = 300
wal_receiver_status_interval = 1s
logging_collector = off
CONF
    cat >"${data}/pg_hba.conf" <<HBA
# switchyard demo
local all all trust
local replication all trust
host all md5user 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
HBA
    is_root && chown postgres:postgres "${data}/pg_hba.conf" "${data}/postgresql.conf"
    start_server primary "${data}" "${PRIMARY_PORT}"
    log "creating roles app, md5user and database app"
    psql_su "${PRIMARY_PORT}" postgres "CREATE ROLE app LOGIN PASSWORD 'app-secret'"
    psql_su "${PRIMARY_PORT}" postgres "CREATE DATABASE app OWNER app"
    psql_su "${PRIMARY_PORT}" postgres \
        "SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5-secret'"
}

init_replica() { # index (1 or 2)
    local name="replica$1" port="${REPLICA_PORTS[$(($1 - 1))]}"
    local data="${DATA}/${name}"
    log "pg_basebackup ${name}"
    (cd / && PGPASSWORD="${SU_PASSWORD}" PGAPPNAME="${name}" as_pg "${PG_BIN}/pg_basebackup" \
        -D "${data}" -R -X stream -C -S "${name}" -c fast \
        -h 127.0.0.1 -p "${PRIMARY_PORT}" -U postgres)
    printf "port = %s\ncluster_name = '%s'\n" "${port}" "${name}" >>"${data}/postgresql.conf"
}

wait_streaming() {
    local i
    for i in $(seq 1 600); do
        local n
        n="$(psql_su "${PRIMARY_PORT}" postgres \
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || echo 0)"
        [ "${n}" = "2" ] && { log "both replicas are streaming"; return; }
        sleep 0.1
    done
    die "replicas not streaming after 60 s; see ${DATA}/replica*.log"
}

write_config() {
    cat >"${CONFIG}" <<YAML
# switchyard demo config (written by scripts/demo.sh)
admin: { listen: "${ADMIN}" }
clusters:
  - name: main
    protocol: postgres
    listen: "${LISTEN}"
    servers:
      - { name: primary, address: "127.0.0.1:${PRIMARY_PORT}", role: primary }
      - { name: replica1, address: "127.0.0.1:${REPLICA_PORTS[0]}", role: replica }
      - { name: replica2, address: "127.0.0.1:${REPLICA_PORTS[1]}", role: replica }
    routing: { balance: round_robin, max_replica_lag: 10s, fallback: primary }
    monitor: { interval: 500ms, timeout: 2s, healthy_after: 1, unhealthy_after: 2, user: postgres, password: "${SU_PASSWORD}", database: postgres }
users:
  - { name: app, password: app-secret, auth: scram-sha-256, backend_user: app, backend_password: app-secret }
  - { name: mdapp, password: md5-secret, auth: md5, backend_user: md5user, backend_password: md5-secret }
  - { name: postgres, password: "${SU_PASSWORD}", auth: scram-sha-256, backend_user: postgres, backend_password: "${SU_PASSWORD}" }
YAML
}

proxy_running() { [ -f "${PROXY_PID}" ] && kill -0 "$(cat "${PROXY_PID}")" 2>/dev/null; }

stop_proxy() {
    if proxy_running; then
        local pid
        pid="$(cat "${PROXY_PID}")"
        log "stopping switchyard (pid ${pid})"
        kill -TERM "${pid}" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${pid}" 2>/dev/null || true
    fi
    rm -f "${PROXY_PID}"
}

start_proxy() {
    stop_proxy
    local port="${LISTEN##*:}"
    port_in_use "${port}" && die "proxy port ${port} is taken; set DEMO_LISTEN"
    log "starting switchyard on ${LISTEN} (admin ${ADMIN}), log ${PROXY_LOG}"
    RUST_LOG="${RUST_LOG:-switchyard=info}" nohup "${BIN}" --config "${CONFIG}" \
        </dev/null >>"${PROXY_LOG}" 2>&1 &
    echo $! >"${PROXY_PID}"
    for _ in $(seq 1 200); do
        proxy_running || { tail -n 30 "${PROXY_LOG}" >&2; die "switchyard exited"; }
        port_in_use "${port}" && return
        sleep 0.1
    done
    tail -n 30 "${PROXY_LOG}" >&2
    die "switchyard not listening on ${LISTEN} after 20 s"
}

stop_servers() {
    local name
    for name in replica1 replica2 primary; do
        if server_running "${DATA}/${name}"; then
            log "stopping ${name}"
            as_pg "${PG_BIN}/pg_ctl" stop -w -m fast -D "${DATA}/${name}" >/dev/null || true
        fi
    done
}

cmd_start() {
    "${ROOT}/scripts/install-deps.sh"
    log "cargo build --release"
    (cd "${ROOT}" && cargo build --release --bin switchyard)
    DATA="$(data_root)"
    cd /  # user postgres may not be allowed into the current directory
    if [ ! -f "${DATA}/primary/PG_VERSION" ]; then
        init_primary
    else
        start_server primary "${DATA}/primary" "${PRIMARY_PORT}"
    fi
    local i
    for i in 1 2; do
        [ -f "${DATA}/replica${i}/PG_VERSION" ] || init_replica "${i}"
        start_server "replica${i}" "${DATA}/replica${i}" "${REPLICA_PORTS[$((i - 1))]}"
    done
    wait_streaming
    write_config
    start_proxy
    cat <<EOF

switchyard is running (pid $(cat "${PROXY_PID}")).

  connect:   psql "postgresql://app:app-secret@${LISTEN}/app"
  md5 user:  psql "postgresql://mdapp:md5-secret@${LISTEN}/app"
  metrics:   curl http://${ADMIN}/metrics
  health:    curl http://${ADMIN}/health
  clusters:  curl http://${ADMIN}/api/clusters
  servers:   primary 127.0.0.1:${PRIMARY_PORT}, replicas 127.0.0.1:${REPLICA_PORTS[0]}, 127.0.0.1:${REPLICA_PORTS[1]}
             (superuser postgres / ${SU_PASSWORD})
  config:    ${CONFIG}
  logs:      ${PROXY_LOG}, ${DATA}/*.log
  stop:      scripts/demo.sh stop      (scripts/demo.sh clean also deletes .demo/)
EOF
}

cmd_stop() {
    stop_proxy
    if [ -e "${DEMO}/pg" ]; then
        DATA="$(readlink -f "${DEMO}/pg")"
        cd /
        stop_servers
    fi
    log "stopped"
}

cmd_status() {
    if proxy_running; then log "switchyard running (pid $(cat "${PROXY_PID}"))"; else log "switchyard not running"; fi
    [ -e "${DEMO}/pg" ] || { log "no demo data"; return; }
    DATA="$(readlink -f "${DEMO}/pg")"
    cd /
    local name
    for name in primary replica1 replica2; do
        if server_running "${DATA}/${name}"; then log "${name} running"; else log "${name} stopped"; fi
    done
}

cmd_clean() {
    cmd_stop
    if [ -L "${DEMO}/pg" ]; then
        rm -rf "$(readlink -f "${DEMO}/pg")"
    fi
    rm -rf "${DEMO}"
    log "removed ${DEMO}"
}

case "${1:-start}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    *) die "usage: $0 [start|stop|status|clean]" ;;
esac
