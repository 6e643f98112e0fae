#!/usr/bin/env bash
# Transaction-pooling benchmark, in one run:
#   1. pgbench -S (-M simple/extended/prepared) at 1/16/64/256 clients, and at 16 clients tpcb-like
#      and read-only transactions (BEGIN; two point selects; END: every target runs them on the primary)
#      against the primary directly, Switchyard (transaction pools of 20 on the primary and 10 on
#      each of 2 replicas, reads split), PgBouncer 1.18 (transaction mode, primary only), Pgpool-II
#      4.3 (load balancing over the 3 servers), and PgCat / PgDog when PGCAT_BIN / PGDOG_BIN name their binaries;
#   2. sysbench oltp_read_only / oltp_read_write at 16/64 threads: MariaDB directly vs Switchyard
#      (MySQL cluster, the same pool sizes);
#   3. added latency: pgbench -c 1 -S -M prepared with a per-transaction log, direct vs Switchyard
#      (and PgBouncer, for reference), each pooler through TCP and through its Unix-domain socket;
#   4. memory: proxy RSS per idle client (5,000 idle clients) and a burst of 10,000 concurrent
#      short clients over a pool of 50 (examples/pool_clients.rs, md5 user mdapp);
#   5. the targets and whether each was met.
#
#   bench/pooling.sh                         full run (SCALE=10, DURATION=10 s per cell)
#   QUICK=1 bench/pooling.sh                 smoke run (DURATION=3, fewer client counts, fewer clients)
#   PGCAT_BIN=/path/pgcat PGDOG_BIN=/path/pgdog bench/pooling.sh
#
# Env: SCALE, DURATION, ROUNDS (1: the pgbench part runs every target this many times, targets
# alternating round by round, and reports each cell's median; a cell that failed in any round
# reports "fails"), CLIENTS ("1 16 64 256"), TPCB_CLIENTS (16), SB_THREADS ("16 64"),
# LAT_DURATION (10), LAT_ROUNDS (ROUNDS: the latency runs repeated, targets alternating, each
# figure the median over rounds and each added figure paired with its round's direct run),
# IDLE_CLIENTS (5000), BURST_CLIENTS (10000), BURST_POOL (50), BURST_CHECKOUT_TIMEOUT (30s),
# PARTS ("pgbench sysbench latency memory"), TARGETS ("direct switchyard pgbouncer pgpool pgcat
# pgdog"; also switchyard-mt: --threads <cores>, the multi-threaded runtime, and switchyard-eventual:
# consistency: eventual, both pgbench only), CELLS (the pgbench workloads: "select-simple select-extended select-prepared tpcb-like
# read-txn"; also mix-simple, mix-extended, mix-prepared: issue 22's 80/20 mix, pgbench
# -b select-only@8 -b tpcb-like@2, at each of CLIENTS), SYNC_COMMIT (off / on: ALTER SYSTEM on the
# primary for the run, reset on exit; unset: left as the server has it), SKIP_BUILD=1, KEEP_TMP=1, KEEP_DEMO=1,
# SWITCHYARD_BIN (another build, e.g. for before/after runs; implies no build of its own),
# SWITCHYARD_ARGS (extra proxy arguments, e.g. "--threads 1": one thread, single-threaded scheduler),
# BUSY_POLL (200us; with "--threads 1" in SWITCHYARD_ARGS the latency part also runs a second
# Switchyard with --busy-poll BUSY_POLL, reported on its own row; 0: not),
# POOL_SIZE (20; PgBouncer's one pool, Pgpool-II's, PgCat's and PgDog's per server, Switchyard's on
# the primary), REPLICA_POOL_SIZE (POOL_SIZE / 2: Switchyard's pool on each of the 2 replicas, so its
# reads run over as many server connections in all as PgBouncer's reads on the primary),
# BALANCE (least_connections: Switchyard's replica choice; at one client it keeps reading from one
# warm replica connection, under load it spreads reads by connections in use plus waiting),
# BACKENDS (tcp: every pooler reaches the PostgreSQL servers over TCP; socket: Switchyard, PgBouncer
# and Pgpool-II over the servers' Unix-domain sockets, from the demo config's `socket:` lines).
# Run as root (PgBouncer and Pgpool-II then run as the OS user postgres; `ulimit -n` is raised for
# the 10,000 clients). Everything shares this machine's cores: only ratios compare across machines.
# Every process the script starts (and the demo, if it started it) is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib_pgbouncer.sh
. "${ROOT}/bench/lib_pgbouncer.sh"
QUICK="${QUICK:-0}"
if [ "${QUICK}" = 1 ]; then
    DURATION="${DURATION:-3}" CLIENTS="${CLIENTS:-1 16}" SB_THREADS="${SB_THREADS:-16}"
    LAT_DURATION="${LAT_DURATION:-3}" IDLE_CLIENTS="${IDLE_CLIENTS:-1000}" BURST_CLIENTS="${BURST_CLIENTS:-2000}"
fi
SCALE="${SCALE:-10}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-1}"
ROUND=1
CLIENTS="${CLIENTS:-1 16 64 256}"
TPCB_CLIENTS="${TPCB_CLIENTS:-16}"
SB_THREADS="${SB_THREADS:-16 64}"
LAT_DURATION="${LAT_DURATION:-10}"
LAT_ROUNDS="${LAT_ROUNDS:-${ROUNDS}}"
IDLE_CLIENTS="${IDLE_CLIENTS:-5000}"
BURST_CLIENTS="${BURST_CLIENTS:-10000}"
BURST_POOL="${BURST_POOL:-50}"
BURST_CHECKOUT_TIMEOUT="${BURST_CHECKOUT_TIMEOUT:-30s}"
POOL_SIZE="${POOL_SIZE:-20}"
REPLICA_POOL_SIZE="${REPLICA_POOL_SIZE:-$(((POOL_SIZE + 1) / 2))}"
BALANCE="${BALANCE:-least_connections}"
BACKENDS="${BACKENDS:-tcp}"
PARTS="${PARTS:-pgbench sysbench latency memory}"
CELLS="${CELLS:-select-simple select-extended select-prepared tpcb-like read-txn}"
SYNC_COMMIT="${SYNC_COMMIT:-}"
TARGETS="${TARGETS:-direct switchyard pgbouncer pgpool pgcat pgdog}"
PRIMARY_PORT="${DEMO_PRIMARY_PORT:-15432}"
REPLICA_PORTS=("${DEMO_REPLICA1_PORT:-15433}" "${DEMO_REPLICA2_PORT:-15434}")
MY_PRIMARY_PORT="${DEMO_MYSQL_PRIMARY_PORT:-13306}"
MY_REPLICA_PORTS=("${DEMO_MYSQL_REPLICA1_PORT:-13307}" "${DEMO_MYSQL_REPLICA2_PORT:-13308}")
SU_PASSWORD="postgres-demo"  # set by scripts/demo.sh
MY_ROOT_PASSWORD="root-demo" # set by scripts/demo.sh
DEMO_CONFIG="${ROOT}/.demo/switchyard.yaml"
BIN="${SWITCHYARD_BIN:-${ROOT}/target/release/switchyard}"
[ -z "${SWITCHYARD_BIN:-}" ] || SKIP_BUILD=1
read -r -a SY_ARGS <<<"${SWITCHYARD_ARGS:-}"
BUSY_POLL="${BUSY_POLL:-200us}"
CLIENT_BIN="${ROOT}/target/release/examples/pool_clients"
SB_TABLES=4 SB_TABLE_SIZE=10000
export PGPASSWORD=app-secret PGUSER=app PGHOST=127.0.0.1 PGDATABASE=app

