#!/usr/bin/env bash
# Versioned data and cached pipelines: DVC (from the data-suite venv, .venv-stats) against Loopline (a release
# build) on a directory of 10,000 files / 5 GiB: `dvc add` vs `loopline data add`, then a 10-step pipeline run
# once and rerun with nothing changed (`dvc repro` vs `loopline pipeline run`). Prints wall time, peak memory
# and ratios. `--files 1000 --gigabytes 0.5` for a quicker look; the data stays in target/bench-pipelines
# (about three times the dataset's size on disk: the files and each tool's cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test-services.sh
setup_stats_venv
cargo build --release --locked -p loopline-server
"$STATS_PYTHON" bench/pipelines/bench.py --loopline target/release/loopline "$@"
