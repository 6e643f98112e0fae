#!/usr/bin/env bash
# Read-your-writes against eventual on a write/read mix (issue 22's 80/20 mix: pgbench
# select-only@8 + tpcb-like@2, 32 clients, 2 threads) through Switchyard in transaction pooling
# (pool of 32 per server, reads over the demo's 2 replicas), with the servers committing
# asynchronously (`synchronous_commit = off`, ALTER SYSTEM on the demo primary; set back on exit).
# Each build in BINS runs each consistency in LEVELS, builds and levels alternating round by round;
# prints each cell's TPS per round and the median.
#
#   scripts/demo.sh && bench/ryw_mix.sh                 (the demo must be running)
#   BINS="/tmp/old/switchyard target/release/switchyard" ROUNDS=3 DURATION=10 bench/ryw_mix.sh
#
# Env: BINS (target/release/switchyard), LEVELS ("read_your_writes eventual"), EXTRA_ROUTING (e.g.
# ", causal_wait: true", appended to the routing line), MODE (simple), CLIENTS (32), DURATION (10),
# ROUNDS (2), SCALE (10; pgbench -i when the tables are missing), SYNC_COMMIT (off), the demo's
# DEMO_* port variables. Everything shares this machine's cores: the numbers are noisy.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BINS="${BINS:-${ROOT}/target/release/switchyard}"
LEVELS="${LEVELS:-read_your_writes eventual}"
EXTRA_ROUTING="${EXTRA_ROUTING:-}"
MODE="${MODE:-simple}"
CLIENTS="${CLIENTS:-32}"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-2}"
SCALE="${SCALE:-10}"
SYNC_COMMIT="${SYNC_COMMIT:-off}"
PRIMARY_PORT="${DEMO_PRIMARY_PORT:-15432}"
DEMO_CONFIG="${ROOT}/.demo/switchyard.yaml"
export PGPASSWORD=app-secret PGUSER=app PGHOST=127.0.0.1

log() { printf 'ryw_mix: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
su_sql() { PGPASSWORD=postgres-demo psql -X -q -At -h 127.0.0.1 -p "${PRIMARY_PORT}" -U postgres -d app -c "$1"; }

[ -f "${DEMO_CONFIG}" ] && port_in_use "${PRIMARY_PORT}" || die "start the demo first (scripts/demo.sh)"
TMP="$(mktemp -d)"
PID=""
cleanup() {
    local rc=$?
    if [ -n "${PID}" ]; then kill "${PID}" 2>/dev/null || true; wait "${PID}" 2>/dev/null || true; fi
    # Two statements, two calls: ALTER SYSTEM cannot run in the implicit transaction of one -c.
    { su_sql "ALTER SYSTEM RESET synchronous_commit" && su_sql "SELECT pg_reload_conf()"; } >/dev/null 2>&1 || true
    rm -rf "${TMP}"
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(su_sql "SELECT to_regclass('pgbench_accounts') IS NOT NULL")" != t ]; then
    log "pgbench -i -s ${SCALE}"
    PGPASSWORD=postgres-demo pgbench -i -q -s "${SCALE}" -h 127.0.0.1 -p "${PRIMARY_PORT}" -U postgres app >/dev/null 2>&1
    su_sql "GRANT ALL ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO app" >/dev/null
fi
su_sql "ALTER SYSTEM SET synchronous_commit = '${SYNC_COMMIT}'" >/dev/null
su_sql "SELECT pg_reload_conf()" >/dev/null
sleep 1

NEXT_PORT=17700
alloc_port() { while port_in_use "${NEXT_PORT}"; do NEXT_PORT=$((NEXT_PORT + 1)); done; printf -v "$1" '%s' "${NEXT_PORT}"; NEXT_PORT=$((NEXT_PORT + 1)); }

write_config() { # file port admin level
    {
        echo "admin: { listen: \"127.0.0.1:$3\" }"
        echo "clusters:"
        awk '/^[^ #]/ { inside = 0 } /^  - name: / { inside = ($3 == "main") }
             inside && !/^    pool:/ { print }' "${DEMO_CONFIG}" |
            sed -e "s|^    listen: .*|    listen: \"127.0.0.1:$2\"|" -e '/^    listen_socket: /d' \
                -e "s|^    routing: {\(.*\)}|    routing: {\1, consistency: $4${EXTRA_ROUTING} }|"
        echo "    pool: { mode: transaction, size: 32, checkout_timeout: 5s }"
        awk '/^users:/ { inside = 1; print; next } /^[^ #]/ { inside = 0 }
             inside && /^  - / && (!/clusters: \[/ || index($0, "clusters: [main]")) { print }' "${DEMO_CONFIG}"
    } >"$1"
}

run() { # bin level -> tps
    local port admin body out
    alloc_port port
    alloc_port admin
    write_config "${TMP}/sy.yaml" "${port}" "${admin}" "$2"
    grep -q "consistency: $2" "${TMP}/sy.yaml" || die "could not set the consistency in ${TMP}/sy.yaml"
    RUST_LOG=switchyard=warn "$1" --config "${TMP}/sy.yaml" </dev/null >>"${TMP}/sy.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 300); do
        body="$(curl -s -m 1 "http://127.0.0.1:${admin}/api/clusters" || true)"
        grep -q '"state":"healthy"' <<<"${body}" && port_in_use "${port}" && break
        sleep 0.1
    done
    kill -0 "${PID}" 2>/dev/null || { tail -n 5 "${TMP}/sy.log" >&2; die "$1 did not start"; }
    out="$(pgbench -n -p "${port}" -M "${MODE}" -c "${CLIENTS}" -j 2 -T "${DURATION}" \
        -b select-only@8 -b tpcb-like@2 app 2>&1)" || { echo "${out}" >&2; echo 0; }
    kill "${PID}" 2>/dev/null || true
    wait "${PID}" 2>/dev/null || true
    PID=""
    sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"${out}" | head -1
}

for round in $(seq 1 "${ROUNDS}"); do
    for bin in ${BINS}; do
        for level in ${LEVELS}; do
            tps="$(run "${bin}" "${level}")"
            echo "${bin} ${level} ${tps}" >>"${TMP}/results"
            log "round ${round}: ${bin} ${level}: ${tps} TPS"
        done
    done
done
printf '\n%-50s %-18s %s\n' "build" "consistency" "TPS per round -> median"
for bin in ${BINS}; do
    for level in ${LEVELS}; do
        vals="$(awk -v b="${bin}" -v l="${level}" '$1 == b && $2 == l { printf "%.0f\n", $3 }' "${TMP}/results")"
        median="$(sort -n <<<"${vals}" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
        printf '%-50s %-18s %s -> %s\n' "${bin}" "${level}" "$(tr '\n' ' ' <<<"${vals}")" "${median}"
    done
done
