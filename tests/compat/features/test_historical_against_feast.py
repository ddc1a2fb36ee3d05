"""`loopline features historical` against Feast's own `get_historical_features` (local provider, file offline
store) on the same generated data and the same definitions, compared row for row.

The data is built to hit every rule of the point-in-time join: entity times exactly on a source event time and
exactly one TTL after one, ties on event time broken by the created time, rows that arrive late (an old event
time, a new created time), entity rows with no match or with keys the source never saw, a view keyed by two
entities and a view of a text-keyed entity.
"""

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feast_data import BINARY, FULL_VIEWS, LOOPLINE_DEFINITIONS, feast_store, make_data


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


def test_definitions_read_from_feasts_registry_give_the_same_training_set(workspace):
    directory, _, _ = workspace
    from_yaml = loopline_historical(directory, "--service", "everything", "--full-feature-names")
    out = directory / "from_registry.parquet"
    # The repository is named relative to the working directory, as a user types it.
    subprocess.run([BINARY, "features", "historical", "-d", "feast_repo", "--entities", "entities.parquet",
                    "--service", "everything", "--full-feature-names", "-o", str(out)], cwd=directory,
                   check=True, capture_output=True, text=True)
    pd.testing.assert_frame_equal(pd.read_parquet(out), from_yaml)
    checked = subprocess.run([BINARY, "features", "check", "-d", "feast_repo/data/registry.db"], cwd=directory,
                             check=True, capture_output=True, text=True)
    assert "ok       driver_stats" in checked.stdout


def test_a_registry_of_an_unsupported_version_or_not_a_registry_is_refused_by_name(workspace):
    directory, _, _ = workspace
    from feast.protos.feast.core import Registry_pb2

    registry = Registry_pb2.Registry()
    registry.ParseFromString((directory / "feast_repo" / "data" / "registry.db").read_bytes())
    registry.registry_schema_version = "7"
    (directory / "future.db").write_bytes(registry.SerializeToString())
    (directory / "garbage.db").write_bytes(b"\xff\xfe not protobuf at all")
    for name, wanted in [("future.db", 'schema version "7"'), ("garbage.db", "not a Feast registry")]:
        result = subprocess.run([BINARY, "features", "check", "-d", str(directory / name)], capture_output=True, text=True)
        assert result.returncode == 2 and wanted in result.stderr, result.stderr
