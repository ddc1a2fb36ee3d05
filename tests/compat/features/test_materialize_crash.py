"""A materialisation killed with `kill -9` part way: after a restart, running it again serves exactly the latest
value of every entity in the window (no entity lost, none left with an older or a doubled value), in the
embedded store and, when the suite has one, in Redis."""

import os
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import requests

from feast_data import BINARY
from loopline_process import LooplineProcess, free_port

DEFINITIONS = """
project: crash
entities: [{name: driver, join_keys: [driver_id], value_type: int64}]
sources: [{name: stats, path: stats.parquet, timestamp_field: event_timestamp}]
feature_views:
  - {name: driver_stats, entities: [driver], ttl: 30d, source: stats,
     schema: [{name: rate, dtype: float64}, {name: trips, dtype: int64}]}
"""
WINDOW = {"start_ts": "2024-05-01T00:00:00", "end_ts": "2024-05-08T00:00:00"}
DRIVERS = 60_000


def stores():
    yield pytest.param([], id="embedded")
    redis = os.environ.get("LOOPLINE_TEST_REDIS_URL")
    yield pytest.param(["--redis-url", redis] if redis else None, id="redis")


@pytest.mark.parametrize("store", list(stores()))
def test_a_killed_materialisation_run_again_serves_the_latest_values_exactly(tmp_path, store):
    if store is None:
        pytest.skip("no Redis (scripts/test.sh starts one)")
    random = np.random.default_rng(4)
    rows = 1_500_000
    stats = pd.DataFrame({
        "driver_id": random.integers(0, DRIVERS, rows).astype("int64"),
        "event_timestamp": pd.Timestamp("2024-05-01T00:00:00Z")
        + pd.to_timedelta(random.integers(0, 10 * 24 * 3600, rows), unit="s"),
        "rate": random.random(rows),
        "trips": random.integers(0, 1000, rows).astype("int64"),
    }).drop_duplicates(["driver_id", "event_timestamp"])
    stats.to_parquet(tmp_path / "stats.parquet")
    # Each run's project gets keys of its own in a shared Redis.
    project = f"crash{os.getpid()}{'r' if store else 'e'}"
    (tmp_path / "features.yaml").write_text(DEFINITIONS.replace("project: crash", f"project: {project}"))
    port = free_port()
    args = ["server", "--port", str(port), "--data-dir", str(tmp_path / "data"), *store]

    server = LooplineProcess(args, port, tmp_path / "first.log")
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    subprocess.run([BINARY, "features", "apply", "-d", "features.yaml"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    scoped = f"{server.url}/api/loopline/v1/features/projects/{project}"
    started = requests.post(f"{scoped}/materialize?async=true", json=WINDOW, timeout=30)
    assert started.status_code == 202, started.text
    time.sleep(0.2)
    server.process.kill()
    server.process.wait()

    server = LooplineProcess(args, port, tmp_path / "second.log")
    try:
        done = requests.post(f"{scoped}/materialize", json=WINDOW, timeout=600)
        assert done.status_code == 200, done.text
        window = stats[stats["event_timestamp"] <= pd.Timestamp(WINDOW["end_ts"], tz="UTC")]
        latest = window.sort_values("event_timestamp").groupby("driver_id").last()
        asked = list(range(0, DRIVERS, 7)) + [DRIVERS + 1]
        answer = requests.post(f"{scoped}/get-online-features", timeout=60, json={
            "features": ["driver_stats:rate", "driver_stats:trips"], "entities": {"driver_id": asked}}).json()
        columns = dict(zip(answer["metadata"]["feature_names"], answer["results"]))
        for position, driver in enumerate(asked):
            if driver in latest.index:
                assert columns["rate"]["statuses"][position] == "PRESENT", driver
                assert columns["rate"]["values"][position] == latest.at[driver, "rate"], driver
                assert columns["trips"]["values"][position] == latest.at[driver, "trips"], driver
                expected_time = latest.at[driver, "event_timestamp"].strftime("%Y-%m-%dT%H:%M:%SZ")
                assert columns["rate"]["event_timestamps"][position] == expected_time, driver
            else:
                assert columns["rate"]["statuses"][position] == "NOT_FOUND", driver
        views = requests.get(f"{scoped}/views", timeout=30).json()["views"]
        assert views[0]["materialized_until"] == "2024-05-08T00:00:00Z"
    finally:
        requests.delete(scoped, timeout=30)
        server.stop()
