"""Serving benchmark: the same models served by `mlflow models serve` and by `loopline serve`, driven by one
closed-loop load generator (bench/serving/loadgen) at fixed concurrency; plus batch inference of the ONNX
pipeline by `loopline predict` against raw in-process onnxruntime. Prints a table with the ratios.

Models (trained here, seeded):
  * XGBoost classifier, 100 trees, 30 features (mlflow.xgboost)            -> loopline: native evaluator
  * scikit-learn pipeline StandardScaler + LogisticRegression (mlflow.sklearn) -> loopline: Python worker
  * the same pipeline exported by skl2onnx (mlflow.onnx)                   -> loopline: ONNX Runtime

usage: python bench.py --loopline target/release/loopline --loadgen bench/serving/loadgen/target/release/loopline-loadgen
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

FEATURES = [f"f{i}" for i in range(30)]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid):
    """Resident memory of a process and all its descendants (mlflow serve runs uvicorn children)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:
            pass
    return total / 1024


def wait_ready(url, process, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def make_models(directory):
    import mlflow.onnx
    import mlflow.sklearn
    import mlflow.xgboost
    import xgboost as xgb
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(42)
    X = pd.DataFrame(rng.normal(size=(20_000, 30)), columns=FEATURES)
    y = (X.f0 + X.f1 * X.f2 - X.f3 > 0).astype(int)
    booster = xgb.XGBClassifier(n_estimators=100, max_depth=6).fit(X, y)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    paths = {name: Path(directory) / name for name in ["xgboost", "sklearn", "onnx", "xgboost-onnx"]}
    mlflow.xgboost.save_model(booster, str(paths["xgboost"]))
    mlflow.sklearn.save_model(pipeline, str(paths["sklearn"]), serialization_format="cloudpickle")
    proto = to_onnx(pipeline, initial_types=[("input", FloatTensorType([None, 30]))], target_opset=17,
                    options={"zipmap": False})
    mlflow.onnx.save_model(proto, str(paths["onnx"]))
    from onnxmltools.convert import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as ToolsFloat

    trees = convert_xgboost(booster, initial_types=[("input", ToolsFloat([None, 30]))], target_opset=15)
    mlflow.onnx.save_model(trees, str(paths["xgboost-onnx"]))
    row = rng.normal(size=(1, 30))
    body = Path(directory) / "row.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": FEATURES, "data": row.tolist()}}))
    onnx_body = Path(directory) / "row-onnx.json"
    onnx_body.write_text(json.dumps({"inputs": row.astype(np.float32).tolist()}))
    return paths, body, onnx_body


