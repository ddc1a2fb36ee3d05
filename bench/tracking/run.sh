#!/usr/bin/env bash
# Runs the tracking benchmark: builds the release binary, prepares the venv with the real mlflow server
# (tests/compat/requirements.txt pins it) and compares both on this machine. Extra arguments go to bench.py
# (for example --runs 2000 --seconds 5 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test-services.sh
setup_venv
cargo build --release --locked --bin loopline
"$PYTHON" bench/tracking/bench.py --loopline-bin target/release/loopline "$@"