log() { printf 'pooling: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
has() { [[ " $1 " == *" $2 "* ]]; }
is_root() { [ "$(id -u)" -eq 0 ]; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- processes, temp dir, cleanup ----

TMP="$(mktemp -d /tmp/switchyard-pooling.XXXXXX)"
chmod 755 "${TMP}"
STARTED=()      # process-group leaders this script started (setsid)
DEMO_STARTED=0
SB_PREPARED=0
SYNC_SET=0
IDLE_FD_OPEN=0

# Command prefix that runs a command as the OS user postgres when root (PgBouncer and Pgpool-II
# refuse root); setpriv execs, so the pid stays the server's.
AS_PG=()
is_root && AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)

# start_bg VAR LOGFILE CMD...: start CMD in its own process group; its pid goes to VAR.
start_bg() {
    local var="$1" logfile="$2"
    shift 2
    (cd "${TMP}" && exec setsid "$@" </dev/null >>"${logfile}" 2>&1) &
    printf -v "${var}" '%s' "$!"
    STARTED+=("$!")
}

# alive PID: the process runs (a child that exited stays a zombie until waited for; that is not alive).
alive() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null)" && [ -n "${state}" ] && [[ "${state}" != Z* ]]
}

# stop_bg PID [SIGNAL]: signal the process group, wait up to 15 s, then SIGKILL it.
stop_bg() {
    local pid="$1" sig="${2:-TERM}"
    [ -n "${pid}" ] || return 0
    kill "-${sig}" -- "-${pid}" 2>/dev/null || kill "-${sig}" "${pid}" 2>/dev/null || true
    for _ in $(seq 1 150); do
        alive "${pid}" || break
        sleep 0.1
    done
    kill -KILL -- "-${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
    local keep=() p
    for p in "${STARTED[@]}"; do [ "${p}" = "${pid}" ] || keep+=("${p}"); done
    STARTED=("${keep[@]+"${keep[@]}"}")
}

cleanup() {
    local rc=$? p
    set +e
    if [ "${IDLE_FD_OPEN}" = 1 ]; then exec 7>&-; fi
    for p in "${STARTED[@]+"${STARTED[@]}"}"; do stop_bg "${p}"; done
    if [ "${SB_PREPARED}" = 1 ]; then sb oltp_read_write "${MY_PRIMARY_PORT}" cleanup >/dev/null 2>&1; fi
    if [ "${SYNC_SET}" = 1 ]; then psql_su "${PRIMARY_PORT}" "ALTER SYSTEM RESET synchronous_commit" >/dev/null 2>&1 &&
        psql_su "${PRIMARY_PORT}" "SELECT pg_reload_conf()" >/dev/null 2>&1; fi
    if [ "${DEMO_STARTED}" = 1 ] && [ "${KEEP_DEMO:-0}" != 1 ]; then
        log "stopping the demo this script started (KEEP_DEMO=1 keeps it)"
        "${ROOT}/scripts/demo.sh" stop >/dev/null 2>&1 || true
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "logs and configs kept in ${TMP}"; else rm -rf "${TMP}"; fi
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NEXT_PORT="${PORT_BASE:-17400}"
# alloc_port VAR: a free local port (not handed out before in this run) into VAR.
alloc_port() {
    while port_in_use "${NEXT_PORT}"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    printf -v "$1" '%s' "${NEXT_PORT}"
    NEXT_PORT=$((NEXT_PORT + 1))
}

wait_port() { # port seconds pid -> 0 when the port accepts, 1 when the pid died or time ran out
    for _ in $(seq 1 $(($2 * 10))); do
        port_in_use "$1" && return 0
        alive "$3" || return 1
        sleep 0.1
    done
    return 1
}

# ---- prerequisites: demo, packages, build ----

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((BURST_CLIENTS + 1000)) ] ||
    log "warning: ulimit -n is $(ulimit -n): too low for ${BURST_CLIENTS} clients (run as root)"

demo_up() { # the PostgreSQL servers, and the MariaDB ones when sysbench runs
    local p ports=("${PRIMARY_PORT}" "${REPLICA_PORTS[@]}")
    has "${PARTS}" sysbench && ports+=("${MY_PRIMARY_PORT}" "${MY_REPLICA_PORTS[@]}")
    for p in "${ports[@]}"; do
        port_in_use "${p}" || return 1
    done
}
if ! demo_up; then
    port_in_use "${PRIMARY_PORT}" || port_in_use "${MY_PRIMARY_PORT}" || DEMO_STARTED=1
    log "starting the demo servers (scripts/demo.sh)..."
    "${ROOT}/scripts/demo.sh" >"${TMP}/demo.log" 2>&1 || { tail -n 30 "${TMP}/demo.log" >&2; die "scripts/demo.sh failed"; }
fi
[ -f "${DEMO_CONFIG}" ] || die "no ${DEMO_CONFIG}: run scripts/demo.sh once"

# pg_socket_dir PORT: the directory of the socket the demo config names for its server on PORT.
pg_socket_dir() {
    local dir
    dir="$(demo_socket_dir "${DEMO_CONFIG}" "$1")"
    [ -n "${dir}" ] || die "BACKENDS=socket: ${DEMO_CONFIG} names no socket for the server on port $1 (rerun scripts/demo.sh)"
    echo "${dir}"
}
# Where the poolers reach the PostgreSQL servers (primary, replica1, replica2).
case "${BACKENDS}" in
tcp)
    PG_HOSTS=(127.0.0.1 127.0.0.1 127.0.0.1)
    STRIP_SOCKETS='s|, socket: "[^"]*"||' # Switchyard's config: the servers' TCP addresses only
    ;;
socket)
    STRIP_SOCKETS=""
    h0="$(pg_socket_dir "${PRIMARY_PORT}")"
    h1="$(pg_socket_dir "${REPLICA_PORTS[0]}")"
    h2="$(pg_socket_dir "${REPLICA_PORTS[1]}")"
    PG_HOSTS=("${h0}" "${h1}" "${h2}")
    ;;
*) die "BACKENDS must be tcp or socket, not ${BACKENDS}" ;;
esac

need_pkgs=()
{ has "${TARGETS}" pgbouncer && ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; } && need_pkgs+=(pgbouncer)
{ has "${TARGETS}" pgpool && [ ! -x /usr/sbin/pgpool ]; } && need_pkgs+=(pgpool2)
if [ "${#need_pkgs[@]}" -gt 0 ] && has "${PARTS}" pgbench; then
    is_root || die "${need_pkgs[*]} missing: install them (apt-get install ${need_pkgs[*]}) or run as root"
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >"${TMP}/apt.log" 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >"${TMP}/apt.log" 2>&1; } ||
        { tail -n 20 "${TMP}/apt.log" >&2; die "apt-get install ${need_pkgs[*]} failed"; }
    # The packages' system services (PgBouncer's listens on 6432, the demo proxy's port) are not used.
    for svc in pgbouncer pgpool2; do
        if command -v service >/dev/null 2>&1; then service "${svc}" stop >/dev/null 2>&1 || true; fi
    done
fi
PGBOUNCER="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
PGPOOL=/usr/sbin/pgpool

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release --bins --examples"
    (cd "${ROOT}" && cargo build --release --bins --examples >"${TMP}/build.log" 2>&1) ||
        { tail -n 40 "${TMP}/build.log" >&2; die "cargo build failed"; }
fi
[ -x "${BIN}" ] || die "no ${BIN}"

psql_su() { # port sql
    PGPASSWORD="${SU_PASSWORD}" psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d app -c "$2"
}

wait_pg_replicas() { # until both replicas replayed the primary's current WAL position (60 s)
    local lsn
    lsn="$(psql_su "${PRIMARY_PORT}" "SELECT pg_current_wal_lsn()")"
    for _ in $(seq 1 600); do
        [ "$(psql_su "${PRIMARY_PORT}" "SELECT count(*) FROM pg_stat_replication
            WHERE replay_lsn >= '${lsn}'::pg_lsn")" -ge 2 ] && return 0
        sleep 0.1
    done
    log "warning: replicas did not replay ${lsn} within 60 s"
}

