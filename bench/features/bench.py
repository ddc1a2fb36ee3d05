"""Feature store benchmark: Feast (local provider: file offline store, its Python feature server) against
Loopline on the same data and definitions, in one run, printing the ratios.

1. Point-in-time join: an entity frame of N rows against three feature views (S source rows in all). Feast's
   get_historical_features runs in a child process under an address-space limit (default 16 GiB), so running out
   of memory is a measured result; its wall time and peak RSS are taken from the child. Loopline's
   `features historical` runs with --memory-limit and is measured the same way.
2. Online lookups of a 20-feature service for 1 and 100 entities: `feast serve` and `loopline server` over the
   same Redis (each materialised by itself), driven by bench/serving's closed-loop load generator.

usage: python bench.py --loopline target/release/loopline --loadgen bench/serving/loadgen/target/release/loopline-loadgen
       [--entities 1000000] [--source-rows 12000000] [--feast-memory-gib 16] [--only join|online]
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import requests

START = pd.Timestamp("2024-01-01T00:00:00Z")
DAYS = 30
PROFILE_FEATURES = [f"p{i}" for i in range(20)]


def write_source(path: Path, rows: int, keys: dict, features: list, seed: int, chunk: int = 2_000_000):
    """Rows with the given key columns (name -> number of distinct values), an event time and created time
    over DAYS days, and float features; written in chunks so memory stays flat."""
    rng = np.random.default_rng(seed)
    writer = None
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        columns = {name: rng.integers(0, distinct, n).astype("int64") for name, distinct in keys.items()}
        seconds = rng.integers(0, DAYS * 86_400, n)
        columns["event_timestamp"] = pa.array((START.value // 1000 + seconds * 1_000_000), pa.timestamp("us", "UTC"))
        columns["created"] = pa.array((START.value // 1000 + (seconds + rng.integers(0, 3600, n)) * 1_000_000),
                                      pa.timestamp("us", "UTC"))
        for name in features:
            columns[name] = rng.random(n)
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        writer.write_table(table)
        done += n
    writer.close()


def make_data(directory: Path, entities: int, source_rows: int):
    drivers, customers = 100_000, 200_000
    shares = {"driver_hourly": 0.4, "customer_daily": 0.4, "trip_stats": 0.2}
    write_source(directory / "driver_hourly.parquet", int(source_rows * shares["driver_hourly"]),
                 {"driver_id": drivers}, ["conv_rate", "acc_rate", "avg_daily_trips"], 1)
    write_source(directory / "customer_daily.parquet", int(source_rows * shares["customer_daily"]),
                 {"customer_id": customers}, ["spend", "visits"], 2)
    write_source(directory / "trip_stats.parquet", int(source_rows * shares["trip_stats"]),
                 {"driver_id": drivers // 10, "customer_id": customers // 10}, ["fare"], 3)
    write_source(directory / "driver_profile.parquet", drivers * 2, {"driver_id": drivers}, PROFILE_FEATURES, 4)
    rng = np.random.default_rng(5)
    seconds = rng.integers(86_400, DAYS * 86_400, entities)
    pq.write_table(pa.table({
        "driver_id": rng.integers(0, drivers, entities).astype("int64"),
        "customer_id": rng.integers(0, customers, entities).astype("int64"),
        "event_timestamp": pa.array(START.value // 1000 + seconds * 1_000_000, pa.timestamp("us", "UTC")),
        "label": rng.random(entities),
    }), directory / "entities.parquet")


FEAST_DEFINITIONS = """
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
def source(name, created=True):
    return FileSource(name=name, path="{dir}/" + name + ".parquet", timestamp_field="event_timestamp",
                      created_timestamp_column="created" if created else "")
driver_hourly = FeatureView(name="driver_hourly", entities=[driver], ttl=timedelta(days=2), source=source("driver_hourly"),
    schema=[Field(name=n, dtype=Float64) for n in ["conv_rate", "acc_rate", "avg_daily_trips"]])
customer_daily = FeatureView(name="customer_daily", entities=[customer], ttl=timedelta(days=7), source=source("customer_daily"),
    schema=[Field(name=n, dtype=Float64) for n in ["spend", "visits"]])
trip_stats = FeatureView(name="trip_stats", entities=[driver, customer], ttl=timedelta(days=30), source=source("trip_stats"),
    schema=[Field(name="fare", dtype=Float64)])
driver_profile = FeatureView(name="driver_profile", entities=[driver], ttl=timedelta(0), source=source("driver_profile"),
    schema=[Field(name=n, dtype=Float64) for n in {profile}])
