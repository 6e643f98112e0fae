#!/usr/bin/env bash
# CPU per query: pgbench -S (or sysbench, LOAD=sysbench) through Switchyard (transaction pooling,
# pool of 20, reads over the demo's two replicas) with the proxy's own CPU time per transaction
# (user and system, from /proc/<pid>/stat), several builds alternating round by round, medians
# printed. On a host shared with other work TPS swings a lot; CPU per transaction much less, so
# compare that first.
#
#   bench/cpu_per_query.sh                              the release build, 1 and 16 clients, 5 rounds
#   BINS="/tmp/before/switchyard target/release/switchyard" bench/cpu_per_query.sh
#   ARGS="--threads 1" CLIENTS="1 16 64" MODE=prepared ROUNDS=7 DURATION=5 bench/cpu_per_query.sh
#   PERF=1 bench/cpu_per_query.sh                       also a perf profile of each build (c=16)
#   PERF=1 PERF_EVENT=cpu-clock:u bench/cpu_per_query.sh   ... of user space only
#   CALLGRIND=1 bench/cpu_per_query.sh                  user-space instructions per transaction
#                                                       under valgrind (repeatable whatever the
#                                                       load; Switchyard builds only)
#   CALLGRIND=1 CALLGRIND_OUT=/tmp/cg bench/cpu_per_query.sh   ... and keep each run's callgrind
#                                                       file there for callgrind_annotate
#   PGBOUNCER=1 bench/cpu_per_query.sh                  PgBouncer (transaction mode, primary only)
#                                                       as a reference (run as root)
#   POOL_SIZE=8 REPLICA_POOL_SIZE=4 bench/cpu_per_query.sh   pool sizes (default 20; replicas: the same)
#   BALANCE=round_robin bench/cpu_per_query.sh          replica choice (default: least_connections)
#   BACKENDS=socket bench/cpu_per_query.sh              Switchyard and PgBouncer reach the servers
#                                                       over their Unix-domain sockets (default tcp)
#   SERVERS=1 bench/cpu_per_query.sh                   also the database servers' CPU time and
#                                                       voluntary context switches per transaction
#                                                       (every `postgres` or `mariadbd` process)
#   SCRIPT=/tmp/txn.sql bench/cpu_per_query.sh        pgbench runs that script instead of -S
#   LOAD=sysbench bench/cpu_per_query.sh                the MySQL side instead: sysbench
#                                                       oltp_read_only (SB_WORKLOAD) through the demo's
#                                                       cluster `mysql`, per query (CLIENTS = threads;
#                                                       tables made and dropped on the primary)
#
# Needs the demo's PostgreSQL servers (scripts/demo.sh) and pgbench tables (bench/pooling.sh or
# bench/pgbench.sh create them), or with LOAD=sysbench its MariaDB servers. Every process it starts
# is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BINS="${BINS:-${ROOT}/target/release/switchyard}"
ARGS="${ARGS:-}"
CLIENTS="${CLIENTS:-1 16}"
MODE="${MODE:-simple}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5}"
PERF="${PERF:-0}"
PGBOUNCER="${PGBOUNCER:-0}"
CALLGRIND="${CALLGRIND:-0}"
SERVERS="${SERVERS:-0}"
# pgbench's load: -S, or the script SCRIPT names.
PGB_LOAD=(-S)
[ -z "${SCRIPT:-}" ] || PGB_LOAD=(-f "${SCRIPT}")
PRIMARY_PORT="${DEMO_PRIMARY_PORT:-15432}"
LOAD="${LOAD:-pgbench}"
SB_WORKLOAD="${SB_WORKLOAD:-oltp_read_only}"
MYSQL_PRIMARY_PORT="${DEMO_MYSQL_PRIMARY_PORT:-13306}"
DEMO_CONFIG="${ROOT}/.demo/switchyard.yaml"
export PGPASSWORD=app-secret PGUSER=app PGHOST=127.0.0.1 PGDATABASE=app

log() { printf 'cpu_per_query: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ -f "${DEMO_CONFIG}" ] || die "no ${DEMO_CONFIG}: run scripts/demo.sh once"
case "${LOAD}" in
pgbench) CLUSTER=main UNIT=transaction ;;
sysbench)
    CLUSTER=mysql UNIT=query
    [ "${PGBOUNCER}" != 1 ] || { log "LOAD=sysbench: PgBouncer is left out"; PGBOUNCER=0; }
    port_in_use "${MYSQL_PRIMARY_PORT}" || die "the demo's MariaDB primary is not running: scripts/demo.sh"
    ;;