# ---- Switchyard: own process, config generated from the demo's ----

# cluster_block NAME: the demo config's cluster NAME (without any pool line).
cluster_block() {
    awk -v want="$1" '
        /^[^ #]/ { inside = 0 }
        /^  - name: / { inside = ($3 == want) }
        inside && !/^    pool:/ { print }' "${DEMO_CONFIG}"
}

# users_block CLUSTER: the demo's users that may use CLUSTER.
users_block() {
    awk -v want="$1" '
        /^users:/ { inside = 1; print; next }
        /^[^ #]/ { inside = 0 }
        inside && /^  - / {
            if (match($0, /clusters: \[[^]]*\]/)) {
                list = substr($0, RSTART + 11, RLENGTH - 12)
                gsub(/ /, "", list)
                if (index("," list ",", "," want ",") == 0) next
            }
            print
        }' "${DEMO_CONFIG}"
}

SY_PID=""
SY_LOG=""
SY_TARGET_ARGS=() # a variant's extra proxy arguments (part_pgbench)
SY_ROUTING_SED="" # a variant's change to the routing line (part_pgbench)
# start_switchyard TAG CLUSTER PORT POOL_SIZE CHECKOUT_TIMEOUT [REPLICA_POOL_SIZE]: own switchyard on
# PORT in front of the demo's CLUSTER in transaction mode; waits until the admin API shows a primary (and, for
# PostgreSQL, a healthy replica). Returns 1 (log tail printed) when it fails to start.
start_switchyard() {
    local tag="$1" cluster="$2" port="$3" size="$4" checkout="$5" admin conf body
    alloc_port admin
    conf="${TMP}/switchyard-${tag}.yaml"
    SY_LOG="${TMP}/switchyard-${tag}.log"
    # Its own Unix-domain socket too (PostgreSQL's naming: pgbench -h SY_SOCKDIR -p PORT opens it).
    SY_SOCKDIR="${TMP}/sock-${tag}"
    mkdir -p "${SY_SOCKDIR}"
    if [ "${cluster}" = main ]; then SY_SOCKET="${SY_SOCKDIR}/.s.PGSQL.${port}"; else SY_SOCKET="${SY_SOCKDIR}/mysql.sock"; fi
    {
        echo "# bench/pooling.sh: the demo's cluster ${cluster} in transaction pooling mode"
        echo "admin: { listen: \"127.0.0.1:${admin}\" }"
        echo "limits: { max_client_connections: $((BURST_CLIENTS + 5000)) }"
        echo "clusters:"
        cluster_block "${cluster}" | sed -e "s|^    listen: .*|    listen: \"127.0.0.1:${port}\"|" \
            -e '/^    listen_socket: /d' \
            -e "${STRIP_SOCKETS}" \
            -e "s|role: replica }|role: replica${6:+, pool_size: $6} }|" \
            -e "s|balance: [a-z_]*|balance: ${BALANCE}|" \
            -e "${SY_ROUTING_SED}"
        echo "    listen_socket: \"${SY_SOCKET}\""
        echo "    pool: { mode: transaction, size: ${size}, checkout_timeout: ${checkout} }"
        users_block "${cluster}"
    } >"${conf}"
    grep -q "^  - name: ${cluster}\$" "${conf}" || die "cluster ${cluster} not found in ${DEMO_CONFIG}"
    RUST_LOG="${RUST_LOG:-switchyard=info}" start_bg SY_PID "${SY_LOG}" "${BIN}" --config "${conf}" "${SY_ARGS[@]+"${SY_ARGS[@]}"}" \
        "${SY_TARGET_ARGS[@]+"${SY_TARGET_ARGS[@]}"}"
    if ! wait_port "${port}" 20 "${SY_PID}"; then
        tail -n 20 "${SY_LOG}" >&2
        stop_bg "${SY_PID}"
        SY_PID=""
        return 1
    fi
    for _ in $(seq 1 300); do
        body="$(curl -s -m 2 "http://127.0.0.1:${admin}/api/clusters" || true)"
        if grep -q '"primary":"[^"]' <<<"${body}"; then
            [ "${cluster}" != main ] || grep -q '"state":"healthy"' <<<"${body}" && break
        fi
        sleep 0.1
    done
    grep -q '"primary":"[^"]' <<<"${body}" || { log "switchyard ${tag}: no primary after 30 s: ${body}"; return 1; }
    grep -q '"state":"healthy"' <<<"${body}" || log "switchyard ${tag}: no healthy replica yet (reads may go to the primary)"
    return 0
}

# proxy_problems LOG: the proxy's ERROR and WARN lines, colours stripped, startup notices left out.
proxy_problems() {
    sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E ' (ERROR|WARN) ' | grep -v 'following a new primary' || true
}

# replica_exits LOG: every time a replica left the read set after startup, on one line ("" if never):
# a run with a replica out is not a fair split over two.
replica_exits() {
    sed 's/\x1b\[[0-9;]*m//g' "$1" | grep 'replica state' | grep -v -e 'to="healthy"' -e 'from="down"' |
        sed -E 's/^[0-9-]+T([0-9:]+)[.0-9]*Z.* server=([^ ]+) from="[^"]*" to="([^"]*)" reason="([^"]*)" lag=([^ ]*).*/\2 \3 at \1 (\4, lag \5)/' |
        paste -sd ';' - || true
}

# ---- 1. pgbench ----

declare -A R=()         # "target|workload|clients" -> tps | fails | n/a (the median over ROUNDS)
declare -A RR=()        # the same key -> every round's result, space-separated
declare -A NOTE=()      # target -> why it was skipped
# name:pgbench flags:mode, flags separated by commas; a workload with no flag (tpcb-like) or a script
# (-f) runs at TPCB_CLIENTS only. The mixes are issue 22's 80/20 mix (select-only@8, tpcb-like@2).
ALL_WORKLOADS=("select-simple:-S:simple" "select-extended:-S:extended" "select-prepared:-S:prepared"
    "tpcb-like::simple" "read-txn:-f${TMP}/read-txn.sql:simple"
    "mix-simple:-bselect-only@8,-btpcb-like@2:simple" "mix-extended:-bselect-only@8,-btpcb-like@2:extended"
    "mix-prepared:-bselect-only@8,-btpcb-like@2:prepared")
WORKLOADS=()
for spec in "${ALL_WORKLOADS[@]}"; do has "${CELLS}" "${spec%%:*}" && WORKLOADS+=("${spec}"); done
[ "${#WORKLOADS[@]}" -gt 0 ] || die "CELLS names no known workload: ${CELLS}"
cat >"${TMP}/read-txn.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
BEGIN;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid % (100000 * :scale) + 1;
END;
SQL

# pgb LABEL PORT MODE CLIENTS EXTRA... -> tps on stdout, or "fails" (first error line to stderr)
pgb() {
    local label="$1" port="$2" mode="$3" c="$4" out rc=0
    shift 4
    local extra="${1:-}" flags=()
    [ -z "${extra}" ] || IFS=, read -r -a flags <<<"${extra}"
    local j=$((c < 2 ? c : 2)) logf="${TMP}/pgbench-${label}-${mode}-${c}${extra##*/}.log"
    pgbench -n -h 127.0.0.1 -p "${port}" -M "${mode}" -c "${c}" -j "${j}" -T "${DURATION}" "${flags[@]+"${flags[@]}"}" app \
        >"${logf}" 2>&1 || rc=$?
    local tps
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "${logf}" | head -1)"
    if [ "${rc}" != 0 ] || [ -z "${tps}" ] || grep -q "aborted" "${logf}"; then
        local why
        why="$(grep -m1 -E 'error:|ERROR|FATAL|aborted' "${logf}" || true)"
        grep -q '^number of transactions actually processed: 0$' "${logf}" &&
            why="${why:+${why}; }no transaction completed in ${DURATION} s"
        log "  ${label} -M ${mode} -c ${c} $*: fails: ${why:-$(tail -n1 "${logf}")}"
        echo fails
    else
        echo "${tps}"
    fi
}

