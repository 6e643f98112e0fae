#!/usr/bin/env bash
# sysbench through switchyard vs directly against the MariaDB primary, in one run; prints TPS,
# p95 and average latency and the proxy/direct ratio per workload.
#
#   bench/sysbench.sh            uses the demo MariaDB cluster (scripts/demo.sh starts it if needed)
#   THREADS=32 DURATION=60 TABLES=4 TABLE_SIZE=100000 bench/sysbench.sh
#   PS_MODE=disable bench/sysbench.sh      text protocol only (default auto: server-side prepared)
#
# Everything (sysbench, proxy, primary, two replicas) shares this machine's cores, so only the
# ratios are comparable between machines. The sbtest tables are created once on the primary and
# dropped at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
THREADS="${THREADS:-16}"
DURATION="${DURATION:-20}"
TABLES="${TABLES:-4}"
TABLE_SIZE="${TABLE_SIZE:-10000}"
PS_MODE="${PS_MODE:-auto}"
PRIMARY_PORT="${DEMO_MYSQL_PRIMARY_PORT:-13306}"
REPLICA_PORTS=("${DEMO_MYSQL_REPLICA1_PORT:-13307}" "${DEMO_MYSQL_REPLICA2_PORT:-13308}")
PROXY_PORT="${PROXY_PORT:-6033}"
ROOT_PASSWORD="root-demo" # set by scripts/demo.sh

if ! (exec 3<>"/dev/tcp/127.0.0.1/${PROXY_PORT}") 2>/dev/null; then
    "${ROOT}/scripts/demo.sh" >/dev/null
fi

sb() { # workload port command extra-args...
    local workload="$1" port="$2" command="$3"
    shift 3
    sysbench "${workload}" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="${port}" \
        --mysql-user=app --mysql-password=app-secret --mysql-db=app --db-ps-mode="${PS_MODE}" \
        --tables="${TABLES}" --table-size="${TABLE_SIZE}" "$@" "${command}"
}

mysql_root() { # port sql
    mariadb --no-defaults -N -B -h127.0.0.1 -P"$1" -uroot --password="${ROOT_PASSWORD}" \
        --connect-timeout=5 -e "$2"
}

cleanup() { sb oltp_read_write "${PRIMARY_PORT}" cleanup >/dev/null 2>&1 || true; }

wait_replicas() {
    local pos port
    pos="$(mysql_root "${PRIMARY_PORT}" "SELECT @@gtid_binlog_pos")"
    for port in "${REPLICA_PORTS[@]}"; do
        if [ "$(mysql_root "${port}" "SELECT MASTER_GTID_WAIT('${pos}', 120)")" != "0" ]; then
            echo "replica on port ${port} did not reach GTID ${pos} within 120 s" >&2
            exit 1
        fi
    done
}

cleanup # leftovers of an interrupted run
trap cleanup EXIT
echo "preparing ${TABLES} sysbench tables of ${TABLE_SIZE} rows on the primary..."
sb oltp_read_write "${PRIMARY_PORT}" prepare --threads="${TABLES}" >/dev/null
wait_replicas

run() { # workload port -> "tps p95_ms avg_ms"
    local out
    out="$(sb "$1" "$2" run --threads="${THREADS}" --time="${DURATION}" 2>&1)" || {
        echo "${out}" >&2
        echo "0 0 0"
        return
    }
    local tps p95 avg
    tps="$(sed -n 's/^ *transactions: .*(\([0-9.]*\) per sec.)/\1/p' <<<"${out}" | head -1)"
    p95="$(sed -n 's/^ *95th percentile: *\([0-9.]*\)/\1/p' <<<"${out}" | head -1)"
    avg="$(sed -n 's/^ *avg: *\([0-9.]*\)/\1/p' <<<"${out}" | head -1)"
    echo "${tps:-0} ${p95:-0} ${avg:-0}"
}

printf '\n%-24s %11s %8s %8s %11s %8s %8s %7s\n' "workload (${THREADS} thr)" \
    "direct tps" "p95 ms" "avg ms" "proxy tps" "p95 ms" "avg ms" "ratio"
for workload in oltp_read_only oltp_read_write; do
    read -r dt dp da <<<"$(run "${workload}" "${PRIMARY_PORT}")"
    wait_replicas
    read -r pt pp pa <<<"$(run "${workload}" "${PROXY_PORT}")"
    wait_replicas
    ratio="$(awk -v p="${pt}" -v d="${dt}" 'BEGIN { if (d > 0) printf "%.2f", p / d; else print "n/a" }')"
    printf '%-24s %11.0f %8s %8s %11.0f %8s %8s %7s\n' "${workload}" "${dt}" "${dp}" "${da}" \
        "${pt}" "${pp}" "${pa}" "${ratio}"
done
echo
echo "direct = the MariaDB primary alone; proxy = switchyard splitting reads over two replicas (writes to the primary)."