def load(loadgen, url, body, concurrency, seconds):
    out = subprocess.run([loadgen, url, str(body), str(concurrency), str(seconds)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def serve_mlflow(path, port):
    env = {**os.environ, "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "120"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(path), "-p", str(port), "--env-manager", "local"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def serve_loopline(binary, path, port):
    command = [binary, "serve", "-m", str(path), "-p", str(port), "--prediction-log-sample-rate", "0"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(label, process, url, body, loadgen, levels, seconds):
    wait_ready(url, process)
    load(loadgen, f"{url}/invocations", body, 2, 2)  # warm-up
    rows = []
    for concurrency in levels:
        result = load(loadgen, f"{url}/invocations", body, concurrency, seconds)
        result.update(server=label, concurrency=concurrency, rss_mib=rss_mib(process.pid))
        rows.append(result)
        print(f"  {label:<28} c={concurrency:<3} {result['rps']:>10.1f} req/s  p50 {result['p50_ms']:8.2f} ms  "
              f"p99 {result['p99_ms']:8.2f} ms  errors {result['errors']}  rss {result['rss_mib']:.0f} MiB", flush=True)
    process.terminate()
    process.wait(timeout=60)
    return rows


def python_parquet_job(session, source, target):
    """The job `loopline predict` does, written in Python: pyarrow reads the Parquet file in batches, onnxruntime
    predicts each, pyarrow writes the predictions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for record_batch in pq.ParquetFile(source).iter_batches(batch_size=65_536):
        matrix = np.column_stack([column.to_numpy() for column in record_batch.columns]).astype(np.float32, copy=False)
        outputs = session.run(None, {"input": matrix})
        columns = {}
        for i, output in enumerate(outputs):
            values = np.asarray(output).reshape(len(matrix), -1)
            columns.update({f"output_{i}_{j}": values[:, j] for j in range(values.shape[1])})
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(target, table.schema)
        writer.write_table(table)
    writer.close()


def batch(binary, onnx_path, directory, rows):
    """Rows per second: raw onnxruntime on an in-memory matrix, the same Parquet-to-Parquet job in Python (pyarrow
    and onnxruntime), and `loopline predict` Parquet to Parquet."""
    import onnxruntime

    rng = np.random.default_rng(7)
    source = Path(directory) / f"batch-{rows}.parquet"
    frame = pd.DataFrame(rng.normal(size=(rows, 30)).astype(np.float32), columns=FEATURES)
    if not source.exists():
        frame.to_parquet(source, row_group_size=65_536)
    session = onnxruntime.InferenceSession(str(onnx_path / "model.onnx"))
    matrix = frame.to_numpy()
    session.run(None, {"input": matrix[:1000]})
    target = Path(directory) / "predictions.parquet"
    python_target = Path(directory) / "predictions-python.parquet"
    raw_times, python_times, our_times = [], [], []
    for _ in range(3):  # best of three for each: the machine is shared and noisy
        started = time.perf_counter()
        for start in range(0, rows, 65_536):
            session.run(None, {"input": matrix[start:start + 65_536]})
        raw_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        python_parquet_job(session, source, python_target)
        python_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([binary, "predict", "-m", str(onnx_path), "-i", str(source), "-o", str(target)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        our_times.append(time.perf_counter() - started)
    return rows / min(raw_times), rows / min(python_times), rows / min(our_times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loopline", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--batch-rows", type=int, default=2_000_000)
    parser.add_argument("--batch-only", action="store_true", help="only the batch-inference comparison")
    args = parser.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    directory = tempfile.mkdtemp(prefix="loopline-bench-serving-")
    paths, body, onnx_body = make_models(directory)
    results = []
    online = [] if args.batch_only else [("xgboost", paths["xgboost"], body), ("sklearn", paths["sklearn"], body),
                                         ("sklearn", paths["onnx"], onnx_body)]
    for model, loopline_path, loopline_body in online:
        if loopline_path != paths["onnx"]:
            print(f"==> {model}: mlflow models serve", flush=True)
            port = free_port()
            results += [dict(r, model=model) for r in
                        measure("mlflow models serve", serve_mlflow(paths[model], port), f"http://127.0.0.1:{port}", body,
                                args.loadgen, levels, args.seconds)]
        backend = {"xgboost": "native", "sklearn": "Python worker", "onnx": "ONNX Runtime"}[loopline_path.name]
        print(f"==> {model}: loopline serve ({backend})", flush=True)
        port = free_port()
        results += [dict(r, model=model) for r in
                    measure(f"loopline ({backend})", serve_loopline(args.loopline, loopline_path, port), f"http://127.0.0.1:{port}",
                            loopline_body, args.loadgen, levels, args.seconds)]
    print("==> batch inference of the ONNX exports", flush=True)
    batches = {label: batch(args.loopline, paths[key], directory, args.batch_rows)
               for label, key in [("pipeline (scaler + logistic regression)", "onnx"), ("XGBoost, 100 trees", "xgboost-onnx")]}

    print("\nSingle-row requests, closed loop (req/s, p50/p99 ms, RSS after load):")
    for model in [] if args.batch_only else ["xgboost", "sklearn"]:
        rows = [r for r in results if r["model"] == model]
        for concurrency in levels:
            base = next(r for r in rows if r["server"] == "mlflow models serve" and r["concurrency"] == concurrency)
            for r in rows:
                if r["concurrency"] != concurrency:
                    continue
                ratio = r["rps"] / base["rps"] if base["rps"] else float("nan")
                print(f"  {model:<8} c={concurrency:<3} {r['server']:<28} {r['rps']:>10.1f} req/s  p50 {r['p50_ms']:7.2f}  "
                      f"p99 {r['p99_ms']:7.2f}  {r['rss_mib']:6.0f} MiB  x{ratio:.1f}")
    print(f"\nBatch inference, {args.batch_rows:,} rows x 30 features, ONNX exports (rows/s):")
    for label, (raw, python, ours) in batches.items():
        print(f"  {label:<40} raw onnxruntime (in memory) {raw:>12,.0f}   pyarrow + onnxruntime (Parquet to Parquet) "
              f"{python:>12,.0f}   loopline predict (Parquet to Parquet) {ours:>12,.0f}   = {ours / raw:.2f}x raw, "
              f"{ours / python:.2f}x the Python job")
    Path(directory, "results.json").write_text(json.dumps({"online": results, "batch": batches}))
    print(f"\nraw results: {directory}/results.json")


if __name__ == "__main__":
    main()
