"""Tracking at the scale the web UI meets: the same generated stores written straight into the MLflow server's
and Loopline's SQLite databases (a generator, not HTTP: MLflow creates about 13 runs/s over HTTP here), then
the UI's requests timed over raw HTTP on each, side by side:

* the runs table of one experiment with 100,000 runs (a 3-clause filtered, ordered page of 100);
* search across 1,000,000 runs in 1,000 experiments (the same query over every experiment);
* metric history of 100 runs x 100,000 steps, sampled for charts (`get-history-bulk-interval`): time, answer
  size and the server's peak memory.

Usage (run.sh prepares the venv and the release binary):
    python bench/tracking/scale.py --loopline-bin target/release/loopline [--runs 100000] [--spread 1000000]
        [--history-runs 100 --steps 100000] [--only loopline|mlflow]
"""

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Server, free_port, memory_mib  # noqa: E402

FILTER = "metrics.acc > 0.5 and params.model = 'rf' and tags.team = 'a'"
ORDER = ["metrics.acc DESC"]
BATCH = 20_000


def record(index, rng):
    return {
        "params": {"model": rng.choice(["rf", "xgb", "lr"]), "lr": str(rng.choice([0.1, 0.01, 0.001]))},
        "tags": {"team": rng.choice(["a", "b", "c", "d"]), "mlflow.runName": f"run-{index}"},
        "metrics": {"acc": rng.random(), "loss": rng.random()},
    }