*) die "LOAD must be pgbench or sysbench" ;;
esac
port_in_use "${PRIMARY_PORT}" || die "the demo's primary is not running: scripts/demo.sh"
for b in ${BINS}; do [ -x "${b}" ] || die "no executable ${b} (cargo build --release)"; done
HZ="$(getconf CLK_TCK)"
# shellcheck source=bench/lib_pgbouncer.sh
. "${ROOT}/bench/lib_pgbouncer.sh"
case "${BACKENDS:-tcp}" in
tcp) STRIP_SOCKETS='s|, socket: "[^"]*"||' PGB_HOST=127.0.0.1 ;;
socket)
    STRIP_SOCKETS=""
    PGB_HOST="$(demo_socket_dir "${DEMO_CONFIG}" "${PRIMARY_PORT}")"
    [ -n "${PGB_HOST}" ] || die "BACKENDS=socket: ${DEMO_CONFIG} names no server sockets (rerun scripts/demo.sh)"
    ;;
*) die "BACKENDS must be tcp or socket" ;;
esac

TMP="$(mktemp -d /tmp/switchyard-cpu.XXXXXX)"
chmod 755 "${TMP}"
# Under CALLGRIND=1 every proxy runs in valgrind, instrumented only while the load is measured.
VG=()
if [ "${CALLGRIND}" = 1 ]; then
    command -v callgrind_control >/dev/null || die "CALLGRIND=1 needs valgrind"
    # PgBouncer runs as another OS user, whose valgrind callgrind_control cannot reach.
    [ "${PGBOUNCER}" != 1 ] || { log "CALLGRIND=1: PgBouncer is left out"; PGBOUNCER=0; }
    mkdir -m 777 "${TMP}/cg"
    VG=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=${TMP}/cg/out.%p")
fi
PID=""
cleanup() {
    local rc=$?
    if [ -n "${PID}" ]; then kill -- "-${PID}" 2>/dev/null || kill "${PID}" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    [ "${LOAD}" != sysbench ] || sb "${MYSQL_PRIMARY_PORT}" 1 1 cleanup >/dev/null 2>&1 || true
    rm -rf "${TMP}"
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NEXT_PORT="${PORT_BASE:-17600}"
alloc_port() { # VAR: a free local port (not handed out before in this run) into VAR
    while port_in_use "${NEXT_PORT}"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    printf -v "$1" '%s' "${NEXT_PORT}"
    NEXT_PORT=$((NEXT_PORT + 1))
}

# The demo's cluster CLUSTER and its users, in transaction pooling mode, on PORT (admin on ADMIN).
write_config() { # file port admin
    {
        echo "admin: { listen: \"127.0.0.1:$3\" }"
        echo "clusters:"
        awk -v name="${CLUSTER}" '/^[^ #]/ { inside = 0 } /^  - name: / { inside = ($3 == name) }
             inside && !/^    pool:/ { print }' "${DEMO_CONFIG}" |
            sed -e "s|^    listen: .*|    listen: \"127.0.0.1:$2\"|" \
                -e '/^    listen_socket: /d' \
                -e "${STRIP_SOCKETS}" \
                -e "s|role: replica }|role: replica${REPLICA_POOL_SIZE:+, pool_size: ${REPLICA_POOL_SIZE}} }|" \
                -e "s|balance: [a-z_]*|balance: ${BALANCE:-least_connections}|"
        echo "    pool: { mode: transaction, size: ${POOL_SIZE:-20}, checkout_timeout: 5s }"
        awk -v name="${CLUSTER}" '/^users:/ { inside = 1; print; next } /^[^ #]/ { inside = 0 }
             inside && /^  - / && (!/clusters: \[/ || index($0, "clusters: [" name "]")) { print }' "${DEMO_CONFIG}"
    } >"$1"
}

cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

# server_ticks: "user+sys ticks, voluntary context switches" summed over the database servers'
# processes and threads (postgres is one process per connection, mariadbd one thread per one).
server_ticks() {
    local comm t name
    case "${LOAD}" in pgbench) comm=postgres ;; *) comm=mariadbd ;; esac
    for t in /proc/[0-9]*/task/[0-9]*; do
        read -r name <"${t}/comm" 2>/dev/null && [ "${name}" = "${comm}" ] || continue
        # One awk per thread: its ticks from stat (line 1), its switches from status.
        awk 'FNR == NR { c = $14 + $15; next } /^voluntary_ctxt_switches/ { print c, $2 }' \
            "${t}/stat" "${t}/status" 2>/dev/null
    done | awk '{ c += $1; v += $2 } END { printf "%d %d\n", c, v }'
}

sb() { # port threads seconds command: sysbench SB_WORKLOAD as the demo's app user
    sysbench "${SB_WORKLOAD}" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$1" \
        --mysql-user=app --mysql-password=app-secret --mysql-db=app --tables=4 --table-size=10000 \
        --threads="$2" --time="$3" "$4"
}

