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
# the same analyses in both (timed: funnel, retention, activation, trend
# users by day, a funnel --by utm_source, a retention with --where; and
# untimed checks of identity linking on and off, trend, --where and --by;
# DuckDB's SQL is in benches/compare/duck.py), checks that every number
# agrees, and writes bench-out/compare-EVENTS.{json,md}. Exits 1 if any
# number disagrees.
#
# Environment: SEED (1), RUNS (5), HTTP=0 to skip the HTTP load, KEEP=1 to
# keep the stores and the DuckDB database, PYTHON (python3) for the venv.
# Not part of the test suite; everything stays on 127.0.0.1.
#
# To run against what is already there instead of generating and loading:
#   TALLY=path/to/tally       use this binary and build nothing (with NDJSON;
#                             query_time's "query only" column is then skipped)
#   NDJSON=events.ndjson      this file instead of gen_dataset's
#   DATA=dir                  a Tally data directory already holding NDJSON
#                             (not imported, never deleted)
#   DUCK_DB=file.duckdb       a DuckDB database: loaded from NDJSON if it does
#                             not exist, reused if it does (never deleted)
#   EXTRA=1                   also the checks that need the properties added by
#                             benches/compare/identity_data.py (booleans, nested
#                             paths, tied cohort events)
#   EXTRA=edge                instead of the usual checks, those of the 28
#                             hand-written events of benches/compare/edge_events.ndjson
#                             (NDJSON=benches/compare/edge_events.ndjson)
#   CHECKS=0                  skip the untimed checks
# e.g. TALLY=/tmp/tally-new NDJSON=/work/bench10m/events.ndjson DATA=/tmp/b10 \
#      DUCK_DB=/tmp/duck10m.duckdb HTTP=0 benches/compare.sh 10000000
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
if [ -z "${TALLY:-}" ]; then
    cargo build --release --quiet -p tally-collector --bin tally
    cargo build --release --quiet -p tally-benches --bin gen_dataset --bin replay --bin query_time
elif [ -z "${NDJSON:-}" ] || { [ "${HTTP:-1}" != 0 ] && [ -z "${DATA:-}" ]; }; then
    echo "TALLY= builds nothing: give NDJSON= too (and HTTP=0 or DATA=)" >&2
    exit 2
fi

args=(--events "$EVENTS" --seed "${SEED:-1}" --runs "${RUNS:-5}"
      --bin-dir "$CARGO_TARGET_DIR/release" --work "$WORK" --out "$ROOT/bench-out"
      --python "$VENV/bin/python")
[ -n "${TALLY:-}" ] && args+=(--tally "$TALLY")
[ -n "${NDJSON:-}" ] && args+=(--ndjson "$NDJSON")
[ -n "${DATA:-}" ] && args+=(--data "$DATA")
[ -n "${DUCK_DB:-}" ] && args+=(--duck-db "$DUCK_DB")
[ "${EXTRA:-0}" = 1 ] && args+=(--extra-checks)
[ "${EXTRA:-0}" = edge ] && args+=(--edge-checks)
[ "${CHECKS:-1}" = 0 ] && args+=(--no-checks)
[ "${HTTP:-1}" = 0 ] && args+=(--no-http)
[ "${KEEP:-0}" = 1 ] && args+=(--keep)
exec "$VENV/bin/python" "$ROOT/benches/compare/compare.py" "${args[@]}"
