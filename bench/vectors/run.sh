#!/usr/bin/env bash
# Vector index benchmark: Loopline's HNSW against hnswlib and FAISS (HNSW, inner product) with the same M and
# ef_construction on the same clustered data, built and queried on this machine: build time, memory, recall@10
# and queries per second at each ef (one thread and all cores), filtered search, int8. Reference tools live in
# .venv-vectors. Extra arguments go to bench.py (--n, --dim, --queries, --efs, --m, --ef-construction).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv-vectors/bin/python ]; then
  python3 -m venv .venv-vectors
  .venv-vectors/bin/pip install -q numpy hnswlib faiss-cpu
fi
cargo build --release --locked -p loopline-vector-index --example vector-bench
.venv-vectors/bin/python bench/vectors/bench.py --loopline target/release/examples/vector-bench "$@"
