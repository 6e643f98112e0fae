#!/usr/bin/env bash
# Failover time of switchyard (failover.mode: auto) on real PostgreSQL 15 and MariaDB clusters:
# for each protocol and monitor setting, N runs of: fresh primary + 2 replicas (tests/support/
# harness, loopback ports, temp dirs), the release proxy, 4 writers inserting through it, then the
# primary is killed (PostgreSQL: pg_ctl stop -m immediate; MariaDB: kill -9).
#
#   bench/failover.sh                 3 runs of everything (about 10 minutes)
#   bench/failover.sh --runs 2 --only pg      (--only pg|mysql)
#
# Reading the table: one row per protocol and setting.
#   runs (s)     kill returned -> first write acknowledged through the proxy, per run
#   median, max  over those runs; `target` says whether every run beat the target
#                (default monitor 3 x 1s probes: < 5 s; fast 3 x 200ms: < 2 s)
#   errors w/c   per run: writes that failed / connection attempts that failed. Writes in flight
#                when the primary dies fail (the proxy cannot know whether they committed); later
#                ones wait (write_hold 30s) for the new primary instead of failing.
#   lost         per run: acknowledged writes missing on the new primary. PostgreSQL runs with
#                synchronous replication (expect 0); MariaDB replicates asynchronously, so the
#                last acknowledged writes may not have reached any replica.
# Everything shares this machine's cores. Exit status 1 when a run failed (cluster or proxy did
# not start, or no write was acknowledged within 60 s of the kill); missed targets are reported only.
# Needs the packages of scripts/install-deps.sh; as root the servers run as postgres / mysql.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
cargo build --release --bins --examples
export SWITCHYARD_BIN="${ROOT}/target/release/switchyard"
exec "${ROOT}/target/release/examples/failover_bench" "$@"
