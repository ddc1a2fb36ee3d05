"""Loopline's vector index against hnswlib and FAISS on the same data (see run.sh).

Data: a mixture of Gaussians in a 24-dimensional latent space projected to --dim dimensions (unit vectors,
like sentence embeddings), the cosine distance. Ground truth by exact search in
numpy. For each tool: build time with every core, memory growth, and for each ef the recall@k and queries per
second on one thread and on all; then the QPS each reaches at recall 0.90 / 0.95 / 0.99 (the smallest ef that
gets there) and Loopline's ratio to each. Loopline also reports filtered search (points passing 10% and 1%)
and int8.
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np


# Each tool's query time is the best of this many passes over the queries (the machine is shared; the best pass
# is the one least disturbed). Loopline's vector-bench does the same.
REPEATS = 3


def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def clustered(n, dim, rng, clusters=200, latent=24):
    """Unit vectors like sentence embeddings: a mixture of Gaussians in a low-dimensional latent space, lifted
    into `dim` dimensions by a fixed random projection, plus a little noise in every dimension (isotropic
    Gaussians in all 384 dimensions have no near neighbours worth the name: every tool tops out near recall
    0.7 on them)."""
    projection = np.random.default_rng(1234).normal(size=(latent, dim)).astype(np.float32)
    centres = np.random.default_rng(4321).normal(size=(clusters, latent)).astype(np.float32) * 2.0
    labels = rng.integers(0, clusters, size=n)
    points = centres[labels] + rng.normal(size=(n, latent)).astype(np.float32)
    data = points @ projection + 0.05 * np.sqrt(latent) * rng.normal(size=(n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data.astype(np.float32)


def truth(base, queries, k, mask=None):
    ids = np.arange(len(base)) if mask is None else np.nonzero(mask)[0]
    subset = base[ids]
    out = np.empty((len(queries), k), dtype=np.uint32)
    for start in range(0, len(queries), 256):
        scores = queries[start:start + 256] @ subset.T
        best = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, best, axis=1).argsort(axis=1)[:, ::-1]
        out[start:start + 256] = ids[np.take_along_axis(best, order, axis=1)]
    return out


def recall(found, expected, k):
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, expected)]))


def run_hnswlib(args, base, queries, expected, threads):
    import hnswlib

    rows = []
    before = rss_mib()
    index = hnswlib.Index(space="ip", dim=args.dim)
    index.init_index(max_elements=len(base), M=args.m, ef_construction=args.ef_construction, random_seed=1)
    started = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=threads)
    build = time.perf_counter() - started
    memory = rss_mib() - before
    for ef in args.efs:
        index.set_ef(ef)
        for used in (1, threads):
            seconds = float("inf")
            for _ in range(REPEATS):
                started = time.perf_counter()
                labels, _ = index.knn_query(queries, k=args.k, num_threads=used)
                seconds = min(seconds, time.perf_counter() - started)
            rows.append({"ef": ef, "threads": used, "recall": recall(labels, expected, args.k), "qps": len(queries) / seconds})
    return build, memory, rows


def run_faiss(args, base, queries, expected, threads):
    import faiss

    rows = []
    before = rss_mib()
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(args.dim, args.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction
    started = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - started
    memory = rss_mib() - before
    for ef in args.efs:
        index.hnsw.efSearch = ef
        for used in (1, threads):
            faiss.omp_set_num_threads(used)
            seconds = float("inf")
            for _ in range(REPEATS):
                started = time.perf_counter()
                if used == 1:
                    # One query at a time, as a server answers them (a batch lets FAISS share work across queries).
                    labels = np.vstack([index.search(queries[i:i + 1], args.k)[1] for i in range(len(queries))])
                else:
                    labels = index.search(queries, args.k)[1]
                seconds = min(seconds, time.perf_counter() - started)
            rows.append({"ef": ef, "threads": used, "recall": recall(labels, expected, args.k), "qps": len(queries) / seconds})
    faiss.omp_set_num_threads(threads)
    return build, memory, rows


def at_recall(rows, target, threads):
    for row in sorted((r for r in rows if r["threads"] == threads), key=lambda r: r["ef"]):
        if row["recall"] >= target:
            return row["qps"], row["ef"]
    return None, None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loopline", required=True, help="the vector-bench example binary")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--efs", type=lambda text: [int(x) for x in text.split(",")], default=[10, 16, 24, 32, 40, 48, 64, 96, 128, 256])
    parser.add_argument("--only", default="loopline,hnswlib,faiss")
    parser.add_argument("--data", help="a .npy file of float32 rows (e.g. sentence embeddings) instead of the "
                        "generated mixture: its last --queries rows are the queries, the first --n the base")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    if args.data:
        rows = np.load(args.data, mmap_mode="r")
        if len(rows) < args.queries + 1:
            raise SystemExit(f"{args.data} has {len(rows)} rows; at least --queries + 1 are needed")
        args.n = min(args.n, len(rows) - args.queries)
        args.dim = rows.shape[1]
        unit = lambda block: block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        base = np.ascontiguousarray(unit(np.asarray(rows[:args.n], dtype=np.float32)))
        queries = np.ascontiguousarray(unit(np.asarray(rows[len(rows) - args.queries:], dtype=np.float32)))
    else:
        rng = np.random.default_rng(7)
        base = clustered(args.n, args.dim, rng)
        # Queries from the same distribution, drawn afresh.
        queries = clustered(args.queries, args.dim, np.random.default_rng(8))
    numbers = np.arange(args.n)
    expected = truth(base, queries, args.k)
    expected_10 = truth(base, queries, args.k, numbers % 10 == 0)
    expected_1 = truth(base, queries, args.k, numbers % 100 == 0)
    described = f"rows of {args.data}" if args.data else "clustered unit vectors"
    print(f"{args.n} x {args.dim} {described}, {args.queries} queries, k={args.k}, M={args.m}, "
          f"ef_construction={args.ef_construction}, {threads} threads", flush=True)
    results = {}
    work = tempfile.mkdtemp(prefix="vector-bench-")
    paths = {}
    for name, array in [("base", base), ("queries", queries), ("truth", expected), ("truth10", expected_10), ("truth1", expected_1)]:
        paths[name] = os.path.join(work, name)
        array.astype(array.dtype.newbyteorder("<")).tofile(paths[name])
    tools = args.only.split(",")
    if "loopline" in tools:
        started = time.perf_counter()
        output = subprocess.run([args.loopline, paths["base"], paths["queries"], paths["truth"], str(args.dim), str(args.k),
                                 str(args.m), str(args.ef_construction), ",".join(map(str, args.efs)),
                                 paths["truth10"], paths["truth1"]], check=True, capture_output=True, text=True).stdout
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        build = next(line for line in lines if line["kind"] == "build" and not line["int8"])
        results["loopline"] = (build["seconds"], build["rss_growth_mib"],
                               [l for l in lines if l["kind"] == "query" and not l["int8"]])
        results["loopline int8"] = (next(l for l in lines if l["kind"] == "build" and l["int8"])["seconds"], None,
                                    [l for l in lines if l["kind"] == "query" and l["int8"]])
        loopline_lines = lines
        print(f"loopline ran in {time.perf_counter() - started:.0f} s", flush=True)
    if "loopline-disk" in tools:
        # int8 with the originals on disk, as a server keeps such a collection: built through the log, then
        # queried by a fresh process whose resident memory is read after opening it.
        collection = os.path.join(work, "on-disk")
        output = subprocess.run([args.loopline, "disk-build", collection, paths["base"], str(args.dim), str(args.m),
                                 str(args.ef_construction)], check=True, capture_output=True, text=True).stdout
        built = [json.loads(line) for line in output.splitlines() if line.startswith("{")][0]
        output = subprocess.run([args.loopline, "disk-query", collection, paths["queries"], paths["truth"], str(args.dim),
                                 str(args.k), ",".join(map(str, args.efs))], check=True, capture_output=True, text=True).stdout
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        opened = next(line for line in lines if line["kind"] == "disk-open")
        results["loopline on disk"] = (built["seconds"], None, [l for l in lines if l["kind"] == "disk-query"])
        disk_lines = (built, opened, lines)
        print(f"loopline on disk: built through the log in {built['seconds']:.0f} s; a fresh process opened it in "
              f"{opened['seconds']:.1f} s, resident {opened['rss_mib']:.0f} MiB", flush=True)
    if "hnswlib" in tools:
        results["hnswlib"] = run_hnswlib(args, base, queries, expected, threads)
        print("hnswlib done", flush=True)
    if "faiss" in tools:
        results["faiss"] = run_faiss(args, base, queries, expected, threads)
        print("faiss done", flush=True)

    print("\nrecall@10 and queries per second at each ef (1 thread / all threads)")
    for name, (_, _, rows) in results.items():
        for ef in args.efs:
            one = next((r for r in rows if r["ef"] == ef and r["threads"] == 1), None)
            every = next((r for r in rows if r["ef"] == ef and r["threads"] == threads), None)
            if one:
                print(f"  {name:<14} ef {ef:>4}  recall {one['recall']:.4f}  qps {one['qps']:9.0f} / {every['qps']:9.0f}")
    print("\nbuild (all threads) and memory growth")
    for name, (build, memory, _) in results.items():
        print(f"  {name:<14} build {build:8.1f} s" + (f"  memory +{memory:.0f} MiB" if memory is not None else ""))
    if "loopline" in tools:
        build = next(l for l in loopline_lines if l["kind"] == "build" and l["int8"])
        print(f"  loopline vectors: float32 {build['float_bytes'] / 2**20:.0f} MiB, int8 {build['int8_bytes'] / 2**20:.0f} MiB "
              f"({100 * build['int8_bytes'] / build['float_bytes']:.0f}%), graph {build['graph_bytes'] / 2**20:.0f} MiB")
    print("\nqueries per second at a recall target (ef used), 1 thread / all threads")
    for target in (0.90, 0.95, 0.99):
        parts = []
        for name, (_, _, rows) in results.items():
            one, ef_one = at_recall(rows, target, 1)
            every, _ = at_recall(rows, target, threads)
            parts.append(f"{name} " + (f"{one:.0f} / {every:.0f} (ef {ef_one})" if one else "not reached"))
        print(f"  recall {target:.2f}: " + ";  ".join(parts))
        for name in ("loopline", "loopline int8", "loopline on disk"):
            if name not in results:
                continue
            mine = results[name][2]
            for other in ("hnswlib", "faiss"):
                if other in results:
                    a, b = at_recall(mine, target, 1), at_recall(results[other][2], target, 1)
                    c, d = at_recall(mine, target, threads), at_recall(results[other][2], target, threads)
                    if a[0] and b[0] and c[0] and d[0]:
                        print(f"      {name} / {other}: {a[0] / b[0]:.2f}x on 1 thread, {c[0] / d[0]:.2f}x on all")
    if "loopline" in tools:
        print("\nloopline filtered (1 thread): recall@10 and qps per ef")
        for line in loopline_lines:
            if line["kind"] == "filtered":
                index = "indexed" if line.get("indexed") else "unindexed"
                print(f"  {line['filter']:<9} {index:<9} ef {line['ef']:>4}  recall {line['recall']:.4f}  qps {line['qps']:8.0f}")
    if "loopline-disk" in tools:
        built, opened, lines = disk_lines
        peak = max(line["rss_mib"] for line in lines if line["kind"] == "disk-query")
        floats = args.n * args.dim * 4 / 2**20
        print(f"\nloopline on disk: {built['float_bytes_on_disk'] / 2**20:.0f} MiB of float32 in its file, in memory "
              f"int8 {built['int8_bytes'] / 2**20:.0f} MiB and graph {built['graph_bytes'] / 2**20:.0f} MiB; the querying "
              f"process's resident memory {opened['rss_mib']:.0f} MiB after opening, {peak:.0f} MiB at most while "
              f"querying ({100 * peak / floats:.0f}% of the float32 vectors' {floats:.0f} MiB)")
    if "hnswlib" in results and "loopline" in results:
        print(f"\nbuild time loopline / hnswlib: {results['loopline'][0] / results['hnswlib'][0]:.2f}x")


if __name__ == "__main__":
    main()
