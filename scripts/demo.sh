#!/usr/bin/env bash
# Local demo under ./.demo/: a PostgreSQL 15 primary + 2 streaming replicas, a MariaDB primary +
# 2 GTID replicas, and switchyard in front of both (cluster `main` for PostgreSQL, `mysql` for MariaDB).
#
#   scripts/demo.sh          install deps, build, start everything (idempotent), print how to connect
#   scripts/demo.sh stop     stop switchyard and the six servers (data is kept)
#   scripts/demo.sh status   show what is running
#   scripts/demo.sh clean    stop everything and delete ./.demo/
#
# Ports (override with env): DEMO_PRIMARY_PORT=15432 DEMO_REPLICA1_PORT=15433 DEMO_REPLICA2_PORT=15434
# DEMO_LISTEN=127.0.0.1:6432 DEMO_MYSQL_PRIMARY_PORT=13306 DEMO_MYSQL_REPLICA1_PORT=13307
# DEMO_MYSQL_REPLICA2_PORT=13308 DEMO_MYSQL_LISTEN=127.0.0.1:6033 DEMO_ADMIN=127.0.0.1:9930.
# DEMO_BIN=/path/to/switchyard uses that binary instead of `cargo build --release`.
# Run as root: PostgreSQL runs as OS user postgres, MariaDB as OS user mysql.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="${ROOT}/.demo"
PG_BIN="/usr/lib/postgresql/15/bin"
PRIMARY_PORT="${DEMO_PRIMARY_PORT:-15432}"
REPLICA_PORTS=("${DEMO_REPLICA1_PORT:-15433}" "${DEMO_REPLICA2_PORT:-15434}")
LISTEN="${DEMO_LISTEN:-127.0.0.1:6432}"
ADMIN="${DEMO_ADMIN:-127.0.0.1:9930}"
SU_PASSWORD="postgres-demo"
MYSQL_PRIMARY_PORT="${DEMO_MYSQL_PRIMARY_PORT:-13306}"
MYSQL_REPLICA_PORTS=("${DEMO_MYSQL_REPLICA1_PORT:-13307}" "${DEMO_MYSQL_REPLICA2_PORT:-13308}")
MYSQL_LISTEN="${DEMO_MYSQL_LISTEN:-127.0.0.1:6033}"
MYSQL_ROOT_PASSWORD="root-demo"
MARIADBD="/usr/sbin/mariadbd"
CONFIG="${DEMO}/switchyard.yaml"
PROXY_LOG="${DEMO}/switchyard.log"
PROXY_PID="${DEMO}/switchyard.pid"
BIN="${DEMO_BIN:-${ROOT}/target/release/switchyard}"

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

