#!/usr/bin/env bash
# Drift and validation benchmark: Evidently and Great Expectations against Loopline on 200,000 reference rows
# and 1,000,000 current rows × 20 columns (15 numeric, 5 categorical). Prints wall time, peak RSS and ratios.
# Uses the data-suite venv (.venv-stats, created as scripts/test.sh does) and a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test-services.sh
setup_stats_venv
cargo build --release --locked -p loopline-server
data="${LOOPLINE_BENCH_DATA:-target/bench-drift-data}"
if [ ! -f "$data/current.parquet" ]; then
  echo "==> generating data in $data"
  "$STATS_PYTHON" bench/drift/generate.py "$data"
fi
"$STATS_PYTHON" bench/drift/bench.py --data "$data" --loopline target/release/loopline "$@"
