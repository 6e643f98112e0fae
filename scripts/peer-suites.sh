#!/usr/bin/env bash
# Peer test suites: the drivers' own test suites run directly against the primary and through
# switchyard (session and transaction pooling) in the same run, compared test by test
# (tests/peer_suites.rs starts the clusters and proxies; tests/peer/run_suite.py runs and compares).
#
#   scripts/peer-suites.sh            prepare (below), then run both suites (cargo test --test peer_suites)
#   scripts/peer-suites.sh prepare    only set up target/peer-suites/: a Python virtualenv, the
#                                     psycopg2 2.9.10 sdist built from source into it, and the
#                                     PyMySQL sdist that still ships its test suite (0.10.1: from
#                                     1.0.0 on the sdists carry only tests/test_auth.py)
#
# Idempotent: a finished step leaves a stamp file and is not redone. Needs the Debian packages of
# scripts/install-deps.sh (libpq-dev for pg_config, the Python headers and venv) and access to the
# Python package index for the two sdists (and setuptools to build psycopg2).
# Expected differences between direct and proxied runs: tests/peer/expected-differences.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${PEER_SUITES_DIR:-${ROOT}/target/peer-suites}"
PY="${PEER_SUITES_PYTHON:-python3}"
PSYCOPG2_VERSION=2.9.10
PYMYSQL_VERSION=0.10.1
PYTEST_VERSION=8.3.4
PYTEST_TIMEOUT_VERSION=2.3.1

log() { printf 'peer-suites: %s\n' "$*" >&2; }

# unpack_sdist PROJECT VERSION BASENAME: download the sdist once into dl/, unpack it fresh under
# ${DIR}; prints the sdist's path.
unpack_sdist() {
    local project="$1" version="$2" base="$3"
    local sdist="${DIR}/dl/${base}.tar.gz"
    if [ ! -f "${sdist}" ]; then
        log "downloading the ${project} ${version} sdist"
        "${DIR}/venv/bin/python" -m pip download -q --no-binary :all: --no-deps \
            "${project}==${version}" -d "${DIR}/dl" >&2
    fi
    rm -rf "${DIR:?}/${base}"
    tar -xzf "${sdist}" -C "${DIR}"
    printf '%s\n' "${sdist}"
}

prepare() {
    mkdir -p "${DIR}/dl"
    local venv="${DIR}/venv"
    if [ ! -x "${venv}/bin/python" ]; then
        log "creating virtualenv ${venv} with $(command -v "${PY}")"
        "${PY}" -m venv "${venv}"
    fi
    local vpy="${venv}/bin/python"

    if [ ! -f "${DIR}/psycopg2.stamp" ]; then
        local sdist
        sdist="$(unpack_sdist psycopg2 "${PSYCOPG2_VERSION}" "psycopg2-${PSYCOPG2_VERSION}")"
        log "building psycopg2 ${PSYCOPG2_VERSION} from its sdist (pg_config: $(command -v pg_config))"
        "${vpy}" -m pip install -q --no-binary :all: "${sdist}"
        "${vpy}" -c "import psycopg2; print('psycopg2', psycopg2.__version__)" >&2
        touch "${DIR}/psycopg2.stamp"
    fi

    if [ ! -f "${DIR}/pymysql.stamp" ]; then
        # The suite imports pymysql from the sdist tree itself (pure Python), so the tests and the
        # library are the same release. Its test command is pytest (tox.ini), which its skip marks
        # need; pytest-timeout turns a hung test into a failure of that test.
        unpack_sdist PyMySQL "${PYMYSQL_VERSION}" "PyMySQL-${PYMYSQL_VERSION}" >/dev/null
        "${vpy}" -m pip install -q "pytest==${PYTEST_VERSION}" "pytest-timeout==${PYTEST_TIMEOUT_VERSION}"
        touch "${DIR}/pymysql.stamp"
    fi
    log "ready: ${DIR}"
}

case "${1:-run}" in
    prepare)
        prepare
        ;;
    run)
        prepare
        cd "${ROOT}"
        exec cargo test --test peer_suites -- --test-threads=2 --nocapture
        ;;
    *)
        log "usage: $0 [prepare|run]"
        exit 2
        ;;
esac