# load PORT CLIENTS SECONDS: one run of the load generator; prints "count tps" (count: pgbench's
# transactions or sysbench's queries), nothing when it failed (its error on stderr).
load() {
    local out n tps
    if [ "${LOAD}" = sysbench ]; then
        out="$(sb "$1" "$2" "$3" run 2>&1)" || true
        n="$(sed -n 's/^ *queries: *\([0-9]*\).*/\1/p' <<<"${out}")"
        tps="$(sed -n 's/^ *transactions: *[0-9]* *(\([0-9.]*\).*/\1/p' <<<"${out}")"
    else
        local j=$(($2 < 2 ? $2 : 2))
        out="$(pgbench -n "${PGB_LOAD[@]}" -M "${MODE}" -c "$2" -j "${j}" -T "$3" -p "$1" 2>&1)" || true
        n="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"${out}")"
        tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"${out}" | head -1)"
    fi
    if [ -z "${n}" ] || [ "${n}" = 0 ]; then
        log "${LOAD} failed: $(grep -m1 -iE 'error|fatal|abort' <<<"${out}" || true)"
        return
    fi
    echo "${n} ${tps}"
}

# measure LABEL PORT CLIENTS PERFDATA -> "label c tps count user_us sys_us" (per UNIT)
measure() {
    local label="$1" port="$2" c="$3" perfdata="$4" u0 s0 u1 s1 got n tps perf_pid=""
    local sc0=0 sv0=0 sc1=0 sv1=0
    load "${port}" "${c}" 2 >/dev/null
    [ "${SERVERS}" != 1 ] || read -r sc0 sv0 <<<"$(server_ticks)"
    read -r u0 s0 <<<"$(cpu_ticks "${PID}")"
    if [ "${CALLGRIND}" = 1 ]; then
        callgrind_control -z "${PID}" >/dev/null 2>&1 && callgrind_control -i on "${PID}" >/dev/null 2>&1
    fi
    if [ -n "${perfdata}" ]; then
        perf record -q -g -F 999 ${PERF_EVENT:+-e "${PERF_EVENT}"} -p "${PID}" -o "${perfdata}" -- sleep "${DURATION}" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    got="$(load "${port}" "${c}" "${DURATION}")"
    read -r u1 s1 <<<"$(cpu_ticks "${PID}")"
    [ "${SERVERS}" != 1 ] || read -r sc1 sv1 <<<"$(server_ticks)"
    [ -z "${perf_pid}" ] || wait "${perf_pid}" || true
    local instr=0
    if [ "${CALLGRIND}" = 1 ]; then
        # Instructions since the zeroing: the newest dump's totals (its summary line is 0).
        callgrind_control -i off "${PID}" >/dev/null 2>&1 && callgrind_control -d "${PID}" >/dev/null 2>&1
        local dump
        # shellcheck disable=SC2012 # our own dump names: out.<pid>.<n>
        dump="$(ls -t "${TMP}"/cg/out.* | head -1)"
        instr="$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "${dump}" | head -1)"
        if [ -n "${CALLGRIND_OUT:-}" ]; then
            mkdir -p "${CALLGRIND_OUT}"
            cp "${dump}" "${CALLGRIND_OUT}/$(tr / _ <<<"${label}")-c${c}-$(date +%s).callgrind"
        fi
    fi
    read -r n tps <<<"${got}"
    if [ -z "${n}" ]; then
        log "${label} c=${c}: no result"
        return
    fi
    awk -v l="${label}" -v c="${c}" -v t="${tps}" -v n="${n}" -v hz="${HZ}" \
        -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v i="${instr:-0}" -v cg="${CALLGRIND}" \
        -v sc=$((sc1 - sc0)) -v sv=$((sv1 - sv0)) \
        'BEGIN { if (cg == 1) { u = i * hz / 1e6; s = 0 } # instructions in the "user" column
                 printf "%s %d %.0f %d %.1f %.1f %.1f %.2f\n", l, c, t, n, u / hz * 1e6 / n,
                     s / hz * 1e6 / n, sc / hz * 1e6 / n, sv / n }'
}