# bench_target TARGET PORT: every pgbench cell against PORT, after a warm-up at the highest client
# count (so server connections a pooler opens lazily, e.g. Pgpool-II's 3 per child, are open).
bench_target() {
    local target="$1" port="$2" spec name flag mode c
    timeout 180 pgbench -n -S -h 127.0.0.1 -p "${port}" -c "$(max_clients)" -j 2 -t 20 app \
        >"${TMP}/pgbench-${target}-warmup.log" 2>&1 ||
        log "  ${target} warm-up failed: $(grep -m1 -E 'error:|ERROR|FATAL' "${TMP}/pgbench-${target}-warmup.log" || true)"
    for spec in "${WORKLOADS[@]}"; do
        IFS=: read -r name flag mode <<<"${spec}"
        if [ -n "${flag}" ] && [ "${flag#-f}" = "${flag}" ]; then
            for c in ${CLIENTS}; do
                record "${target}|${name}|${c}" "$(pgb "${target}" "${port}" "${mode}" "${c}" "${flag}")"
            done
            [[ "${name}" != mix-* ]] || wait_pg_replicas
        else
            record "${target}|${name}|${TPCB_CLIENTS}" "$(pgb "${target}" "${port}" "${mode}" "${TPCB_CLIENTS}" ${flag:+"${flag}"})"
            wait_pg_replicas
        fi
    done
}

# record KEY RESULT: one round's result of a cell.
record() {
    RR["$1"]="${RR["$1"]:+${RR["$1"]} }$2"
    log "  ${1//|/ } (round ${ROUND}): $2"
}

# settle_rounds: R[key] = the median of the rounds' results; "fails" if any round failed.
settle_rounds() {
    local key
    for key in "${!RR[@]}"; do
        if [[ " ${RR[${key}]} " == *" fails "* ]]; then
            R["${key}"]=fails
        else
            R["${key}"]="$(tr ' ' '\n' <<<"${RR[${key}]}" | sort -g | awk '{ v[NR] = $1 }
                END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
        fi
    done
}

max_clients() { local m=1 c; for c in ${CLIENTS} ${TPCB_CLIENTS}; do [ "${c}" -gt "${m}" ] && m="${c}"; done; echo "${m}"; }

# start_pgbouncer DIR PORT MAX_CLIENT_CONN: PgBouncer (transaction mode, primary only) on PORT,
# its pid in PGB_PID; fails (with its log on stderr) when it does not accept within 20 s.
PGB_PID=""
start_pgbouncer() { # DIR PORT MAX_CLIENT_CONN [SOCKET_DIR]
    pgbouncer_config "$1" "$2" "${PRIMARY_PORT}" "${POOL_SIZE}" "$3" "${4:-}" "${PG_HOSTS[0]}"
    is_root && chown -R postgres:postgres "$1"
    start_bg PGB_PID "$1/pgbouncer.log" "${AS_PG[@]}" "${PGBOUNCER}" "$1/pgbouncer.ini"
    wait_port "$2" 20 "${PGB_PID}" || { tail -n 20 "$1/pgbouncer.log" >&2; return 1; }
}

run_pgbouncer() { # port
    if start_pgbouncer "${TMP}/pgbouncer" "$1" "$(($(max_clients) + 100))"; then
        bench_target pgbouncer "$1"
    else
        NOTE[pgbouncer]="did not start (log above)"
    fi
    stop_bg "${PGB_PID}"
}

run_pgpool() { # port
    local dir="${TMP}/pgpool" pid pcp children
    alloc_port pcp
    children=$(($(max_clients) + 4))
    mkdir -p "${dir}"
    cat >"${dir}/pgpool.conf" <<CONF
backend_clustering_mode = 'streaming_replication'
listen_addresses = '127.0.0.1'
port = $1
socket_dir = '${dir}'
pcp_listen_addresses = '127.0.0.1'
pcp_port = ${pcp}
pcp_socket_dir = '${dir}'
wd_ipc_socket_dir = '${dir}'
pid_file_name = '${dir}/pgpool.pid'
logdir = '${dir}'
backend_hostname0 = '${PG_HOSTS[0]}'
backend_port0 = ${PRIMARY_PORT}
backend_weight0 = 1
backend_flag0 = 'ALLOW_TO_FAILOVER'
backend_hostname1 = '${PG_HOSTS[1]}'
backend_port1 = ${REPLICA_PORTS[0]}
backend_weight1 = 1
backend_flag1 = 'ALLOW_TO_FAILOVER'
backend_hostname2 = '${PG_HOSTS[2]}'
backend_port2 = ${REPLICA_PORTS[1]}
backend_weight2 = 1
backend_flag2 = 'ALLOW_TO_FAILOVER'
enable_pool_hba = on
pool_passwd = 'pool_passwd'
num_init_children = ${children}
max_pool = 1
listen_backlog_multiplier = 2
load_balance_mode = on
sr_check_period = 0
sr_check_user = 'postgres'
sr_check_password = '${SU_PASSWORD}'
sr_check_database = 'postgres'
health_check_period = 0
failover_on_backend_error = off
use_watchdog = off
log_destination = 'stderr'
log_min_messages = warning
CONF
    printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"${dir}/pool_hba.conf"
    echo "app:TEXTapp-secret" >"${dir}/pool_passwd"
    : >"${dir}/pcp.conf"
    chmod 600 "${dir}/pool_passwd"
    is_root && chown -R postgres:postgres "${dir}"
    start_bg pid "${dir}/pgpool.log" "${AS_PG[@]}" "${PGPOOL}" -n -f "${dir}/pgpool.conf" -F "${dir}/pcp.conf" -a "${dir}/pool_hba.conf"
    local ok=0
    if wait_port "$1" 30 "${pid}"; then
        for _ in $(seq 1 100); do # until it answers and has found the primary (20 s)
            psql -X -q -A -t -h 127.0.0.1 -p "$1" -c "SHOW pool_nodes" >"${dir}/nodes.txt" 2>&1 && ok=1
            [ "${ok}" = 1 ] && grep -q '|primary|' "${dir}/nodes.txt" && break
            sleep 0.2
        done
    fi
    if [ "${ok}" = 1 ]; then
        log "  pgpool nodes (id|port|status|pg_status|role|pg_role): $(cut -d'|' -f1,3,4,5,7,8 "${dir}/nodes.txt" | tr '\n' ' ')"
        bench_target pgpool "$1"
    else
        tail -n 20 "${dir}/pgpool.log" "${dir}/nodes.txt" >&2 2>/dev/null || true
        NOTE[pgpool]="did not start (log above)"
    fi
    stop_bg "${pid}" INT # fast shutdown
}

