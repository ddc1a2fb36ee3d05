#!/usr/bin/env bash
# Feature store benchmark: Feast's point-in-time join and Python feature server against Loopline's on the same
# data, definitions and Redis (bench/features/bench.py). Uses the feature suite's venv (Feast), a release build
# and bench/serving's load generator. Arguments go to bench.py (--entities, --source-rows, --only, --keep).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/test-services.sh
setup_features_venv
"$FEATURES_PYTHON" -m pip install --quiet --disable-pip-version-check "redis>=5"
cargo build --release --locked -p loopline-server
(cd bench/serving/loadgen && cargo build --release --locked)
"$FEATURES_PYTHON" bench/features/bench.py --loopline target/release/loopline \
  --loadgen bench/serving/loadgen/target/release/loopline-loadgen "$@"
