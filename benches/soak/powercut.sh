#!/usr/bin/env bash
# Power-cut soak: the store's power-cut test at every operation of its
# workload (the test suite samples every 4th), with torn tails, and the
# check that each needed fsync is caught when removed.
#   benches/soak/powercut.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
TALLY_POWERCUT_ALL=1 cargo test --release -p tally-collector --lib powercut -- --nocapture
