#!/usr/bin/env bash
# LLM gateway benchmark: Loopline's gateway against the LiteLLM proxy (`pip install 'litellm[proxy]'` into
# .venv-litellm) in front of the same fake provider, 1 / 64 / 512 concurrent clients, instant and 50 ms
# providers, plain and streamed. Release builds. Extra arguments go to bench.py (--seconds, --levels,
# --soak-seconds N, --litellm-workers N, --pin: the gateways on one core, the load
# generator and providers on the other).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv-litellm/bin/litellm ]; then
  python3 -m venv .venv-litellm
  .venv-litellm/bin/pip install -q 'litellm[proxy]'
fi
cargo build --release --locked -p loopline-server
cargo build --release --locked -p loopline-test-support --example loopline-fake-llm
(cd bench/serving/loadgen && cargo build --release --locked)
.venv-litellm/bin/python bench/gateway/bench.py --loopline target/release/loopline \
  --fake target/release/examples/loopline-fake-llm \
  --loadgen bench/serving/loadgen/target/release/loopline-loadgen \
  --litellm .venv-litellm/bin/litellm "$@"