run_switchyard() { # bin round
    local bin="$1" port admin conf label body
    alloc_port port
    alloc_port admin
    conf="${TMP}/switchyard.yaml"
    label="${bin#"${ROOT}"/}"
    write_config "${conf}" "${port}" "${admin}"
    read -r -a extra <<<"${ARGS}"
    RUST_LOG=switchyard=warn setsid "${VG[@]+"${VG[@]}"}" "${bin}" --config "${conf}" "${extra[@]+"${extra[@]}"}" \
        </dev/null >>"${TMP}/switchyard.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 600); do
        body="$(curl -s -m 1 "http://127.0.0.1:${admin}/api/clusters" || true)"
        grep -q '"state":"healthy"' <<<"${body}" && port_in_use "${port}" && break
        sleep 0.1
    done
    if ! kill -0 "${PID}" 2>/dev/null; then
        tail -n 5 "${TMP}/switchyard.log" >&2
        die "${label} did not start"
    fi
    grep -q '"state":"healthy"' <<<"${body}" || log "${label}: no healthy replica yet"
    for c in ${CLIENTS}; do
        local perfdata=""
        if [ "${PERF}" = 1 ] && [ "$2" = 1 ] && [ "${c}" = "$(last_word "${CLIENTS}")" ]; then
            perfdata="${TMP}/perf-${#PERFS[@]}.data"
            PERFS+=("${label}|${perfdata}")
        fi
        measure "${label}" "${port}" "${c}" "${perfdata}" >>"${TMP}/results"
    done
    kill -- "-${PID}" 2>/dev/null || kill "${PID}" 2>/dev/null || true
    wait "${PID}" 2>/dev/null || true
    PID=""
}

run_pgbouncer() {
    local port dir="${TMP}/pgbouncer"
    alloc_port port
    pgbouncer_config "${dir}" "${port}" "${PRIMARY_PORT}" "${POOL_SIZE:-20}" 1000 "" "${PGB_HOST}"
    chown -R postgres:postgres "${dir}"
    setsid setpriv --reuid=postgres --regid=postgres --init-groups -- pgbouncer "${dir}/pgbouncer.ini" \
        </dev/null >>"${dir}/log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do port_in_use "${port}" && break; sleep 0.1; done
    for c in ${CLIENTS}; do measure pgbouncer "${port}" "${c}" "" >>"${TMP}/results"; done
    kill -- "-${PID}" 2>/dev/null || kill "${PID}" 2>/dev/null || true
    wait "${PID}" 2>/dev/null || true
    PID=""
}

last_word() { local w; for w in $1; do :; done; echo "${w}"; }

PERFS=()
: >"${TMP}/results"
if [ "${LOAD}" = sysbench ]; then
    WHAT="sysbench ${SB_WORKLOAD}"
    sb "${MYSQL_PRIMARY_PORT}" 1 1 cleanup >/dev/null 2>&1 || true
    sb "${MYSQL_PRIMARY_PORT}" 4 1 prepare >/dev/null || die "sysbench prepare failed"
else
    WHAT="pgbench ${PGB_LOAD[*]} -M ${MODE}"
fi
log "${ROUNDS} rounds of ${WHAT}, ${DURATION} s, clients: ${CLIENTS}"
for round in $(seq 1 "${ROUNDS}"); do
    for b in ${BINS}; do run_switchyard "${b}" "${round}"; done
    [ "${PGBOUNCER}" != 1 ] || run_pgbouncer
    log "round ${round} done"
done

echo
echo "${WHAT}, medians of ${ROUNDS} rounds of ${DURATION} s; proxy CPU per ${UNIT} ($(nproc) cores, shared)"
if [ "${CALLGRIND}" = 1 ]; then
    echo "(under valgrind: TPS is not comparable; the columns are user-space instructions per ${UNIT})"
    printf '%-34s %5s %9s %10s %9s %9s\n' "" clients tps "instr" "instr" "-"
else
    printf '%-34s %5s %9s %10s %9s %9s' "" clients tps "cpu us" "user us" "sys us"
    [ "${SERVERS}" != 1 ] || printf ' %10s %9s' "server us" "srv vcsw"
    echo
fi
sort -k2,2n -k1,1 "${TMP}/results" | awk -v servers="${SERVERS}" '
    function median(a, n,    i, j, v) { # insertion sort of a[1..n] (portable awk), middle value
        for (i = 2; i <= n; i++) {
            v = a[i]
            for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]
            a[j + 1] = v
        }
        return a[int((n + 1) / 2)]
    }
    function flush() {
        if (key == "") return
        printf "%-34s %5d %9.0f %10.1f %9.1f %9.1f", label, clients,
            median(t, i), median(cpu, i), median(u, i), median(s, i)
        if (servers == 1) printf " %10.1f %9.2f", median(sc, i), median(sv, i)
        printf "\n"
        split("", t); split("", u); split("", s); split("", cpu); split("", sc); split("", sv)
    }
    { k = $1 " " $2; if (k != key) { flush(); key = k; label = $1; clients = $2; i = 0 }
      i++; t[i] = $3; u[i] = $5; s[i] = $6; cpu[i] = $5 + $6; sc[i] = $7; sv[i] = $8 }
    END { flush() }'

for p in "${PERFS[@]+"${PERFS[@]}"}"; do
    echo
    echo "== perf profile: ${p%%|*} (c=$(last_word "${CLIENTS}"), self time, top symbols) =="
    perf report -i "${p#*|}" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -5
    perf report -i "${p#*|}" --no-children --sort sym --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' | head -"${PERF_TOP:-25}"
done