training = FeatureService(name="training", features=[driver_hourly, customer_daily, trip_stats])
profile = FeatureService(name="profile", features=[driver_profile])
"""

LOOPLINE_DEFINITIONS = """
project: bench
entities:
  - {{name: driver, join_keys: [driver_id], value_type: int64}}
  - {{name: customer, join_keys: [customer_id], value_type: int64}}
sources:
  - {{name: driver_hourly, path: driver_hourly.parquet, timestamp_field: event_timestamp, created_timestamp_column: created}}
  - {{name: customer_daily, path: customer_daily.parquet, timestamp_field: event_timestamp, created_timestamp_column: created}}
  - {{name: trip_stats, path: trip_stats.parquet, timestamp_field: event_timestamp, created_timestamp_column: created}}
  - {{name: driver_profile, path: driver_profile.parquet, timestamp_field: event_timestamp, created_timestamp_column: created}}
feature_views:
  - {{name: driver_hourly, entities: [driver], ttl: 2d, source: driver_hourly,
     schema: [{{name: conv_rate, dtype: float64}}, {{name: acc_rate, dtype: float64}}, {{name: avg_daily_trips, dtype: float64}}]}}
  - {{name: customer_daily, entities: [customer], ttl: 7d, source: customer_daily,
     schema: [{{name: spend, dtype: float64}}, {{name: visits, dtype: float64}}]}}
  - {{name: trip_stats, entities: [driver, customer], ttl: 30d, source: trip_stats, schema: [{{name: fare, dtype: float64}}]}}
  - {{name: driver_profile, entities: [driver], source: driver_profile, schema: [{profile}]}}
feature_services:
  - {{name: training, features: [driver_hourly, customer_daily, trip_stats]}}
  - {{name: profile, features: [driver_profile]}}
"""


def feast_repo(directory: Path, redis_port: int) -> Path:
    repo = directory / "feast_repo"
    repo.mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: bench\nregistry: data/registry.db\nprovider: local\n"
        f"online_store:\n  type: redis\n  connection_string: 127.0.0.1:{redis_port}\n"
        "entity_key_serialization_version: 3\n")
    (repo / "definitions.py").write_text(FEAST_DEFINITIONS.format(dir=directory, profile=PROFILE_FEATURES))
    subprocess.run(["feast", "apply"], cwd=repo, check=True, capture_output=True, env=feast_env())
    return repo


def feast_env():
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "FEAST_USAGE": "False"}


def child(command, memory_gib=None, cwd=None, env=None):
    """Runs a command; returns (seconds, peak RSS in MiB of that child alone, exit code, stderr tail)."""
    if memory_gib:
        command = ["prlimit", f"--as={int(memory_gib * (1 << 30))}", "--", *command]
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        errors.seek(0)
        tail = errors.read().decode(errors="replace")[-600:]
    return seconds, usage.ru_maxrss / 1024, process.returncode, tail


FEAST_JOIN = """
import sys, pandas as pd
from feast import FeatureStore
store = FeatureStore(repo_path=sys.argv[1])
entities = pd.read_parquet(sys.argv[2])
frame = store.get_historical_features(entity_df=entities, features=store.get_feature_service("training"),
                                      full_feature_names=True).to_df()
