#!/usr/bin/env bash
# pgbench through switchyard vs directly against the primary, in one run; prints TPS, mean latency
# and the proxy/direct ratio per workload.
#
#   bench/pgbench.sh            uses the demo cluster (scripts/demo.sh starts it if needed)
#   SCALE=10 CLIENTS=32 DURATION=20 bench/pgbench.sh
#
# Everything (pgbench, proxy, primary, two replicas) shares this machine's cores, as in the issue's
# reference table, so only the ratios are comparable between machines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCALE="${SCALE:-10}"
CLIENTS="${CLIENTS:-32}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-20}"
PRIMARY_PORT="${DEMO_PRIMARY_PORT:-15432}"
PROXY_PORT="${PROXY_PORT:-6432}"
export PGPASSWORD=app-secret PGUSER=app PGHOST=127.0.0.1

if ! (exec 3<>"/dev/tcp/127.0.0.1/${PROXY_PORT}") 2>/dev/null; then
    "${ROOT}/scripts/demo.sh" >/dev/null
fi

psql_su() { PGPASSWORD=postgres-demo psql -X -q -h 127.0.0.1 -p "${PRIMARY_PORT}" -U postgres -d app -c "$1"; }
psql_su "GRANT CREATE ON SCHEMA public TO app" >/dev/null
echo "initialising pgbench scale ${SCALE} on the primary..."
pgbench -i -q -s "${SCALE}" -p "${PRIMARY_PORT}" app >/dev/null 2>&1
sleep 2 # let the replicas replay the load

run() { # port mode extra-args... -> "tps latency_ms"
    local port="$1" mode="$2"
    shift 2
    local out
    out="$(pgbench -n -p "${port}" -M "${mode}" -c "${CLIENTS}" -j "${THREADS}" -T "${DURATION}" "$@" app 2>&1)" || {
        echo "${out}" >&2
        echo "0 0"
        return
    }
    local tps lat
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"${out}" | head -1)"
    lat="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"${out}" | head -1)"
    echo "${tps:-0} ${lat:-0}"
}

printf '\n%-28s %12s %10s %12s %10s %7s\n' "workload (-c ${CLIENTS})" "direct tps" "lat ms" "proxy tps" "lat ms" "ratio"
for spec in "select-only simple:-S:simple" "select-only extended:-S:extended" "select-only prepared:-S:prepared" "tpcb-like simple::simple"; do
    IFS=: read -r name flag mode <<<"${spec}"
    read -r dt dl <<<"$(run "${PRIMARY_PORT}" "${mode}" ${flag})"
    read -r pt pl <<<"$(run "${PROXY_PORT}" "${mode}" ${flag})"
    ratio="$(awk -v p="${pt}" -v d="${dt}" 'BEGIN { if (d > 0) printf "%.2f", p / d; else print "n/a" }')"
    printf '%-28s %12.0f %10s %12.0f %10s %7s\n' "${name}" "${dt}" "${dl}" "${pt}" "${pl}" "${ratio}"
done
echo
echo "direct = the primary alone; proxy = switchyard splitting reads over two replicas (writes to the primary)."
