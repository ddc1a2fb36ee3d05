#!/usr/bin/env bash
# Serving benchmark: `mlflow models serve` against `loopline serve` on the same XGBoost model (100 trees,
# 30 features) and scikit-learn pipeline, single-row requests at fixed concurrency levels from one closed-loop
# load generator; batch inference of the ONNX export against raw onnxruntime. Prints req/s, p50, p99, memory
# and the ratios. Uses the project venv (created as scripts/test.sh does) and release builds.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test-services.sh
setup_venv
cargo build --release --locked -p loopline-server
(cd bench/serving/loadgen && cargo build --release --locked)
VENV_DIR="$(cd "$(dirname "$PYTHON")/.." && pwd)"
export LOOPLINE_PYTHON="$VENV_DIR/bin/python"
export ORT_DYLIB_PATH="$(ls "$VENV_DIR"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"
export PATH="$VENV_DIR/bin:$PATH"
"$PYTHON" bench/serving/bench.py --loopline target/release/loopline \
  --loadgen bench/serving/loadgen/target/release/loopline-loadgen "$@"
