"""`loopline features historical` against Feast's own `get_historical_features` (local provider, file offline
store) on the same generated data and the same definitions, compared row for row.

The data is built to hit every rule of the point-in-time join: entity times exactly on a source event time and
exactly one TTL after one, ties on event time broken by the created time, rows that arrive late (an old event
time, a new created time), entity rows with no match or with keys the source never saw, a view keyed by two
entities and a view of a text-keyed entity.
"""

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
BINARY = os.environ.get("LOOPLINE_BIN", str(REPO_ROOT / "target" / "debug" / "loopline"))
# Feast's usage telemetry would try the network.
os.environ["FEAST_USAGE"] = "False"
START = pd.Timestamp("2024-05-01T00:00:00Z")


def make_data(directory: Path, seed: int = 11):
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
    # Ties on event time with different created times, and late rows: an old event time written last.
    ties = drivers.sample(300, random_state=1).copy()
    ties["created"] = ties["created"] + pd.Timedelta(minutes=1)
    ties["conv_rate"] = ties["conv_rate"] + 10
    late = drivers.sample(100, random_state=2).copy()
    late["created"] = minutes(5000)
    late["conv_rate"] = late["conv_rate"] + 100
    drivers = pd.concat([drivers, ties, late], ignore_index=True)
    # Exact duplicates of (key, event, created) would leave the choice unspecified; keep one of each.
    drivers = drivers.drop_duplicates(["driver_id", "event_timestamp", "created"]).reset_index(drop=True)
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
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
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
feature_services:
  - {name: everything, features: [driver_stats, trip_stats, customer_stats]}
"""


# (source file stem, join keys, output columns) of the service `everything` with full names.
FULL_VIEWS = [
    ("driver_stats", ["driver_id"], ["driver_stats__conv_rate", "driver_stats__avg_daily_trips"]),
    ("trips", ["driver_id", "customer_id"], ["trip_stats__trip_fare"]),
    ("customers", ["customer_id"], ["customer_stats__lifetime_value"]),
]


def feast_store(directory: Path):
    from feast import FeatureStore

    repo = directory / "feast_repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        "project: compat\nregistry: data/registry.db\nprovider: local\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\nentity_key_serialization_version: 3\n"
    )
    (repo / "definitions.py").write_text(FEAST_DEFINITIONS.format(dir=directory))
    subprocess.run(["feast", "apply"], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}",
                        "FEAST_USAGE": "False"})
    return FeatureStore(repo_path=str(repo))


def loopline_historical(directory: Path, *args):
    (directory / "features.yaml").write_text(LOOPLINE_DEFINITIONS)
    out = directory / "loopline.parquet"
    subprocess.run([BINARY, "features", "historical", "-d", str(directory / "features.yaml"),
                    "--entities", str(directory / "entities.parquet"), "-o", str(out), *args],
                   check=True, capture_output=True, text=True)
    return pd.read_parquet(out)


def compare(feast: pd.DataFrame, ours: pd.DataFrame, views, directory: Path):
    """Row for row on every row Feast returns; and every row Feast leaves out is one its file offline store drops
    by design of its dask code, which Loopline keeps as Feast's documented left join (and its SQL stores) do:
    a row whose key is in a view's source with no value in the time window (`_filter_ttl` removes it), or a
    repeat of another row's join keys and time (`_drop_duplicates` keeps one)."""
    assert list(ours["label"]) == sorted(ours["label"]), "Loopline keeps the entity frame's order"
    ours = ours.set_index("label")
    feast = feast.set_index("label").sort_index()
    kept = ours.loc[feast.index]
    sources = {name: pd.read_parquet(directory / f"{name}.parquet") for name, _, _ in views}
    for name, keys, columns in views:
        agree = pd.Series(True, index=feast.index)
        for column in columns:
            theirs, mine = feast[column], kept[column]
            assert list(theirs.isna()) == list(mine.isna()), f"{column}: which rows found a value differ"
            assert 0 < (~theirs.isna()).sum() < len(theirs), f"{column}: the data should give both outcomes"
            agree &= (theirs == mine) | theirs.isna()
        if "created" not in sources[name]:
            assert agree.all(), f"{name}: {(~agree).sum()} rows differ: {kept[~agree][columns]} {feast[~agree][columns]}"
            continue
        # Feast's file store breaks ties on event time by two unstable sorts, so its pick among rows with the
        # same key and event time is arbitrary. Where the picks differ they must be such a tie, and ours the
        # row created last, as Feast documents.
        source = sources[name].set_index(columns[0].split("__")[-1])
        assert (~agree).sum() > 10, "the data should hold ties on event time"
        for label in feast.index[~agree]:
            mine = source.loc[kept.at[label, columns[0]]]
            theirs = source.loc[feast.at[label, columns[0]]]
            assert mine["event_timestamp"] == theirs["event_timestamp"], f"row {label}: not a tie"
            tied = sources[name][(sources[name]["event_timestamp"] == mine["event_timestamp"])
                                 & (sources[name][keys] == kept.loc[label, keys].to_numpy()).all(axis=1)]
            assert mine["created"] == tied["created"].max(), f"row {label}: not the latest created"
    # Feast deduplicates on the join keys of the views joined so far and the time, so a row it drops as a
    # repeat shares at least one view's keys and the time with another row.
    repeated = pd.Series(False, index=ours.index)
    for _, keys, _ in views:
        repeated |= ours.duplicated(keys + ["event_timestamp"], keep=False)
    dropped = ours.drop(index=feast.index)
    assert len(dropped) < len(ours) // 2
    for label, row in dropped.iterrows():
        repeat = repeated[label]
        windowless = any(
            row[columns].isna().all()
            and (sources[name][keys] == row[keys].to_numpy()).all(axis=1).any()
            for name, keys, columns in views
        )
        assert repeat or windowless, f"Feast left out row {label} for no reason Feast's file store has: {row}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    directory = tmp_path_factory.mktemp("features")
    entities = make_data(directory)
    return directory, entities, feast_store(directory)