run_pgcat() { # port
    local dir="${TMP}/pgcat" pid admin_port
    mkdir -p "${dir}"
    alloc_port admin_port
    cat >"${dir}/pgcat.toml" <<TOML
[general]
host = "127.0.0.1"
port = $1
enable_prometheus_exporter = false
prometheus_exporter_port = ${admin_port}
admin_username = "pgcat_admin"
admin_password = "pgcat_admin"
worker_threads = 2
connect_timeout = 5000
healthcheck_timeout = 1000
ban_time = 60

[pools.app]
pool_mode = "transaction"
default_role = "any"
query_parser_enabled = true
query_parser_read_write_splitting = true
primary_reads_enabled = false
load_balancing_mode = "random"
prepared_statements_cache_size = 500

[pools.app.users.0]
username = "app"
password = "app-secret"
pool_size = ${POOL_SIZE}

[pools.app.shards.0]
database = "app"
servers = [
    ["127.0.0.1", ${PRIMARY_PORT}, "primary"],
    ["127.0.0.1", ${REPLICA_PORTS[0]}, "replica"],
    ["127.0.0.1", ${REPLICA_PORTS[1]}, "replica"],
]
TOML
    start_bg pid "${dir}/pgcat.log" "${PGCAT_BIN}" "${dir}/pgcat.toml"
    if wait_port "$1" 20 "${pid}"; then
        bench_target pgcat "$1"
    else
        tail -n 20 "${dir}/pgcat.log" >&2
        NOTE[pgcat]="did not start (log above)"
    fi
    stop_bg "${pid}"
}

run_pgdog() { # port
    local dir="${TMP}/pgdog" pid
    mkdir -p "${dir}"
    cat >"${dir}/pgdog.toml" <<TOML
[general]
host = "127.0.0.1"
port = $1
workers = 2
default_pool_size = ${POOL_SIZE}
pooler_mode = "transaction"
prepared_statements = "extended"
load_balancing_strategy = "random"
read_write_split = "exclude_primary"
query_parser_enabled = true

[[databases]]
name = "app"
host = "127.0.0.1"
port = ${PRIMARY_PORT}
role = "primary"

[[databases]]
name = "app"
host = "127.0.0.1"
port = ${REPLICA_PORTS[0]}
role = "replica"

[[databases]]
name = "app"
host = "127.0.0.1"
port = ${REPLICA_PORTS[1]}
role = "replica"
TOML
    cat >"${dir}/users.toml" <<TOML
[[users]]
name = "app"
database = "app"
password = "app-secret"
pool_size = ${POOL_SIZE}
TOML
    start_bg pid "${dir}/pgdog.log" "${PGDOG_BIN}" --config "${dir}/pgdog.toml" --users "${dir}/users.toml"
    if wait_port "$1" 20 "${pid}"; then
        bench_target pgdog "$1"
    else
        tail -n 20 "${dir}/pgdog.log" >&2
        NOTE[pgdog]="did not start (log above)"
    fi
    stop_bg "${pid}"
}

label() {
    case "$1" in
        direct) echo "direct (primary)" ;;
        switchyard) echo "switchyard txn/${POOL_SIZE}+2x${REPLICA_POOL_SIZE}" ;;
        switchyard-mt) echo "switchyard --threads $(nproc)" ;;
        switchyard-eventual) echo "switchyard eventual" ;;
        pgbouncer) echo "pgbouncer 1.18 txn/${POOL_SIZE}" ;;
        pgpool) echo "pgpool-II 4.3 lb 3 srv" ;;
        pgcat) echo "pgcat txn/${POOL_SIZE} 2 repl" ;;
        pgdog) echo "pgdog txn/${POOL_SIZE} 2 repl" ;;
        *) echo "$1" ;;
    esac
}

is_num() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# print_table WORKLOAD TITLE CLIENT_COUNTS
print_table() {
    local w="$1" title="$2" counts="$3" t c v d
    printf '\n%-28s' "${title}"
    for c in ${counts}; do printf ' %17s' "c=${c} tps (x dir)"; done
    printf '\n'
    for t in ${RAN_TARGETS}; do
        printf '%-28s' "$(label "${t}")"
        for c in ${counts}; do
            v="${R["${t}|${w}|${c}"]:-n/a}"
            d="${R["direct|${w}|${c}"]:-}"
            if is_num "${v}"; then
                if is_num "${d}"; then
                    printf ' %17s' "$(printf '%.0f (x%s)' "${v}" "$(ratio "${v}" "${d}")")"
                else
                    printf ' %17s' "$(printf '%.0f' "${v}")"
                fi
            else
                printf ' %17s' "${v}"
            fi
        done
        printf '\n'
    done
}

RAN_TARGETS=""
part_pgbench() {
    log "pgbench: initialising scale ${SCALE} on the primary..."
    psql_su "${PRIMARY_PORT}" "GRANT CREATE ON SCHEMA public TO app" >/dev/null
    pgbench -i -q -s "${SCALE}" -h 127.0.0.1 -p "${PRIMARY_PORT}" app >"${TMP}/pgbench-init.log" 2>&1 ||
        { tail -n 20 "${TMP}/pgbench-init.log" >&2; die "pgbench -i failed"; }
    psql_su "${PRIMARY_PORT}" "GRANT SELECT ON pgbench_branches TO md5user" >/dev/null
    psql_su "${PRIMARY_PORT}" "CHECKPOINT" >/dev/null
    if [ -n "${SYNC_COMMIT}" ]; then
        SYNC_SET=1
        psql_su "${PRIMARY_PORT}" "ALTER SYSTEM SET synchronous_commit = '${SYNC_COMMIT}'" >/dev/null
        psql_su "${PRIMARY_PORT}" "SELECT pg_reload_conf()" >/dev/null
    fi
    wait_pg_replicas
    # Warm the caches of all three servers so the first measured cells are not cold.
    pgbench -n -S -c 4 -j 2 -T 2 -h 127.0.0.1 -p "${PRIMARY_PORT}" app >/dev/null 2>&1 || true
    for port in "${REPLICA_PORTS[@]}"; do
        pgbench -n -S -c 4 -j 2 -T 2 -h 127.0.0.1 -p "${port}" app >/dev/null 2>&1 || true
    done
    local t port
    for ROUND in $(seq 1 "${ROUNDS}"); do
        for t in ${TARGETS}; do
            alloc_port port
            case "${t}" in
                direct)
                    log "pgbench: direct"
                    bench_target direct "${PRIMARY_PORT}"
                    ;;
                switchyard | switchyard-mt | switchyard-eventual)
                    # Variants: -mt the multi-threaded runtime (one worker per core), -eventual
                    # `consistency: eventual` instead of the default read_your_writes.
                    SY_TARGET_ARGS=()
                    SY_ROUTING_SED=""
                    [ "${t}" != switchyard-mt ] || SY_TARGET_ARGS=(--threads "$(nproc)")
                    [ "${t}" != switchyard-eventual ] ||
                        SY_ROUTING_SED='s|^    routing: {\(.*\)}|    routing: {\1, consistency: eventual }|'
                    log "pgbench: ${t} (transaction pool ${POOL_SIZE}) on ${port}"
                    if start_switchyard "pgbench-${t}" main "${port}" "${POOL_SIZE}" 5s "${REPLICA_POOL_SIZE}"; then
                        bench_target "${t}" "${port}"
                        local problems
                        problems="$(proxy_problems "${SY_LOG}" | wc -l)"
                        [ "${problems}" = 0 ] || NOTE[${t}]="proxy log has ${problems} ERROR/WARN lines, e.g.: $(proxy_problems "${SY_LOG}" | head -n1 | cut -c1-300)"
                        local exits
                        exits="$(replica_exits "${SY_LOG}")"
                        [ -z "${exits}" ] || NOTE[${t}]="${NOTE[${t}]:+${NOTE[${t}]}; }a replica left the read set during the runs: ${exits}"
                    else
                        NOTE[${t}]="did not start (log above)"
                    fi
                    stop_bg "${SY_PID}"
                    SY_TARGET_ARGS=()
                    SY_ROUTING_SED=""
                    ;;
                pgbouncer)
                    log "pgbench: pgbouncer on ${port}"
                    run_pgbouncer "${port}"
                    ;;
                pgpool)
                    log "pgbench: pgpool-II on ${port}"
                    run_pgpool "${port}"
                    ;;
                pgcat | pgdog)
                    local var="${t^^}_BIN"
                    if [ -z "${!var:-}" ] || [ ! -x "${!var}" ]; then
                        NOTE["${t}"]="skipped: set ${var} to its binary to include it"
                        continue
                    fi
                    log "pgbench: ${t} on ${port}"
                    "run_${t}" "${port}"
                    ;;
                *) die "unknown target ${t}" ;;
            esac
            has "${RAN_TARGETS}" "${t}" || RAN_TARGETS+=" ${t}"
        done
    done
    settle_rounds

    echo
    echo "== 1. pgbench (scale ${SCALE}, ${DURATION} s per cell, median of ${ROUNDS} round(s); tps and ratio to direct) =="
    ! has "${CELLS}" select-simple || print_table select-simple "select-only -M simple" "${CLIENTS}"
    ! has "${CELLS}" select-extended || print_table select-extended "select-only -M extended" "${CLIENTS}"
    ! has "${CELLS}" select-prepared || print_table select-prepared "select-only -M prepared" "${CLIENTS}"
    ! has "${CELLS}" tpcb-like || print_table tpcb-like "tpcb-like -M simple" "${TPCB_CLIENTS}"
    ! has "${CELLS}" read-txn || print_table read-txn "read-only transactions (BEGIN; 2 selects; END) -M simple" "${TPCB_CLIENTS}"
    local m
    for m in simple extended prepared; do
        ! has "${CELLS}" "mix-${m}" || print_table "mix-${m}" "80/20 mix -M ${m}" "${CLIENTS}"
    done
    [ -z "${SYNC_COMMIT}" ] || echo "synchronous_commit = ${SYNC_COMMIT} on the primary for the run"
    echo
    echo "direct = the primary alone; switchyard (balance: ${BALANCE}), pgcat and pgdog split reads over the"
    echo "2 replicas; pgbouncer is in front of the primary only; pgpool balances over all 3. \"fails\" ="
    echo "pgbench aborted (e.g. -M prepared through PgBouncer 1.18 transaction mode: named statements are"
    echo "lost between transactions). Switchyard, PgBouncer and Pgpool-II reach the servers over"
    if [ "${BACKENDS}" = socket ]; then echo "their Unix-domain sockets (BACKENDS=socket); PgCat and PgDog over TCP."; else echo "TCP (BACKENDS=tcp)."; fi
    for t in ${TARGETS}; do [ -z "${NOTE[${t}]:-}" ] || echo "${t}: ${NOTE[${t}]}"; done
}

