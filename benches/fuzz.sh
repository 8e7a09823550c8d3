#!/usr/bin/env bash
# Runs every cargo-fuzz target for N minutes each (default 5) and prints
# executions and findings. Installs cargo-fuzz if missing. libFuzzer needs
# nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain pass them.
#   benches/fuzz.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
minutes=${1:-5}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in event_json wal_records store_sections; do
  echo "== $target ($minutes min)"
  mkdir -p "corpus/$target"
  cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time=$((minutes * 60)) -print_final_stats=1 2>&1 |
    grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|SUMMARY|panicked|crash-' || true
done
