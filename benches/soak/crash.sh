#!/usr/bin/env bash
# SIGKILL soak: the crash tests (tests/it/crash.rs: concurrent clients,
# `kill -9` of `tally serve` mid-load, restart, every acknowledged event
# present exactly once) for N cycles each (default 100), with default and
# with 300-event chunks (kills land mid-seal).
#   benches/soak/crash.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/../.."
TALLY_CRASH_CYCLES=${1:-100} cargo test -p tally-collector --test it crash -- --nocapture --test-threads 1
