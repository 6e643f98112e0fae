#!/usr/bin/env bash
# Installs what the build, the tests, the demo and the benchmarks need on Debian: PostgreSQL 15
# server + client (pgbench included), MariaDB server + client, sysbench, prometheus (+ promtool),
# docker-compose (only to validate docker/compose.yaml), gcc, g++ (libFuzzer, for the fuzz
# targets' compile check), pkg-config, libpq-dev, the Python headers and venv (the peer suites
# build psycopg2 from its sdist: scripts/peer-suites.sh), and the
# `postgres` and `mysql` OS users. Idempotent: installs only what is missing and runs
# `apt-get update` at most once. Works as root (CI) or with sudo.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=(__no_sudo__)
fi

run_root() {
    if [ "${SUDO[0]-}" = "__no_sudo__" ]; then
        log "need root to run: $* (not root and no sudo available)"
        exit 1
    fi
    log "+ $*"
    "${SUDO[@]}" "$@"
}

missing=()
[ -x "${PG_BIN}/initdb" ] && [ -x "${PG_BIN}/pg_ctl" ] && [ -x "${PG_BIN}/pg_basebackup" ] \
    || missing+=("postgresql-${PG_MAJOR}")
command -v psql >/dev/null 2>&1 || missing+=("postgresql-client-${PG_MAJOR}")
command -v pgbench >/dev/null 2>&1 || missing+=("postgresql-client-${PG_MAJOR}" postgresql-contrib)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
[ -x /usr/sbin/mariadbd ] && [ -x /usr/bin/mariadb-install-db ] || missing+=(mariadb-server)
[ -x /usr/bin/mariadb ] && [ -x /usr/bin/mariadb-admin ] || missing+=(mariadb-client)
command -v sysbench >/dev/null 2>&1 || missing+=(sysbench)
# tests/observability.rs scrapes with a real Prometheus and runs promtool; tests/docker_compose.rs
# validates docker/compose.yaml with `docker-compose config` (no Docker engine needed).
[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# scripts/peer-suites.sh builds psycopg2 from source: pg_config and libpq's headers, plus the
# headers and venv module of the python3 on PATH (a pyenv or other non-Debian Python brings its
# own; Debian's needs python3-dev and python3-venv).
command -v pg_config >/dev/null 2>&1 && [ -f /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ! python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
    missing+=(python3-dev)
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)

installed_pg=0
installed_mariadb=0
if [ "${#missing[@]}" -gt 0 ]; then
    # De-duplicate while keeping order.
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing: ${missing[*]}; this script only knows apt-get (Debian/Ubuntu). Install them by hand."
        exit 1
    fi
    log "missing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    run_root apt-get update -q
    run_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    for p in "${missing[@]}"; do
        [ "$p" = "postgresql-${PG_MAJOR}" ] && installed_pg=1
        [ "$p" = mariadb-server ] && installed_mariadb=1
    done
else
    log "all packages present (PostgreSQL ${PG_MAJOR}, psql, pgbench, MariaDB, sysbench, gcc, g++, pkg-config, libpq-dev, Python headers and venv)"
fi

if ! getent passwd postgres >/dev/null 2>&1; then
    run_root useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
else
    log "OS user postgres exists"
fi

if [ "$installed_pg" -eq 1 ]; then
    # The Debian package creates and starts a default cluster on port 5432; the tests and the
    # demo start their own servers, so stop it and keep it from starting at boot.
    log "stopping the Debian default cluster ${PG_MAJOR}/main (if any)"
    run_root pg_ctlcluster "${PG_MAJOR}" main stop 2>/dev/null || true
    if [ -f "/etc/postgresql/${PG_MAJOR}/main/start.conf" ]; then
        echo manual | run_root tee "/etc/postgresql/${PG_MAJOR}/main/start.conf" >/dev/null || true
    fi
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        run_root systemctl disable --now postgresql 2>/dev/null || true
    fi
fi

if ! getent passwd mysql >/dev/null 2>&1; then
    run_root useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin mysql
else
    log "OS user mysql exists"
fi

if [ "$installed_mariadb" -eq 1 ]; then
    # The Debian package starts a default server on port 3306; the tests and the demo start
    # their own servers, so stop it and keep it from starting at boot. In containers there is
    # often neither systemd nor a working `service`: failures are fine.
    log "stopping the Debian default MariaDB service (if any)"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        run_root systemctl disable --now mariadb 2>/dev/null || true
    elif command -v service >/dev/null 2>&1; then
        run_root service mariadb stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1; then
        run_root update-rc.d mariadb disable >/dev/null 2>&1 || true
    fi
fi

for tool in "${PG_BIN}/initdb" "${PG_BIN}/pg_ctl" "${PG_BIN}/pg_basebackup"; do
    [ -x "$tool" ] || { log "still missing: $tool"; exit 1; }
done
for tool in /usr/sbin/mariadbd /usr/bin/mariadb-install-db /usr/bin/mariadb /usr/bin/mariadb-admin; do
    [ -x "$tool" ] || { log "still missing: $tool"; exit 1; }
done
for tool in psql pgbench sysbench gcc g++ pkg-config runuser pg_config python3; do
    command -v "$tool" >/dev/null 2>&1 || { log "still missing: $tool"; exit 1; }
done
log "ok"
