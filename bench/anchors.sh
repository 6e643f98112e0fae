#!/usr/bin/env bash
# Builds the two anchors that bench/pooling.sh compares against, PgCat and PgDog, OUTSIDE this
# repository (nothing of theirs is ever committed here), and prints their binaries' paths in the
# form bench/pooling.sh takes (PGCAT_BIN=... PGDOG_BIN=...).
#
#   bench/anchors.sh MIRRORS_DIR
#   bench/anchors.sh PGCAT_GIT PGDOG_GIT SCRAM_GIT
#
# MIRRORS_DIR holds bare git directories of the public repositories, as the session tool `fetch`
# leaves them: MIRRORS_DIR/postgresml+pgcat/repo, MIRRORS_DIR/pgdogdev+pgdog/repo and
# MIRRORS_DIR/pgdogdev+scram/repo (here MIRRORS_DIR is /work/.mirror). The three-argument form
# names the three bare git directories (or clones) directly. The script does not fetch anything
# itself but crates from the registry.
#
# What it builds:
# - PgCat: the newest snapshot (PGCAT_REV, default HEAD), `cargo build --release` as is.
# - PgDog: tag v0.1.17 (PGDOG_REV); the newer releases pin a newer Rust and git-only crates. Its one
#   git dependency, pgdogdev/scram at rev 848003d (SCRAM_REV), is exported from the scram repository
#   and the `scram = { git = ..., rev = ... }` line of pgdog/Cargo.toml becomes a `path =` line.
#   Its .cargo/config.toml links with clang + mold and bindgen needs libclang: Debian packages
#   clang, mold, libclang-dev (the script says so and stops when one is missing). Its own release
#   profile applies (LTO, one codegen unit); only the `pgdog` package is built.
#
# Env: ANCHORS_DIR (/work/anchors: sources in src/, one target dir per project in target-*/),
# CARGO_BUILD_JOBS (1: the builds share the machine with others' tests; raise it on an idle host),
# NICE (19), ONLY ("pgcat pgdog"). The sources are re-exported on every run (the target dirs are
# kept, so a second run only relinks what changed).
set -euo pipefail

ANCHORS_DIR="${ANCHORS_DIR:-/work/anchors}"
PGCAT_REV="${PGCAT_REV:-HEAD}"
PGDOG_REV="${PGDOG_REV:-v0.1.17}"
SCRAM_REV="${SCRAM_REV:-848003d}"
NICE="${NICE:-19}"
ONLY="${ONLY:-pgcat pgdog}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"

case $# in
1)
    PGCAT_GIT="$1/postgresml+pgcat/repo"
    PGDOG_GIT="$1/pgdogdev+pgdog/repo"
    SCRAM_GIT="$1/pgdogdev+scram/repo"
    ;;
3) PGCAT_GIT="$1" PGDOG_GIT="$2" SCRAM_GIT="$3" ;;
*)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$(realpath -m "${ANCHORS_DIR}")/" in
"${ROOT}/"*)
    echo "ANCHORS_DIR must be outside this repository" >&2
    exit 2
    ;;
esac

# export GIT_DIR REV DEST: a fresh tree of GIT_DIR at REV in DEST.
export_tree() {
    rm -rf "$3"
    mkdir -p "$3"
    git --git-dir="$1" archive --format=tar "$2" | tar -x -C "$3"
}

build() { nice -n "${NICE}" cargo build --release "$@"; }

mkdir -p "${ANCHORS_DIR}/src"
out=()

if [[ " ${ONLY} " == *" pgcat "* ]]; then
    export_tree "${PGCAT_GIT}" "${PGCAT_REV}" "${ANCHORS_DIR}/src/pgcat"
    echo "pgcat: $(git --git-dir="${PGCAT_GIT}" rev-parse "${PGCAT_REV}")" >&2
    (cd "${ANCHORS_DIR}/src/pgcat" && CARGO_TARGET_DIR="${ANCHORS_DIR}/target-pgcat" build)
    out+=("PGCAT_BIN=${ANCHORS_DIR}/target-pgcat/release/pgcat")
fi

if [[ " ${ONLY} " == *" pgdog "* ]]; then
    for tool in clang mold; do
        command -v "${tool}" >/dev/null || {
            echo "PgDog needs ${tool}: apt-get install clang mold libclang-dev" >&2
            exit 1
        }
    done
    ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || {
        echo "PgDog needs libclang: apt-get install libclang-dev" >&2
        exit 1
    }
    export_tree "${SCRAM_GIT}" "${SCRAM_REV}" "${ANCHORS_DIR}/src/scram"
    export_tree "${PGDOG_GIT}" "${PGDOG_REV}" "${ANCHORS_DIR}/src/pgdog"
    echo "pgdog: $(git --git-dir="${PGDOG_GIT}" rev-parse "${PGDOG_REV}"), scram: $(git --git-dir="${SCRAM_GIT}" rev-parse "${SCRAM_REV}")" >&2
    manifest="${ANCHORS_DIR}/src/pgdog/pgdog/Cargo.toml"
    grep -q '^scram = { git = ' "${manifest}" || {
        echo "${manifest}: no 'scram = { git = ...' line to replace" >&2
        exit 1
    }
    sed -i "s|^scram = { git = .*|scram = { path = \"${ANCHORS_DIR}/src/scram\" }|" "${manifest}"
    (cd "${ANCHORS_DIR}/src/pgdog" && CARGO_TARGET_DIR="${ANCHORS_DIR}/target-pgdog" build -p pgdog)
    out+=("PGDOG_BIN=${ANCHORS_DIR}/target-pgdog/release/pgdog")
fi

printf '%s\n' "${out[@]}"