# ---- 2. sysbench ----

sb() { # workload port command extra-args...
    local workload="$1" port="$2" command="$3"
    shift 3
    sysbench "${workload}" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="${port}" \
        --mysql-user=app --mysql-password=app-secret --mysql-db=app \
        --tables="${SB_TABLES}" --table-size="${SB_TABLE_SIZE}" "$@" "${command}"
}

mysql_root() { # port sql
    mariadb --no-defaults -N -B -h127.0.0.1 -P"$1" -uroot --password="${MY_ROOT_PASSWORD}" --connect-timeout=5 -e "$2"
}

wait_my_replicas() {
    local pos port
    pos="$(mysql_root "${MY_PRIMARY_PORT}" "SELECT @@gtid_binlog_pos")"
    for port in "${MY_REPLICA_PORTS[@]}"; do
        [ "$(mysql_root "${port}" "SELECT MASTER_GTID_WAIT('${pos}', 120)")" = "0" ] ||
            log "warning: MariaDB replica ${port} did not reach ${pos} within 120 s"
    done
}

# sbrun LABEL WORKLOAD PORT THREADS -> tps, or "fails" (first errors to stderr)
sbrun() {
    local logf="${TMP}/sysbench-$1-$2-$4.log" rc=0 tps
    sb "$2" "$3" run --threads="$4" --time="${DURATION}" >"${logf}" 2>&1 || rc=$?
    tps="$(sed -n 's/^ *transactions: .*(\([0-9.]*\) per sec.)/\1/p' "${logf}" | head -1)"
    if [ "${rc}" != 0 ] || [ -z "${tps}" ]; then
        log "  $1 $2 threads=$4: fails (exit ${rc}):"
        grep -m4 -iE 'fatal|error' "${logf}" | sed 's/^/    /' >&2 || tail -n 4 "${logf}" >&2
        echo fails
    else
        echo "${tps}"
    fi
}

part_sysbench() {
    local port w t
    log "sysbench: preparing ${SB_TABLES} tables of ${SB_TABLE_SIZE} rows on the MariaDB primary..."
    sb oltp_read_write "${MY_PRIMARY_PORT}" cleanup >/dev/null 2>&1 || true
    SB_PREPARED=1
    sb oltp_read_write "${MY_PRIMARY_PORT}" prepare --threads="${SB_TABLES}" >"${TMP}/sysbench-prepare.log" 2>&1 ||
        { tail -n 20 "${TMP}/sysbench-prepare.log" >&2; die "sysbench prepare failed"; }
    wait_my_replicas
    declare -A S=()
    for w in oltp_read_only oltp_read_write; do
        for t in ${SB_THREADS}; do
            S["direct|${w}|${t}"]="$(sbrun direct "${w}" "${MY_PRIMARY_PORT}" "${t}")"
            log "  direct ${w} threads=${t}: ${S["direct|${w}|${t}"]}"
            wait_my_replicas
        done
    done
    alloc_port port
    local sy_error=""
    log "sysbench: switchyard mysql (transaction pool ${POOL_SIZE}) on ${port}"
    if start_switchyard sysbench mysql "${port}" "${POOL_SIZE}" 5s "${REPLICA_POOL_SIZE}"; then
        for w in oltp_read_only oltp_read_write; do
            for t in ${SB_THREADS}; do
                S["switchyard|${w}|${t}"]="$(sbrun switchyard "${w}" "${port}" "${t}")"
                log "  switchyard ${w} threads=${t}: ${S["switchyard|${w}|${t}"]}"
                wait_my_replicas
            done
        done
        local errs
        errs="$(proxy_problems "${SY_LOG}" | wc -l)"
        [ "${errs}" = 0 ] || sy_error="proxy log has ${errs} ERROR/WARN lines, e.g.: $(proxy_problems "${SY_LOG}" | head -n1 | cut -c1-300)"
    else
        sy_error="switchyard with a transaction-mode MySQL cluster did not start: $(tail -n 3 "${SY_LOG}" | tr '\n' ' ' | cut -c1-400)"
    fi
    stop_bg "${SY_PID}"
    sb oltp_read_write "${MY_PRIMARY_PORT}" cleanup >/dev/null 2>&1 || true
    SB_PREPARED=0

    echo
    echo "== 2. sysbench (MariaDB, ${SB_TABLES} x ${SB_TABLE_SIZE} rows, ${DURATION} s per cell; tps and ratio to direct) =="
    for w in oltp_read_only oltp_read_write; do
        printf '\n%-28s' "${w}"
        for t in ${SB_THREADS}; do printf ' %17s' "${t} thr tps (x dir)"; done
        printf '\n'
        local who v d
        for who in direct switchyard; do
            if [ "${who}" = direct ]; then printf '%-28s' "direct (primary)"; else printf '%-28s' "switchyard txn/${POOL_SIZE}+2x${REPLICA_POOL_SIZE}"; fi
            for t in ${SB_THREADS}; do
                v="${S["${who}|${w}|${t}"]:-n/a}" d="${S["direct|${w}|${t}"]:-}"
                if is_num "${v}" && is_num "${d}"; then
                    printf ' %17s' "$(printf '%.0f (x%s)' "${v}" "$(ratio "${v}" "${d}")")"
                else
                    printf ' %17s' "${v}"
                fi
            done
            printf '\n'
        done
    done
    [ -z "${sy_error}" ] || echo "switchyard (mysql): ${sy_error}"
}

