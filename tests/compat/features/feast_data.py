"""Data and definitions shared by the feature store suite: the same generated tables and the same features,
written once for Feast (Python definitions applied with the real `feast` CLI) and once for Loopline (YAML)."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[3]
BINARY = os.environ.get("LOOPLINE_BIN", str(REPO_ROOT / "target" / "debug" / "loopline"))
# Feast's usage telemetry would try the network.
os.environ["FEAST_USAGE"] = "False"
START = pd.Timestamp("2024-05-01T00:00:00Z")


def make_data(directory: Path, seed: int = 11, ties: bool = True):
    random = np.random.default_rng(seed)
    minutes = lambda values: START + pd.to_timedelta(values, unit="min")  # noqa: E731

    rows = 4000
    drivers = pd.DataFrame({
        "driver_id": random.integers(1000, 1040, rows).astype("int64"),
        "event_timestamp": minutes(random.integers(0, 900, rows)),
        "created": minutes(random.integers(0, 2000, rows)),
        "conv_rate": random.random(rows).round(6),
        "avg_daily_trips": random.integers(0, 500, rows).astype("int64"),
    })
    if ties:
        # Ties on event time with different created times, and late rows: an old event time written last.
        tied = drivers.sample(300, random_state=1).copy()
        tied["created"] = tied["created"] + pd.Timedelta(minutes=1)
        tied["conv_rate"] = tied["conv_rate"] + 10
        late = drivers.sample(100, random_state=2).copy()
        late["created"] = minutes(5000)
        late["conv_rate"] = late["conv_rate"] + 100
        drivers = pd.concat([drivers, tied, late], ignore_index=True)
        # Exact duplicates of (key, event, created) would leave the choice unspecified; keep one of each.
        drivers = drivers.drop_duplicates(["driver_id", "event_timestamp", "created"]).reset_index(drop=True)
    else:
        # Feast's file store picks arbitrarily among rows with one key and event time (its sorts are not
        # stable), so answers compared whole with it must have no such ties.
        drivers = drivers.drop_duplicates(["driver_id", "event_timestamp"]).reset_index(drop=True)
    drivers.to_parquet(directory / "driver_stats.parquet")

    trips = pd.DataFrame({
        "driver_id": random.integers(1000, 1040, rows).astype("int64"),
        "customer_id": pd.Series(random.integers(0, 30, rows)).map(lambda c: f"c{c}"),
        "event_timestamp": minutes(random.integers(0, 900, rows)),
        "trip_fare": random.random(rows).round(4) * 50,
    }).drop_duplicates(["driver_id", "customer_id", "event_timestamp"]).reset_index(drop=True)
    trips.to_parquet(directory / "trips.parquet")

    customers = pd.DataFrame({
        "customer_id": pd.Series(random.integers(0, 30, 800)).map(lambda c: f"c{c}"),
        "event_timestamp": minutes(random.integers(0, 900, 800)),
        "lifetime_value": random.random(800).round(5) * 1000,
    }).drop_duplicates(["customer_id", "event_timestamp"]).reset_index(drop=True)
    customers.to_parquet(directory / "customers.parquet")

    n = 3000
    entity_times = minutes(random.integers(0, 1000, n))
    on_event = drivers.sample(n // 10, random_state=3)
    entities = pd.DataFrame({
        "driver_id": random.integers(995, 1045, n).astype("int64"),
        "customer_id": pd.Series(random.integers(0, 33, n)).map(lambda c: f"c{c}"),
        "event_timestamp": entity_times,
        "label": np.arange(n),
    })
    # Entity times exactly on an event time, and exactly one TTL (2 h) after one.
    k = len(on_event)
    entities.loc[: k - 1, "driver_id"] = on_event["driver_id"].to_numpy()
    entities.loc[: k - 1, "event_timestamp"] = on_event["event_timestamp"].to_numpy()
    entities.loc[k: 2 * k - 1, "driver_id"] = on_event["driver_id"].to_numpy()
    entities.loc[k: 2 * k - 1, "event_timestamp"] = (on_event["event_timestamp"] + pd.Timedelta(hours=2)).to_numpy()
    entities.to_parquet(directory / "entities.parquet")
    return entities


FEAST_DEFINITIONS = """
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
driver_source = FileSource(name="driver_source", path="{dir}/driver_stats.parquet",
                           timestamp_field="event_timestamp", created_timestamp_column="created")
trip_source = FileSource(name="trip_source", path="{dir}/trips.parquet", timestamp_field="event_timestamp")
customer_source = FileSource(name="customer_source", path="{dir}/customers.parquet",
                             timestamp_field="event_timestamp")
