#!/usr/bin/env bash
# Cost of the consistency levels through switchyard (PostgreSQL demo cluster): a write followed by a
# read of it, and a read alone, under eventual / read_your_writes / global / strong.
#
#   bench/consistency.sh        (starts the demo with scripts/demo.sh if it is not running)
#   CLIENTS=8 DURATION=10 bench/consistency.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLIENTS="${CLIENTS:-8}"
DURATION="${DURATION:-10}"
PRIMARY_PORT="${DEMO_PRIMARY_PORT:-15432}"
PROXY_PORT="${PROXY_PORT:-6432}"
export PGPASSWORD=app-secret PGUSER=app PGHOST=127.0.0.1

if ! (exec 3<>"/dev/tcp/127.0.0.1/${PROXY_PORT}") 2>/dev/null; then
    "${ROOT}/scripts/demo.sh" >/dev/null
fi
PGPASSWORD=postgres-demo psql -X -q -h 127.0.0.1 -p "${PRIMARY_PORT}" -U postgres -d app \
    -c "DROP TABLE IF EXISTS ryw_bench; CREATE TABLE ryw_bench (id bigserial PRIMARY KEY, v int); CREATE INDEX ON ryw_bench (v); GRANT ALL ON ryw_bench, ryw_bench_id_seq TO app" >/dev/null
sleep 1

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cat >"${work}/write_read.sql" <<'SQL'
\set n random(1, 1000000000)
INSERT INTO ryw_bench (v) VALUES (:n);
SELECT count(*) FROM ryw_bench WHERE v = :n;
SQL
cat >"${work}/read.sql" <<'SQL'
\set n random(1, 1000000000)
SELECT count(*) FROM ryw_bench WHERE v = :n;
SQL

ADMIN="${DEMO_ADMIN:-127.0.0.1:9930}"
replica_reads() { # cumulative statements the main cluster sent to replicas
    curl -fsS "http://${ADMIN}/metrics" |
        awk '/^switchyard_queries_total\{cluster="main"/ && /route="replica"/ { s += $NF } END { printf "%d", s }'
}

run() { # script consistency -> "tps latency_ms replica_share_percent"
    local out before after txns
    before="$(replica_reads)"
    out="$(PGOPTIONS="-c switchyard.consistency=$2" pgbench -n -p "${PROXY_PORT}" -M simple -c "${CLIENTS}" \
        -j 2 -T "${DURATION}" -f "${work}/$1" app 2>&1)" || { echo "${out}" >&2; echo "0 0 0"; return; }
    after="$(replica_reads)"
    txns="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"${out}" | head -1)"
    echo "$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"${out}" | head -1)" \
        "$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"${out}" | head -1)" \
        "$(awk -v a="${after}" -v b="${before}" -v t="${txns:-0}" 'BEGIN { if (t > 0) printf "%.0f", 100 * (a - b) / t; else print 0 }')"
}

printf '\n%-18s %15s %8s %9s %14s %8s %9s\n' "consistency" "write+read tps" "lat ms" "replica%" \
    "read-only tps" "lat ms" "replica%"
for level in eventual read_your_writes global strong; do
    read -r wt wl ws <<<"$(run write_read.sql "${level}")"
    read -r rt rl rs <<<"$(run read.sql "${level}")"
    printf '%-18s %15.0f %8s %8s%% %14.0f %8s %8s%%\n' "${level}" "${wt}" "${wl}" "${ws}" "${rt}" "${rl}" "${rs}"
done
echo
echo "write+read: each transaction inserts a row and reads it back on the same connection (simple protocol)."
echo "replica% = share of the reads served by replicas. eventual may read a stale replica;"
echo "read_your_writes/global never do (they wait up to causal_timeout, then use the primary); strong reads on the primary."