def test_a_feature_service_with_full_names_equals_feasts_training_set(workspace):
    directory, entities, store = workspace
    feast = store.get_historical_features(entity_df=entities, features=store.get_feature_service("everything"),
                                          full_feature_names=True).to_df()
    ours = loopline_historical(directory, "--service", "everything", "--full-feature-names")
    compare(feast, ours, FULL_VIEWS, directory)
    assert list(ours.columns) == list(entities.columns) + [c for _, _, columns in FULL_VIEWS for c in columns]
    assert list(ours["label"]) == list(entities["label"])


def test_feature_references_with_short_names_equal_feasts(workspace):
    directory, entities, store = workspace
    references = ["driver_stats:conv_rate", "trip_stats:trip_fare"]
    feast = store.get_historical_features(entity_df=entities, features=references).to_df()
    ours = loopline_historical(directory, "--features", ",".join(references))
    compare(feast, ours, [("driver_stats", ["driver_id"], ["conv_rate"]),
                          ("trips", ["driver_id", "customer_id"], ["trip_fare"])], directory)


def test_a_join_spilled_to_disk_equals_feasts(workspace):
    directory, entities, store = workspace
    feast = store.get_historical_features(entity_df=entities, features=store.get_feature_service("everything"),
                                          full_feature_names=True).to_df()
    result = subprocess.run([BINARY, "features", "historical", "-d", str(directory / "features.yaml"),
                             "--entities", str(directory / "entities.parquet"), "--service", "everything",
                             "--full-feature-names", "--memory-limit", "1MiB", "-o", str(directory / "spilled.parquet")],
                            check=True, capture_output=True, text=True)
    assert "partitions spilled to disk" in result.stdout
    ours = pd.read_parquet(directory / "spilled.parquet")
    compare(feast, ours, FULL_VIEWS, directory)


def test_a_name_collision_without_full_names_is_refused_and_nothing_is_written(workspace):
    directory, _, _ = workspace

    (directory / "collide.yaml").write_text(LOOPLINE_DEFINITIONS.replace("trip_fare", "conv_rate"))
    result = subprocess.run([BINARY, "features", "historical", "-d", str(directory / "collide.yaml"),
                             "--entities", str(directory / "entities.parquet"), "--service", "everything",
                             "-o", str(directory / "collide.parquet")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "feature name collision" in result.stderr and "conv_rate" in result.stderr
    assert not (directory / "collide.parquet").exists()
    assert not [p for p in directory.iterdir() if p.name.startswith(".")], "no partial or spill files are left"
