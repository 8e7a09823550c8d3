#!/usr/bin/env bash
# Tally side by side with DuckDB on the same generated dataset (issue 5).
#
#   benches/compare.sh [EVENTS]        # default 1000000
#
# Creates a virtualenv under target/compare-venv with DuckDB, builds the
# release binaries (tally, gen_dataset, replay, query_time), generates the
# dataset (kept and reused under target/compare/), loads it into Tally
# (`tally import`, and over HTTP with `replay` in batches of 500) and into
# DuckDB (validated and deduplicated as SPEC §1 says, a native table), runs
# the same funnel, retention and activation in both (DuckDB's SQL is in
# benches/compare/duck.py), checks that every number agrees, and writes
# bench-out/compare-EVENTS.{json,md}. Exits 1 if any number disagrees.
#
# Environment: SEED (1), RUNS (5), HTTP=0 to skip the HTTP load, KEEP=1 to
# keep the stores and the DuckDB database, PYTHON (python3) for the venv.
# Not part of the test suite; everything stays on 127.0.0.1.
set -euo pipefail

EVENTS="${1:-1000000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/target/compare-venv"
WORK="$ROOT/target/compare"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import duckdb' 2>/dev/null; then
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet duckdb
fi

# A target directory of its own, so that other builds in the shared
# workspace cannot replace the binaries in the middle of a run.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/compare-build}"
cargo build --release --quiet -p tally-collector --bin tally
cargo build --release --quiet -p tally-benches --bin gen_dataset --bin replay --bin query_time

args=(--events "$EVENTS" --seed "${SEED:-1}" --runs "${RUNS:-5}"
      --bin-dir "$CARGO_TARGET_DIR/release" --work "$WORK" --out "$ROOT/bench-out"
      --python "$VENV/bin/python")
[ "${HTTP:-1}" = 0 ] && args+=(--no-http)
[ "${KEEP:-0}" = 1 ] && args+=(--keep)
exec "$VENV/bin/python" "$ROOT/benches/compare/compare.py" "${args[@]}"