# ---- 3. latency ----

LAT_ADDED=""
LAT_ADDED_BP=""
# lat_run LABEL PORT [HOST] -> "median_us p99_us count" (HOST: 127.0.0.1, or a socket directory)
lat_run() {
    local prefix="${TMP}/lat-$1" rc=0
    rm -f "${prefix}".*
    pgbench -n -h "${3:-127.0.0.1}" -p "$2" -M prepared -S -c 1 -j 1 -T "${LAT_DURATION}" -l --log-prefix="${prefix}" app \
        >"${prefix}.out" 2>&1 || rc=$?
    if [ "${rc}" != 0 ] || ! ls "${prefix}".[0-9]* >/dev/null 2>&1; then
        log "  latency $1: pgbench failed: $(grep -m1 -iE 'error|fatal|abort' "${prefix}.out" || tail -n1 "${prefix}.out")"
        echo "n/a n/a 0"
        return
    fi
    cat "${prefix}".[0-9]* | awk '{ print $3 }' | sort -n | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "n/a n/a 0"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            i = int(NR * 0.99); if (i < NR * 0.99) i++; if (i < 1) i = 1
            printf "%d %d %d\n", m, v[i], NR
        }'
}

# Median of the numbers on stdin ("n/a" and empty lines skipped); "n/a" when there are none.
median_of() {
    grep -E '^-?[0-9]+$' | sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "n/a") }'
}

# lat_round LABEL PORT [HOST]: one latency run, its "median p99 count" appended to lat.LABEL
lat_round() {
    lat_run "$@" >>"${TMP}/lat.$1"
}

# lat_col LABEL FIELD: the median over rounds of one field (1 median, 2 p99, 3 count) of LABEL
lat_col() {
    [ -f "${TMP}/lat.$1" ] || { echo n/a; return; }
    awk -v f="$2" '{ print $f }' "${TMP}/lat.$1" | median_of
}

# lat_added LABEL FIELD: the median over rounds of LABEL's field minus direct's in the same round
lat_added() {
    [ -f "${TMP}/lat.$1" ] || { echo n/a; return; }
    paste -d ' ' "${TMP}/lat.direct" "${TMP}/lat.$1" |
        awk -v f="$2" '$f ~ /^[0-9]+$/ && $(f + 3) ~ /^[0-9]+$/ { print $(f + 3) - $f }' | median_of
}

part_latency() {
    local sy_port="" pgb_port="" r label
    log "latency: pgbench -c 1 -S -M prepared -l, ${LAT_DURATION} s each, ${LAT_ROUNDS} rounds"
    rm -f "${TMP}"/lat.*
    alloc_port sy_port
    start_switchyard latency main "${sy_port}" "${POOL_SIZE}" 5s "${REPLICA_POOL_SIZE}" || sy_port=""
    local sy_pid="${SY_PID}" sy_sockdir="${SY_SOCKDIR}" bp_port="" bp_pid="" bp_sockdir=""
    # The same proxy with busy polling (it needs the one-thread runtime).
    if [ -n "${BUSY_POLL}" ] && [ "${BUSY_POLL}" != 0 ] && [[ " ${SWITCHYARD_ARGS:-} " == *" --threads 1 "* ]]; then
        alloc_port bp_port
        local args=("${SY_ARGS[@]}")
        SY_ARGS+=(--busy-poll "${BUSY_POLL}")
        start_switchyard latency-bp main "${bp_port}" "${POOL_SIZE}" 5s "${REPLICA_POOL_SIZE}" || bp_port=""
        SY_ARGS=("${args[@]}")
        bp_pid="${SY_PID}" bp_sockdir="${SY_SOCKDIR}"
    fi
    # PgBouncer as the reference for what one loopback hop through a pooler costs on this host
    # (one client keeps its server connection, so -M prepared works through it here).
    if has "${TARGETS}" pgbouncer; then
        alloc_port pgb_port
        start_pgbouncer "${TMP}/pgbouncer-latency" "${pgb_port}" 100 "${TMP}/pgbouncer-latency" || pgb_port=""
    fi
    # The targets alternate within each round; every added figure is paired with the direct run
    # of its own round.
    for r in $(seq 1 "${LAT_ROUNDS}"); do
        lat_round direct "${PRIMARY_PORT}"
        if [ -n "${sy_port}" ]; then
            lat_round switchyard "${sy_port}"
            # A client on the proxy's host may use its Unix-domain socket instead.
            lat_round switchyard-unix "${sy_port}" "${sy_sockdir}"
        fi
        if [ -n "${bp_port}" ]; then
            lat_round switchyard-bp "${bp_port}"
            lat_round switchyard-bp-unix "${bp_port}" "${bp_sockdir}"
        fi
        if [ -n "${pgb_port}" ]; then
            lat_round pgbouncer "${pgb_port}"
            lat_round pgbouncer-unix "${pgb_port}" "${TMP}/pgbouncer-latency"
        fi
        log "  latency round ${r} done"
    done
    stop_bg "${sy_pid}"
    [ -z "${bp_pid}" ] || stop_bg "${bp_pid}"
    [ -z "${pgb_port}" ] || stop_bg "${PGB_PID}"
    echo
    echo "== 3. latency (pgbench -c 1 -S -M prepared, ${LAT_DURATION} s, per query; medians of ${LAT_ROUNDS} rounds) =="
    printf '%-28s %12s %12s %12s %12s %12s\n' "" "median us" "p99 us" "queries" "added med" "added p99"
    for label in direct switchyard switchyard-unix switchyard-bp switchyard-bp-unix pgbouncer pgbouncer-unix; do
        [ -f "${TMP}/lat.${label}" ] || continue
        local name="${label}"
        case "${label}" in
        direct) name="direct (primary)" ;;
        switchyard) name="switchyard txn/${POOL_SIZE}+2x${REPLICA_POOL_SIZE}" ;;
        switchyard-bp) name="  ... --busy-poll ${BUSY_POLL}" ;;
        switchyard-bp-unix) name="  ... --busy-poll, socket" ;;
        pgbouncer) name="pgbouncer 1.18 txn/${POOL_SIZE}" ;;
        *-unix) name="  ... through its socket" ;;
        esac
        printf '%-28s %12s %12s %12s %12s %12s\n' "${name}" "$(lat_col "${label}" 1)" "$(lat_col "${label}" 2)" \
            "$(lat_col "${label}" 3)" "$([ "${label}" = direct ] || lat_added "${label}" 1)" \
            "$([ "${label}" = direct ] || lat_added "${label}" 2)"
    done
    if [ -f "${TMP}/lat.switchyard" ]; then
        echo "added by switchyard, round by round (median us): $(paste -d ' ' "${TMP}/lat.direct" "${TMP}/lat.switchyard" |
            awk '$1 ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ { printf "%s%d", (n++ ? " / " : ""), $4 - $1 }')"
        LAT_ADDED="$(lat_added switchyard 1)"
        [[ "${LAT_ADDED}" =~ ^-?[0-9]+$ ]] || LAT_ADDED=""
    fi
    if [ -f "${TMP}/lat.switchyard-bp" ]; then
        echo "added with --busy-poll ${BUSY_POLL}, round by round (median us): $(paste -d ' ' "${TMP}/lat.direct" "${TMP}/lat.switchyard-bp" |
            awk '$1 ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ { printf "%s%d", (n++ ? " / " : ""), $4 - $1 }')"
        LAT_ADDED_BP="$(lat_added switchyard-bp 1)"
        [[ "${LAT_ADDED_BP}" =~ ^-?[0-9]+$ ]] || LAT_ADDED_BP=""
    fi
}