frame.to_parquet(sys.argv[3])
print(len(frame))
"""


def join(args, directory: Path, repo: Path):
    print(f"== point-in-time join: {args.entities:,} entity rows, {args.source_rows:,} source rows in 3 views", flush=True)
    script = directory / "feast_join.py"
    script.write_text(FEAST_JOIN)
    feast = child([sys.executable, str(script), str(repo), str(directory / "entities.parquet"),
                   str(directory / "feast.parquet")], memory_gib=args.feast_memory_gib, env=feast_env())
    ours = child([args.loopline, "features", "historical", "-d", str(directory / "features.yaml"),
                  "--entities", str(directory / "entities.parquet"), "--service", "training", "--full-feature-names",
                  "--memory-limit", args.loopline_memory, "-o", str(directory / "loopline.parquet")])
    feast_ok = feast[2] == 0
    print(f"  feast     {'%8.1f s' % feast[0] if feast_ok else 'FAILED   '}  peak RSS {feast[1]:8.0f} MiB"
          + ("" if feast_ok else f"  ({feast[3].strip().splitlines()[-1] if feast[3].strip() else 'killed'})"))
    print(f"  loopline  {ours[0]:8.1f} s  peak RSS {ours[1]:8.0f} MiB  (--memory-limit {args.loopline_memory})")
    if ours[2] != 0:
        raise SystemExit(f"loopline failed: {ours[3]}")
    rows = pq.ParquetFile(directory / "loopline.parquet").metadata.num_rows
    print(f"  loopline rows {rows:,}" + (f", feast rows {pq.ParquetFile(directory / 'feast.parquet').metadata.num_rows:,}"
                                         if feast_ok else ""))
    if feast_ok:
        print(f"  ratio: loopline is {feast[0] / ours[0]:.1f}x faster at {ours[1] / feast[1]:.2f} of the memory")
    return {"feast_seconds": feast[0] if feast_ok else None, "feast_rss_mib": feast[1], "loopline_seconds": ours[0],
            "loopline_rss_mib": ours[1]}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url, process, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited early")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def online(args, directory: Path, repo: Path, redis_port: int):
    print("== online lookups of the 20-feature service `profile` over one Redis", flush=True)
    end = (START + pd.Timedelta(days=DAYS + 1)).strftime("%Y-%m-%dT%H:%M:%S")
    begin = START.strftime("%Y-%m-%dT%H:%M:%S")
    subprocess.run(["feast", "materialize", begin, end, "--views", "driver_profile"], cwd=repo, check=True,
                   capture_output=True, env=feast_env())
    feast_port, loopline_port = free_port(), free_port()
    feast = subprocess.Popen(["feast", "serve", "-p", str(feast_port), "--no-access-log", "-w", "1"], cwd=repo,
                             env=feast_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = directory / "loopline-data"
    ours = subprocess.Popen([args.loopline, "server", "--port", str(loopline_port), "--data-dir", str(data),
                             "--redis-url", f"redis://127.0.0.1:{redis_port}/1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{feast_port}/health", feast)
        wait_for(f"http://127.0.0.1:{loopline_port}/health", ours)
        cli = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{loopline_port}"}
        subprocess.run([args.loopline, "features", "apply", "-d", str(directory / "features.yaml")], env=cli, check=True,
                       capture_output=True)
        subprocess.run([args.loopline, "features", "materialize", begin, end, "--views", "driver_profile"], env=cli,
                       check=True, capture_output=True)
        rng = np.random.default_rng(9)
        results = []
        for count in (1, 100):
            body = directory / f"lookup-{count}.json"
            body.write_text(json.dumps({"feature_service": "profile",
                                        "entities": {"driver_id": rng.integers(0, 100_000, count).tolist()}}))
            for label, port in (("feast", feast_port), ("loopline", loopline_port)):
                url = f"http://127.0.0.1:{port}/get-online-features"
                same = requests.post(url, data=body.read_bytes(), timeout=30,
                                     headers={"content-type": "application/json"})
                assert same.status_code == 200, same.text
                subprocess.run([args.loadgen, url, str(body), "2", "2"], capture_output=True, check=True)
                for concurrency in (1, 8):
                    out = json.loads(subprocess.run([args.loadgen, url, str(body), str(concurrency), str(args.seconds)],
                                                    capture_output=True, text=True, check=True).stdout)
                    out.update(server=label, entities=count, concurrency=concurrency)
                    results.append(out)
                    print(f"  {label:<9} {count:>3} entities c={concurrency}  {out['rps']:9.1f} req/s  "
                          f"p50 {out['p50_ms']:7.2f} ms  p99 {out['p99_ms']:7.2f} ms  errors {out['errors']}", flush=True)
        for count in (1, 100):
            pick = lambda server: next(r for r in results if r["server"] == server and r["entities"] == count  # noqa: E731
                                       and r["concurrency"] == 8)
            print(f"  ratio {count:>3} entities: loopline {pick('loopline')['rps'] / pick('feast')['rps']:.1f}x the "
                  f"throughput, p99 {pick('loopline')['p99_ms']:.2f} ms vs {pick('feast')['p99_ms']:.2f} ms")
        return results
    finally:
        for process in (feast, ours):
            process.terminate()
            process.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loopline", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--source-rows", type=int, default=12_000_000)
    parser.add_argument("--feast-memory-gib", type=float, default=16)
    parser.add_argument("--loopline-memory", default="2GiB")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", choices=["join", "online"])
    parser.add_argument("--keep", help="a directory to keep the data in (reused when it exists)")
    args = parser.parse_args()
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="loopline-features-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / f"data-{args.entities}-{args.source_rows}"
    if not marker.exists():
        print(f"== generating data in {directory}", flush=True)
        make_data(directory, args.entities, args.source_rows)
        marker.write_text("")
    (directory / "features.yaml").write_text(LOOPLINE_DEFINITIONS.format(
        profile=", ".join(f"{{name: {n}, dtype: float64}}" for n in PROFILE_FEATURES)))
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        repo = feast_repo(directory, redis_port)
        if args.only in (None, "join"):
            join(args, directory, repo)
        if args.only in (None, "online"):
            online(args, directory, repo, redis_port)
    finally:
        redis.terminate()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