class Store:
    """Rows for one server's schema."""

    def __init__(self, kind, database):
        self.kind, self.db = kind, sqlite3.connect(database)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        # Loopline keys its metric tables by a run's integer key (`runs.run_key`).
        self.keys = {}
        if kind == "loopline":
            self.next_key = self.db.execute("SELECT COALESCE(MAX(run_key), 0) + 1 FROM runs").fetchone()[0]

    def experiment(self, name):
        now = int(time.time() * 1000)
        if self.kind == "loopline":
            cursor = self.db.execute(
                "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time)"
                " VALUES (?, ?, 'active', ?, ?)", (name, f"mlflow-artifacts:/{name}", now, now))
        else:
            cursor = self.db.execute(
                "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, last_update_time)"
                " VALUES (?, ?, 'active', ?, ?)", (name, f"mlflow-artifacts:/{name}", now, now))
        return cursor.lastrowid

    def runs(self, experiment_id, first, count, rng, steps=1):
        runs, params, tags, metrics, latest = [], [], [], [], []
        now = int(time.time() * 1000)
        ids = []
        for index in range(first, first + count):
            run_id = uuid.uuid4().hex
            ids.append(run_id)
            data = record(index, rng)
            owner = run_id
            if self.kind == "loopline":
                owner = self.keys[run_id] = self.next_key
                self.next_key += 1
                runs.append((run_id, experiment_id, f"run-{index}", "bench", "FINISHED", now + index, now + index,
                             "active", f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts", owner))
            else:
                runs.append((run_id, f"run-{index}", "UNKNOWN", "", "", "bench", "FINISHED", now + index,
                             now + index, "", "active", f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                             experiment_id))
            params += [(run_id, k, v) for k, v in data["params"].items()]
            tags += [(run_id, k, v) for k, v in data["tags"].items()]
            for key, value in data["metrics"].items():
                latest.append((owner, key, steps - 1, now, value, 0))
                if steps == 1:
                    metrics.append((owner, key, 0, now, value, 0))
        if self.kind == "loopline":
            self.db.executemany("INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, end_time,"
                                " lifecycle_stage, artifact_uri, run_key) VALUES (?,?,?,?,?,?,?,?,?,?)", runs)
            self.db.executemany("INSERT INTO params (run_id, key, value) VALUES (?,?,?)", params)
            self.db.executemany("INSERT INTO tags (run_id, key, value) VALUES (?,?,?)", tags)
            self.db.executemany("INSERT INTO metrics (run_key, key, step, timestamp, value, is_nan) VALUES (?,?,?,?,?,?)",
                                metrics)
            self.db.executemany("INSERT INTO latest_metrics (run_key, key, step, timestamp, value, is_nan)"
                                " VALUES (?,?,?,?,?,?)", latest)
        else:
            self.db.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name,"
                                " user_id, status, start_time, end_time, source_version, lifecycle_stage,"
                                " artifact_uri, experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
            self.db.executemany("INSERT INTO params (run_uuid, key, value) VALUES (?,?,?)", params)
            self.db.executemany("INSERT INTO tags (run_uuid, key, value) VALUES (?,?,?)", tags)
            self.db.executemany("INSERT INTO metrics (run_uuid, key, step, timestamp, value, is_nan)"
                                " VALUES (?,?,?,?,?,?)", metrics)
            self.db.executemany("INSERT INTO latest_metrics (run_uuid, key, step, timestamp, value, is_nan)"
                                " VALUES (?,?,?,?,?,?)", latest)
        return ids

    def history(self, run_ids, steps, rng):
        now = int(time.time() * 1000)
        column = "run_key" if self.kind == "loopline" else "run_uuid"
        for run_id in run_ids:
            owner = self.keys[run_id] if self.kind == "loopline" else run_id
            rows = []
            value = 1.0
            for step in range(steps):
                value = value * 0.9999 + rng.random() * 0.001
                spike = 25.0 if step % 9973 == 17 else 0.0
                rows.append((owner, "loss", step, now + step, value + spike, 0))
            self.db.executemany(f"INSERT INTO metrics ({column}, key, step, timestamp, value, is_nan)"
                                " VALUES (?,?,?,?,?,?)", rows)
            self.db.commit()

    def close(self):
        self.db.commit()
        self.db.close()


def start(name, args, workdir):
    port = free_port()
    if name == "mlflow":
        mlflow_cli = str(Path(sys.executable).parent / "mlflow")
        command = [mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port),
                   "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db"]
    else:
        command = [os.path.abspath(args.loopline_bin), "server", "--port", str(port), "--data-dir", workdir]
    return Server(name, command, workdir, f"http://127.0.0.1:{port}")


def database(name, workdir):
    return f"{workdir}/mlflow.db" if name == "mlflow" else f"{workdir}/loopline.db"


# A request still unanswered after this long is recorded as "over N ms", not waited for.
PATIENCE_SECONDS = 300


def timed_search(url, experiment_ids, repeats=7):
    session, timings, hits = requests.Session(), [], 0
    body = {"experiment_ids": experiment_ids, "filter": FILTER, "order_by": ORDER, "max_results": 100}
    for _ in range(repeats):
        began = time.perf_counter()
        try:
            answer = session.post(f"{url}/api/2.0/mlflow/runs/search", json=body, timeout=PATIENCE_SECONDS)
        except requests.Timeout:
            return f"over {PATIENCE_SECONDS * 1000}", "-"
        timings.append(time.perf_counter() - began)
        if not answer.ok:
            return f"failed: HTTP {answer.status_code}", "-"
        hits = len(answer.json().get("runs", []))
    return statistics.median(timings) * 1000, hits


def timed_chart(url, charted, results, label):
    query = [("run_ids", run) for run in charted] + [("metric_key", "loss"), ("max_results", "320")]
    began = time.perf_counter()
    try:
        answer = requests.get(url, params=query, timeout=PATIENCE_SECONDS)
    except requests.RequestException as error:
        results[label] = f"failed: {type(error).__name__}"
        return
    results[label] = (time.perf_counter() - began) * 1000
    if not answer.ok:
        results[label] = f"failed: HTTP {answer.status_code}"
        return
    points = answer.json().get("metrics", [])
    results["chart answer (KiB)"] = len(answer.content) / 1024
    results["chart points"] = len(points)
    results["chart spikes kept"] = sum(1 for p in points if p["value"] > 20)


def shown(value, width):
    return f"{value:{width}.1f}" if isinstance(value, (int, float)) else f"{value:>{width}}"


def measure(name, args):
    results = {}
    workdir = tempfile.mkdtemp(prefix=f"scale-{name}-")
    print(f"== {name}: generating in {workdir}", flush=True)
    server = start(name, args, workdir)  # creates the schema
    server.stop()
    rng = random.Random(7)
    store = Store(name, database(name, workdir))
    began = time.monotonic()
    big = store.experiment("one-experiment")
    for first in range(0, args.runs, BATCH):
        store.runs(big, first, min(BATCH, args.runs - first), rng)
    spread = []
    per = max(args.spread // args.experiments, 1)
    for index in range(args.experiments if args.spread else 0):
        experiment = store.experiment(f"spread-{index}")
        spread.append(str(experiment))
        store.runs(experiment, index * per, per, rng)
        if index % 50 == 0:
            store.db.commit()
    charted = store.runs(store.experiment("history"), 0, args.history_runs, rng, steps=args.steps)
    store.history(charted, args.steps, rng)
    store.close()
    print(f"   generated in {time.monotonic() - began:.0f} s", flush=True)
    server = start(name, args, workdir)
    try:
        results[f"runs table, {args.runs} runs in one experiment (ms)"], results["hits (one experiment)"] = \
            timed_search(server.url, [str(big)], repeats=7 if name == "loopline" else 3)
        if spread:
            # One timing on MLflow's side: a search over a million runs takes it minutes.
            results[f"search over {per * len(spread)} runs in {len(spread)} experiments (ms)"], \
                results["hits (spread)"] = timed_search(server.url, spread, repeats=3 if name == "loopline" else 1)
        url = f"{server.url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
        timed_chart(url, charted, results, f"chart {args.history_runs} runs x {args.steps} steps (ms)")
        results["peak RSS after (MiB)"] = memory_mib(server.process.pid)[0]
    finally:
        server.stop()
    for key, value in results.items():
        print(f"   {key}: {shown(value, 1).strip()}", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loopline-bin", default="target/release/loopline")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--spread", type=int, default=1_000_000)
    parser.add_argument("--experiments", type=int, default=1_000)
    parser.add_argument("--history-runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--only", choices=["mlflow", "loopline"])
    args = parser.parse_args()
    results = {name: measure(name, args) for name in ["loopline", "mlflow"] if not args.only or args.only == name}
    if len(results) == 2:
        print(f"\n{'measurement':55} {'mlflow server':>14} {'loopline':>12} {'ratio':>8}")
        keys = list(dict.fromkeys([*results["loopline"], *results["mlflow"]]))
        for key in keys:
            theirs, ours = results["mlflow"].get(key, "-"), results["loopline"].get(key, "-")
            numbers = isinstance(theirs, (int, float)) and isinstance(ours, (int, float))
            lower_better = "(ms)" in key or "(MiB)" in key or "(KiB)" in key
            if numbers and lower_better and ours:
                ratio = f"{theirs / ours:.1f}x"
            else:
                ratio = "same" if theirs == ours else "-"
            print(f"{key:55} {shown(theirs, 14)} {shown(ours, 12)} {ratio:>8}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