driver_stats = FeatureView(name="driver_stats", entities=[driver], ttl=timedelta(hours=2), source=driver_source,
                           schema=[Field(name="conv_rate", dtype=Float64), Field(name="avg_daily_trips", dtype=Int64)])
trip_stats = FeatureView(name="trip_stats", entities=[driver, customer], ttl=timedelta(hours=5), source=trip_source,
                         schema=[Field(name="trip_fare", dtype=Float64)])
customer_stats = FeatureView(name="customer_stats", entities=[customer], ttl=timedelta(0), source=customer_source,
                             schema=[Field(name="lifetime_value", dtype=Float64)])
everything = FeatureService(name="everything", features=[driver_stats, trip_stats, customer_stats])
driver_push = PushSource(name="driver_push", batch_source=driver_source)
driver_fresh = FeatureView(name="driver_fresh", entities=[driver], ttl=timedelta(hours=2), source=driver_push,
                           schema=[Field(name="conv_rate", dtype=Float64), Field(name="avg_daily_trips", dtype=Int64)])
"""

LOOPLINE_DEFINITIONS = """
project: compat
entities:
  - {name: driver, join_keys: [driver_id], value_type: int64}
  - {name: customer, join_keys: [customer_id], value_type: string}
sources:
  - {name: driver_source, path: driver_stats.parquet, timestamp_field: event_timestamp,
     created_timestamp_column: created}
  - {name: trip_source, path: trips.parquet, timestamp_field: event_timestamp}
  - {name: customer_source, path: customers.parquet, timestamp_field: event_timestamp}
feature_views:
  - {name: driver_stats, entities: [driver], ttl: 2h, source: driver_source,
     schema: [{name: conv_rate, dtype: Float64}, {name: avg_daily_trips, dtype: Int64}]}
  - {name: trip_stats, entities: [driver, customer], ttl: 5h, source: trip_source,
     schema: [{name: trip_fare, dtype: Float64}]}
  - {name: customer_stats, entities: [customer], ttl: 0, source: customer_source,
     schema: [{name: lifetime_value, dtype: Float64}]}
  - {name: driver_fresh, entities: [driver], ttl: 2h, source: driver_push,
     schema: [{name: conv_rate, dtype: Float64}, {name: avg_daily_trips, dtype: Int64}]}
feature_services:
  - {name: everything, features: [driver_stats, trip_stats, customer_stats]}
push_sources:
  - {name: driver_push, batch_source: driver_source}
"""


# (source file stem, join keys, output columns) of the service `everything` with full names.
FULL_VIEWS = [
    ("driver_stats", ["driver_id"], ["driver_stats__conv_rate", "driver_stats__avg_daily_trips"]),
    ("trips", ["driver_id", "customer_id"], ["trip_stats__trip_fare"]),
    ("customers", ["customer_id"], ["customer_stats__lifetime_value"]),
]


# An on-demand view in each language: Feast's as a pandas function, Loopline's as expressions computing the same.
FEAST_ON_DEMAND = """
import pandas as pd
from feast import RequestSource
from feast.on_demand_feature_view import on_demand_feature_view

trip_request = RequestSource(name="trip_request", schema=[Field(name="distance_km", dtype=Float64)])


@on_demand_feature_view(sources=[driver_stats, trip_request],
                        schema=[Field(name="fare_estimate", dtype=Float64), Field(name="trips_per_km", dtype=Float64)])
def trip_estimates(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["fare_estimate"] = 2.5 + inputs["distance_km"] * 1.2 * (1 + inputs["conv_rate"])
    out["trips_per_km"] = inputs["avg_daily_trips"] / inputs["distance_km"]
    return out
"""

LOOPLINE_ON_DEMAND = """
request_sources:
  - {name: trip_request, schema: [{name: distance_km, dtype: float64}]}
on_demand_feature_views:
  - name: trip_estimates
    sources: [driver_stats, trip_request]
    schema:
      - {name: fare_estimate, dtype: float64, expression: "2.5 + distance_km * 1.2 * (1 + conv_rate)"}
      - {name: trips_per_km, dtype: float64, expression: "avg_daily_trips / distance_km"}
"""


def feast_store(directory: Path, extra: str = "", name: str = "feast_repo"):
    from feast import FeatureStore

    repo = directory / name
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        "project: compat\nregistry: data/registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\nentity_key_serialization_version: 3\n"
    )
    (repo / "definitions.py").write_text(FEAST_DEFINITIONS.format(dir=directory) + extra)
    subprocess.run(["feast", "apply"], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}",
                        "FEAST_USAGE": "False"})
    return FeatureStore(repo_path=str(repo))


