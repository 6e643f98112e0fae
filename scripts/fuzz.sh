#!/usr/bin/env bash
# Fuzz the pure codecs and the classifier with libFuzzer (cargo fuzz, nightly Rust).
#
#   scripts/fuzz.sh                    every target for FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh pg_wire classify
#
# Targets (fuzz/fuzz_targets/): pg_wire (framing, startup, message views, SCRAM, batch analysis),
# mysql_wire (packets, handshake, commands, answers and their tracker), classify (both dialects,
# hints, the decision cache), config (YAML, `${ENV}` references, validation). The corpus grows in
# fuzz/corpus/<target> (seeded from fuzz/seeds/<target>); a crash leaves its input in
# fuzz/artifacts/<target> and fails the script.
# Installs the nightly toolchain and cargo-fuzz when missing. scripts/test.sh only checks that the
# targets compile (stable, cargo check).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(pg_wire mysql_wire classify config)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd "${ROOT}/fuzz"
failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/${t}"
    cp -n "seeds/${t}/"* "corpus/${t}/" 2>/dev/null || true
    echo "fuzz: ${t} for ${SECONDS_EACH} s"
    if ! cargo +nightly fuzz run "${t}" "corpus/${t}" -- -max_total_time="${SECONDS_EACH}" \
        -rss_limit_mb=2048 -print_final_stats=1 2>"/tmp/switchyard-fuzz-${t}.log"; then
        failed+=("${t}")
        tail -n 40 "/tmp/switchyard-fuzz-${t}.log" >&2
    else
        grep -E '^stat::number_of_executed_units|^Done' "/tmp/switchyard-fuzz-${t}.log" || true
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: no crash in ${TARGETS[*]}"
