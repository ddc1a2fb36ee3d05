#!/usr/bin/env bash
# Monitoring benchmark: one day of logged predictions (default 10,000,000 × 20 features) in hourly windows;
# Loopline's monitor against Evidently (drift + classification report per hour) and NannyML's CBPE. Prints wall
# time, peak memory and ratios, then serving throughput with and without monitors running. `--rows N` sets the
# day's size (data is generated once per size); `--skip-reference-tools` times Loopline alone.
# Uses the data-suite venv (.venv-stats, as scripts/test.sh makes it) and a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test-services.sh
setup_stats_venv
cargo build --release --locked -p loopline-server
rows=10000000
if [ "${1:-}" = "--rows" ]; then rows="$2"; shift 2; fi
data="${LOOPLINE_BENCH_DATA:-target/bench-monitoring-$rows}"
if [ ! -f "$data/analysis.parquet" ]; then
  echo "==> generating $rows rows in $data"
  rm -rf "$data"
  "$STATS_PYTHON" bench/monitoring/generate.py "$data" --rows "$rows"
fi
"$STATS_PYTHON" bench/monitoring/bench.py --data "$data" --loopline target/release/loopline "$@"
# Serving throughput with and without monitors running (bench/serving's load generator).
(cd bench/serving/loadgen && cargo build --release --locked)
"$STATS_PYTHON" bench/monitoring/throughput.py --loopline target/release/loopline \
  --loadgen bench/serving/loadgen/target/release/loopline-loadgen