# data_root SUBDIR OWNER: where the data dirs live: ./.demo/SUBDIR, unless we are root and the OS
# user OWNER cannot reach it (e.g. the checkout is under /root), then a directory under /var/tmp
# linked from ./.demo/SUBDIR.
data_root() {
    local sub="$1" owner="$2"
    local link="${DEMO}/${sub}"
    if [ -L "${link}" ] || [ -d "${link}" ]; then
        readlink -f "${link}"
        return
    fi
    mkdir -p "${DEMO}"
    if is_root; then
        mkdir -p "${link}"
        chown "${owner}:${owner}" "${link}"
        if ! runuser -u "${owner}" -- test -w "${link}"; then
            rmdir "${link}"
            local alt suffix=""
            [ "${sub}" = pg ] || suffix="-${sub}"
            alt="/var/tmp/switchyard-demo-$(echo "${ROOT}" | md5sum | cut -c1-8)${suffix}"
            mkdir -p "${alt}"
            chown "${owner}:${owner}" "${alt}"
            ln -s "${alt}" "${link}"
            log "user ${owner} cannot write under ${DEMO}; data lives in ${alt}"
        fi
    else
        mkdir -p "${link}"
    fi
    readlink -f "${link}"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

psql_su() { # port db sql
    PGPASSWORD="${SU_PASSWORD}" PGCONNECT_TIMEOUT=5 /usr/bin/psql -X -A -t -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}

server_running() { # datadir
    [ -f "$1/postmaster.pid" ] && as_pg "${PG_BIN}/pg_ctl" status -D "$1" >/dev/null 2>&1
}

# short_path PATH: PATH when it fits a Unix-domain socket address (107 bytes) and has no
# characters a config line or a pg_ctl option would need quoted; else nothing.
short_path() {
    if [ "${#1}" -le 107 ] && [[ "$1" =~ ^[A-Za-z0-9/._-]+$ ]]; then echo "$1"; fi
}

start_server() { # name datadir port
    local name="$1" data="$2" port="$3"
    if server_running "${data}"; then
        log "${name} already running on port ${port}"
        return
    fi
    port_in_use "${port}" && die "port ${port} for ${name} is taken; set DEMO_*_PORT"
    log "starting ${name} on port ${port}"
    # Its Unix-domain socket in its data dir, for the proxy's connections (servers[].socket).
    local opts=()
    [ -z "$(short_path "${data}/.s.PGSQL.${port}")" ] || opts=(-o "-c unix_socket_directories=${data}")
    if ! as_pg "${PG_BIN}/pg_ctl" start -w -t 60 -D "${data}" -l "${DATA}/${name}.log" "${opts[@]}" >/dev/null; then
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

# ---- MariaDB: primary + 2 GTID replicas under ${MDATA} (./.demo/mysql) ----

mysql_root() { # port sql -> tab-separated rows, no header
    mariadb --no-defaults -N -B -h127.0.0.1 -P"$1" -uroot --password="${MYSQL_ROOT_PASSWORD}" \
        --connect-timeout=5 -e "$2"
}

mysql_running() { # name
    local pidfile="${MDATA}/$1.pid"
    [ -f "${pidfile}" ] && kill -0 "$(cat "${pidfile}")" 2>/dev/null
}

# mariadbd refuses to run as root; started by root it switches to the OS user mysql itself.
mysql_user_args() {
    MYSQL_USER_ARGS=()
    if is_root; then MYSQL_USER_ARGS=(--user=mysql); fi
}

# The same SQL runs (not binlogged) while the template datadir is bootstrapped, so the primary and
# both replicas start identical with an empty GTID history.
mysql_bootstrap_sql() {
    cat <<SQL
FLUSH PRIVILEGES;
EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS ''root''@''', @@hostname, '''');
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('${MYSQL_ROOT_PASSWORD}');
ALTER USER IF EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('${MYSQL_ROOT_PASSWORD}');
ALTER USER IF EXISTS 'root'@'::1' IDENTIFIED VIA mysql_native_password USING PASSWORD('${MYSQL_ROOT_PASSWORD}');
CREATE DATABASE app;
CREATE USER 'app'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('app-secret');
GRANT ALL ON app.* TO 'app'@'%';
CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-secret';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE USER 'monitor'@'%' IDENTIFIED BY 'monitor-secret';
GRANT SLAVE MONITOR, BINLOG MONITOR, REPLICATION CLIENT ON *.* TO 'monitor'@'%';
SQL
}

init_mysql() {
    local template="${MDATA}/template"
    rm -rf "${template}"
    log "mariadb-install-db ${template}"
    mysql_bootstrap_sql >"${MDATA}/bootstrap.sql"
    mysql_user_args
    if ! mariadb-install-db --no-defaults "${MYSQL_USER_ARGS[@]}" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
        --datadir="${template}" --extra-file="${MDATA}/bootstrap.sql" >"${MDATA}/install.log" 2>&1; then
        tail -n 30 "${MDATA}/install.log" >&2
        die "mariadb-install-db failed (log ${MDATA}/install.log)"
    fi
    rm -f "${MDATA}/bootstrap.sql"
    cp -a "${template}" "${MDATA}/replica1"
    cp -a "${template}" "${MDATA}/replica2"
    mv "${template}" "${MDATA}/primary"
}

mysql_start() { # name server_id port
    local name="$1" id="$2" port="$3"
    if mysql_running "${name}"; then
        log "mariadb ${name} already running on port ${port}"
        return
    fi
    port_in_use "${port}" && die "port ${port} for mariadb ${name} is taken; set DEMO_MYSQL_*_PORT"
    log "starting mariadb ${name} on port ${port}"
    local extra=()
    if [ "${id}" -gt 1 ]; then extra+=(--read-only=1); fi
    mysql_user_args
    nohup "${MARIADBD}" --no-defaults "${MYSQL_USER_ARGS[@]}" --datadir="${MDATA}/${name}" \
        --port="${port}" --bind-address=127.0.0.1 --socket="${MDATA}/${name}.sock" \
        --pid-file="${MDATA}/${name}.pid" --log-error="${MDATA}/${name}.err" --server-id="${id}" \
        --log-bin=mysql-bin --relay-log=relay-bin --log-slave-updates --binlog-format=ROW \
        --gtid-strict-mode=1 --skip-name-resolve --character-set-server=utf8mb4 \
        --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 \
        --max-connections=500 --slave-net-timeout=5 "${extra[@]}" \
        </dev/null >>"${MDATA}/${name}.out" 2>&1 &
    local pid=$!
    for _ in $(seq 1 600); do
        [ "$(mysql_root "${port}" "SELECT @@server_id" 2>/dev/null)" = "${id}" ] && return
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 30 "${MDATA}/${name}.err" >&2 || true
    die "mariadb ${name} did not start"
}

# Point replica $1 (1 or 2) at the primary unless it already replicates (first start only).
mysql_configure_replica() {
    local port="${MYSQL_REPLICA_PORTS[$(($1 - 1))]}"
    [ -n "$(mysql_root "${port}" "SHOW SLAVE STATUS")" ] && return
    log "mariadb replica${1}: CHANGE MASTER TO the primary (GTID slave_pos)"
    mysql_root "${port}" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${MYSQL_PRIMARY_PORT}, \
MASTER_USER='repl', MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; \
START SLAVE"
}

mysql_replicating() { # port -> true when both replication threads run
    mariadb --no-defaults -E -h127.0.0.1 -P"$1" -uroot --password="${MYSQL_ROOT_PASSWORD}" \
        --connect-timeout=5 -e "SHOW SLAVE STATUS" 2>/dev/null |
        awk '$1 == "Slave_IO_Running:" { io = $2 } $1 == "Slave_SQL_Running:" { sql = $2 }
             END { exit !(io == "Yes" && sql == "Yes") }'
}

wait_mysql_replicating() {
    local port
    for port in "${MYSQL_REPLICA_PORTS[@]}"; do
        for _ in $(seq 1 300); do
            mysql_replicating "${port}" && continue 2
            sleep 0.1
        done
        die "mariadb replica on port ${port} not replicating after 30 s; see ${MDATA}/replica*.err"
    done
    log "both mariadb replicas are replicating"
}

start_mysql() {
    MDATA="$(data_root mysql mysql)"
    [ -d "${MDATA}/primary" ] || init_mysql
    mysql_start primary 1 "${MYSQL_PRIMARY_PORT}"
    mysql_start replica1 2 "${MYSQL_REPLICA_PORTS[0]}"
    mysql_start replica2 3 "${MYSQL_REPLICA_PORTS[1]}"
    mysql_configure_replica 1
    mysql_configure_replica 2
    wait_mysql_replicating
}

stop_mysql_servers() {
    local name pid
    for name in replica1 replica2 primary; do
        if mysql_running "${name}"; then
            pid="$(cat "${MDATA}/${name}.pid")"
            log "stopping mariadb ${name}"
            kill -TERM "${pid}" 2>/dev/null || true # SIGTERM is a clean shutdown for mariadbd
            for _ in $(seq 1 600); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
        fi
    done
}

# The proxy's Unix-domain sockets (left out when the checkout's path makes them longer than a
# socket path may be).
SOCKETS="${DEMO}/sock"
PG_SOCKET="${SOCKETS}/.s.PGSQL.${LISTEN##*:}"
MYSQL_SOCKET="${SOCKETS}/mysql.sock"

# server_socket PATH: the `, socket: "PATH"` of a server line when the server listens there.
server_socket() {
    if [ -S "$1" ] && [ -n "$(short_path "$1")" ]; then printf ', socket: "%s"' "$1"; fi
}

write_config() {
    local pg_socket="" my_socket=""
    if [ "${#PG_SOCKET}" -le 107 ] && [ "${#MYSQL_SOCKET}" -le 107 ]; then
        mkdir -p "${SOCKETS}"
        pg_socket="    listen_socket: \"${PG_SOCKET}\""
        my_socket="    listen_socket: \"${MYSQL_SOCKET}\""
    fi
    # The proxy reaches the servers on this host over their sockets; the monitor uses TCP.
    local ps1 ps2 ps3 ms1 ms2 ms3
    ps1="$(server_socket "${DATA}/primary/.s.PGSQL.${PRIMARY_PORT}")"
    ps2="$(server_socket "${DATA}/replica1/.s.PGSQL.${REPLICA_PORTS[0]}")"
    ps3="$(server_socket "${DATA}/replica2/.s.PGSQL.${REPLICA_PORTS[1]}")"
    ms1="$(server_socket "${MDATA}/primary.sock")"
    ms2="$(server_socket "${MDATA}/replica1.sock")"
    ms3="$(server_socket "${MDATA}/replica2.sock")"
    cat >"${CONFIG}" <<YAML
# switchyard demo config (written by scripts/demo.sh)
admin: { listen: "${ADMIN}" }
clusters:
  - name: main
    protocol: postgres
    listen: "${LISTEN}"
${pg_socket}
    servers:
      - { name: primary, address: "127.0.0.1:${PRIMARY_PORT}"${ps1}, role: primary }
      - { name: replica1, address: "127.0.0.1:${REPLICA_PORTS[0]}"${ps2}, role: replica }
      - { name: replica2, address: "127.0.0.1:${REPLICA_PORTS[1]}"${ps3}, role: replica }
    routing: { balance: round_robin, max_replica_lag: 10s, fallback: primary }
    monitor: { interval: 500ms, timeout: 2s, healthy_after: 1, unhealthy_after: 2, user: postgres, password: "${SU_PASSWORD}", database: postgres }
  - name: mysql
    protocol: mysql
    listen: "${MYSQL_LISTEN}"
${my_socket}
    servers:
      - { name: primary, address: "127.0.0.1:${MYSQL_PRIMARY_PORT}"${ms1}, role: primary }
      - { name: replica1, address: "127.0.0.1:${MYSQL_REPLICA_PORTS[0]}"${ms2}, role: replica }
      - { name: replica2, address: "127.0.0.1:${MYSQL_REPLICA_PORTS[1]}"${ms3}, role: replica }
    routing: { balance: round_robin, max_replica_lag: 10s, fallback: primary }
    monitor: { interval: 500ms, timeout: 2s, healthy_after: 1, unhealthy_after: 2, user: monitor, password: monitor-secret, database: "" }
users:
  # app exists with the same password in PostgreSQL and MariaDB, so it serves both clusters.
  - { name: app, password: app-secret, auth: scram-sha-256, mysql_auth: mysql_native_password, backend_user: app, backend_password: app-secret }
  - { name: shaapp, password: sha-secret, mysql_auth: caching_sha2_password, backend_user: app, backend_password: app-secret, clusters: [mysql] }
  - { name: mdapp, password: md5-secret, auth: md5, backend_user: md5user, backend_password: md5-secret, clusters: [main] }
  - { name: postgres, password: "${SU_PASSWORD}", auth: scram-sha-256, backend_user: postgres, backend_password: "${SU_PASSWORD}", clusters: [main] }
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
    local port="${LISTEN##*:}" mysql_port="${MYSQL_LISTEN##*:}"
    port_in_use "${port}" && die "proxy port ${port} is taken; set DEMO_LISTEN"
    port_in_use "${mysql_port}" && die "proxy port ${mysql_port} is taken; set DEMO_MYSQL_LISTEN"
    log "starting switchyard on ${LISTEN} and ${MYSQL_LISTEN} (admin ${ADMIN}), log ${PROXY_LOG}"
    RUST_LOG="${RUST_LOG:-switchyard=info}" nohup "${BIN}" --config "${CONFIG}" \
        </dev/null >>"${PROXY_LOG}" 2>&1 &
    echo $! >"${PROXY_PID}"
    for _ in $(seq 1 200); do
        proxy_running || { tail -n 30 "${PROXY_LOG}" >&2; die "switchyard exited"; }
        port_in_use "${port}" && port_in_use "${mysql_port}" && return
        sleep 0.1
    done
    tail -n 30 "${PROXY_LOG}" >&2
    die "switchyard not listening on ${LISTEN} and ${MYSQL_LISTEN} after 20 s"
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
    if [ -n "${DEMO_BIN:-}" ]; then
        [ -x "${BIN}" ] || die "DEMO_BIN=${BIN} is not an executable"
    else
        log "cargo build --release"
        (cd "${ROOT}" && cargo build --release --bin switchyard)
    fi
    DATA="$(data_root pg postgres)"
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
    start_mysql
    write_config
    start_proxy
    cat <<EOF

switchyard is running (pid $(cat "${PROXY_PID}")).

  connect:   psql "postgresql://app:app-secret@${LISTEN}/app"
  md5 user:  psql "postgresql://mdapp:md5-secret@${LISTEN}/app"
  mariadb:   mariadb -h${MYSQL_LISTEN%:*} -P${MYSQL_LISTEN##*:} -uapp -papp-secret app
  sha2 user: mariadb -h${MYSQL_LISTEN%:*} -P${MYSQL_LISTEN##*:} -ushaapp -psha-secret app
$(grep -q '^    listen_socket:' "${CONFIG}" && printf '  sockets:   psql -h %s -p %s -U app app;  mariadb --socket=%s -uapp -papp-secret app' \
        "${SOCKETS}" "${LISTEN##*:}" "${MYSQL_SOCKET}")
  metrics:   curl http://${ADMIN}/metrics
  health:    curl http://${ADMIN}/health
  clusters:  curl http://${ADMIN}/api/clusters
  servers:   primary 127.0.0.1:${PRIMARY_PORT}, replicas 127.0.0.1:${REPLICA_PORTS[0]}, 127.0.0.1:${REPLICA_PORTS[1]}
             (superuser postgres / ${SU_PASSWORD})
  mariadb:   primary 127.0.0.1:${MYSQL_PRIMARY_PORT}, replicas 127.0.0.1:${MYSQL_REPLICA_PORTS[0]}, 127.0.0.1:${MYSQL_REPLICA_PORTS[1]}
             (root / ${MYSQL_ROOT_PASSWORD}, monitor / monitor-secret)
  config:    ${CONFIG}
  logs:      ${PROXY_LOG}, ${DATA}/*.log, ${MDATA}/*.err
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
    if [ -e "${DEMO}/mysql" ]; then
        MDATA="$(readlink -f "${DEMO}/mysql")"
        stop_mysql_servers
    fi
    log "stopped"
}

cmd_status() {
    if proxy_running; then log "switchyard running (pid $(cat "${PROXY_PID}"))"; else log "switchyard not running"; fi
    cd /
    local name
    if [ -e "${DEMO}/pg" ]; then
        DATA="$(readlink -f "${DEMO}/pg")"
        for name in primary replica1 replica2; do
            if server_running "${DATA}/${name}"; then log "${name} running"; else log "${name} stopped"; fi
        done
    else
        log "no PostgreSQL demo data"
    fi
    if [ -e "${DEMO}/mysql" ]; then
        MDATA="$(readlink -f "${DEMO}/mysql")"
        for name in primary replica1 replica2; do
            if mysql_running "${name}"; then log "mariadb ${name} running"; else log "mariadb ${name} stopped"; fi
        done
    else
        log "no MariaDB demo data"
    fi
}

cmd_clean() {
    cmd_stop
    local sub
    for sub in pg mysql; do
        if [ -L "${DEMO}/${sub}" ]; then
            rm -rf "$(readlink -f "${DEMO}/${sub}")"
        fi
    done
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
