"""Serving throughput with and without monitors: `loopline server` serving a native XGBoost model from the
registry, single-row MLflow scoring requests from bench/serving's closed-loop load generator; once with no
monitor, once with monitors evaluating the same traffic as it arrives (the prediction log written every second,
a count-window monitor with drift, quality and a suite looked at every second). Prints req/s and the loss.

usage: python throughput.py --loopline PATH --loadgen PATH [--seconds N] [--concurrency N] [--rounds N]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import requests

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compat"))
from loopline_process import LooplineProcess, free_port  # noqa: E402

FIXTURE = ROOT / "crates" / "model-runtimes" / "tests" / "fixtures" / "mlflow" / "xgb_classifier"


def start(binary: str, data: str):
    port = free_port()
    os.environ["LOOPLINE_BIN"] = binary
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", data, "--monitor-tick-seconds", "1",
                              "--prediction-log-flush-seconds", "1", "--prediction-log-flush-rows", "2000"],
                             port, pathlib.Path(data) / "server.log", timeout=60)
    for file in FIXTURE.iterdir():
        requests.put(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/models/churn/{file.name}", data=file.read_bytes()).raise_for_status()
    api = f"{server.url}/api/2.0/mlflow"
    requests.post(f"{api}/registered-models/create", json={"name": "churn"}).raise_for_status()
    requests.post(f"{api}/model-versions/create", json={"name": "churn", "source": "mlflow-artifacts:/models/churn"}).raise_for_status()
    return server


def load(loadgen: str, url: str, body: pathlib.Path, concurrency: int, seconds: int) -> dict:
    out = subprocess.run([loadgen, url, str(body), str(concurrency), str(seconds)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loopline", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = pathlib.Path(tempfile.mkdtemp()) / "body.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": ["f0", "f1", "f2", "f3", "f4"], "data": [[0.1, -0.2, 0.3, 1.4, 0.5]]}}))
    results = {"without monitors": [], "with monitors": []}
    for round_ in range(args.rounds):
        for label in results:
            server = start(args.loopline, tempfile.mkdtemp(prefix="loopline-throughput-"))
            try:
                url = f"{server.url}/models/churn/versions/1/invocations"
                load(args.loadgen, url, body, 2, 2)  # warm-up: the model loads
                if label == "with monitors":
                    suite = {"name": "live", "expectations": [
                        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "f1", "min_value": -5, "max_value": 5}}]}
                    for index in range(2):
                        spec = {"name": f"live-{index}", "model": "churn", "window": {"predictions": 5000}, "reference_window": True,
                                "expectations": suite}
                        requests.post(f"{server.url}/api/loopline/v1/monitors", json=spec).raise_for_status()
                result = load(args.loadgen, url, body, args.concurrency, args.seconds)
                if label == "with monitors":
                    windows = requests.get(f"{server.url}/api/loopline/v1/monitors/live-0/windows").json()["windows"]
                    result["windows_evaluated"] = len(windows)
                results[label].append(result)
                print(label, json.dumps(result), flush=True)
            finally:
                server.stop()
    best = {label: max(r["rps"] for r in runs) for label, runs in results.items()}
    loss = 1 - best["with monitors"] / best["without monitors"]
    print(f"{'':<18} {'req/s (best of ' + str(args.rounds) + ')':>22}")
    for label, value in best.items():
        print(f"{label:<18} {value:>22.0f}")
    print(f"throughput lost with monitors running: {100 * loss:.1f}%")


if __name__ == "__main__":
    main()