# ---- 4. memory ----

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
KIB_PER_IDLE=""

part_memory() {
    local port idle_pid line before after open failed
    alloc_port port
    echo
    echo "== 4. memory and many clients (md5 user mdapp) =="
    log "memory: ${IDLE_CLIENTS} idle clients through a fresh switchyard on ${port}"
    if ! start_switchyard memory main "${port}" "${POOL_SIZE}" 5s; then
        echo "switchyard did not start: $(tail -n 3 "${SY_LOG}" | tr '\n' ' ')"
        return
    fi
    # Warm up (allocator arenas, pools, classifier) with a few logins first.
    "${CLIENT_BIN}" burst 200 --port "${port}" --user mdapp --password md5-secret --db app >"${TMP}/warmup.out" 2>&1 || true
    sleep 1
    before="$(rss_kib "${SY_PID}")"
    mkfifo "${TMP}/idle.in"
    (exec setsid "${CLIENT_BIN}" idle "${IDLE_CLIENTS}" --port "${port}" --user mdapp --password md5-secret \
        --db app <"${TMP}/idle.in" >"${TMP}/idle.out" 2>"${TMP}/idle.err") &
    idle_pid=$!
    STARTED+=("${idle_pid}")
    exec 7>"${TMP}/idle.in"
    IDLE_FD_OPEN=1
    line=""
    for _ in $(seq 1 3000); do
        line="$(grep -m1 '^ready' "${TMP}/idle.out" 2>/dev/null || true)"
        [ -n "${line}" ] && break
        alive "${idle_pid}" || break
        sleep 0.1
    done
    if [ -n "${line}" ]; then
        read -r _ open failed <<<"${line}"
        sleep 2
        after="$(rss_kib "${SY_PID}")"
        KIB_PER_IDLE="$(awk -v a="${after}" -v b="${before}" -v n="${open}" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / n }')"
        printf '%-40s %s\n' "idle clients open / failed" "${open} / ${failed}"
        printf '%-40s %s\n' "proxy RSS before / with them (KiB)" "${before} / ${after}"
        printf '%-40s %s\n' "KiB per idle client" "${KIB_PER_IDLE}"
        [ "${failed}" = 0 ] || sed 's/^/    /' "${TMP}/idle.err"
    else
        echo "idle clients never got ready:"
        tail -n 8 "${TMP}/idle.err"
    fi
    exec 7>&-
    IDLE_FD_OPEN=0
    stop_bg "${idle_pid}"
    stop_bg "${SY_PID}"

    alloc_port port
    log "burst: ${BURST_CLIENTS} concurrent clients, pool size ${BURST_POOL}, on ${port}"
    if ! start_switchyard burst main "${port}" "${BURST_POOL}" "${BURST_CHECKOUT_TIMEOUT}"; then
        echo "switchyard (pool ${BURST_POOL}) did not start: $(tail -n 3 "${SY_LOG}" | tr '\n' ' ')"
        return
    fi
    local out
    out="$("${CLIENT_BIN}" burst "${BURST_CLIENTS}" --port "${port}" --user mdapp --password md5-secret --db app 2>&1 || true)"
    echo "burst of ${BURST_CLIENTS} concurrent clients (pool ${BURST_POOL}, checkout_timeout ${BURST_CHECKOUT_TIMEOUT}):"
    printf '%s\n' "${out}" | sed 's/^/    /'
    printf '    proxy RSS after the burst: %s KiB\n' "$(rss_kib "${SY_PID}")"
    stop_bg "${SY_PID}"
}

# ---- 5. targets ----

# target_line LABEL TARGET MIN_RATIO MIN_CLIENTS: Switchyard's pgbench -S TPS against TARGET's in
# every cell with at least MIN_CLIENTS clients where TARGET ran (PgBouncer fails -M prepared:
# nothing to compare there); "not measured" when no cell compares.
target_line() {
    local label="$1" t="$2" min="$3" from="$4" w c sy other r worst="" verdict=met
    for w in select-simple select-extended select-prepared; do
        for c in ${CLIENTS}; do
            [ "${c}" -ge "${from}" ] || continue
            sy="${R["switchyard|${w}|${c}"]:-}" other="${R["${t}|${w}|${c}"]:-}"
            is_num "${other}" || continue
            is_num "${sy}" || { verdict="NOT met"; worst="switchyard fails ${w} c=${c}"; continue; }
            r="$(ratio "${sy}" "${other}")"
            awk -v r="${r}" -v m="${min}" 'BEGIN { exit !(r < m) }' && verdict="NOT met"
            if [ -z "${worst}" ] || awk -v r="${r}" -v w="${worst%% *}" 'BEGIN { exit !(r < w) }'; then worst="${r} (${w} c=${c})"; fi
        done
    done
    if [ -z "${worst}" ]; then
        printf '%-62s %s\n' "${label}" "not measured (no cell with ${from}+ clients where both ran)"
    else
        printf '%-62s %s\n' "${label}" "${verdict}, lowest ratio ${worst}"
    fi
}

part_targets() {
    echo
    echo "== 5. targets =="
    local verdict t
    if has "${PARTS}" pgbench; then
        for t in pgcat pgdog; do
            if ! has "${RAN_TARGETS}" "${t}"; then
                printf '%-62s %s\n' "switchyard -S tps >= 1.3x ${t}" "not measured (${NOTE[${t}]:-not run})"
                continue
            fi
            target_line "switchyard -S tps >= 1.3x ${t}" "${t}" 1.3 1
        done
        if has "${RAN_TARGETS}" pgbouncer; then
            target_line "switchyard -S tps >= pgbouncer at 16+ clients" pgbouncer 1.0 16
        fi
    fi
    if has "${PARTS}" latency; then
        if [ -n "${LAT_ADDED}" ]; then
            verdict="NOT met"
            [ "${LAT_ADDED}" -le 30 ] && verdict=met
            printf '%-62s %s\n' "median added latency <= 30 us at 1 client" "${verdict} (${LAT_ADDED} us)"
            if [ -n "${LAT_ADDED_BP}" ]; then
                verdict="NOT met"
                [ "${LAT_ADDED_BP}" -le 30 ] && verdict=met
                printf '%-62s %s\n' "  ... with --busy-poll ${BUSY_POLL} (a core polls at low load)" "${verdict} (${LAT_ADDED_BP} us)"
            fi
        else
            printf '%-62s %s\n' "median added latency <= 30 us at 1 client" "not measured"
        fi
    fi
    if has "${PARTS}" memory; then
        if [ -n "${KIB_PER_IDLE}" ]; then
            verdict="NOT met"
            awk -v k="${KIB_PER_IDLE}" 'BEGIN { exit !(k <= 8) }' && verdict=met
            printf '%-62s %s\n' "RSS per idle client <= 8 KiB" "${verdict} (${KIB_PER_IDLE} KiB)"
        else
            printf '%-62s %s\n' "RSS per idle client <= 8 KiB" "not measured"
        fi
    fi
}

echo "switchyard pooling benchmark: $(nproc) cores, QUICK=${QUICK}, SCALE=${SCALE}, DURATION=${DURATION} s, ROUNDS=${ROUNDS}, clients: ${CLIENTS}, pool size ${POOL_SIZE} (switchyard: ${POOL_SIZE} on the primary, ${REPLICA_POOL_SIZE} on each replica), switchyard args: ${SWITCHYARD_ARGS:-none}, BACKENDS=${BACKENDS}"
has "${PARTS}" pgbench && part_pgbench
has "${PARTS}" sysbench && part_sysbench
has "${PARTS}" latency && part_latency
has "${PARTS}" memory && part_memory
part_targets
