"""On-demand features against Feast's: the same view written once as a Feast pandas function (applied with the
real `feast` CLI) and once as Loopline expressions, computed from a request field and a stored view's features,
compared in training sets (`get_historical_features`) and in online lookups (`get_online_features`)."""

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import requests

from feast_data import (BINARY, FEAST_ON_DEMAND, LOOPLINE_DEFINITIONS, LOOPLINE_ON_DEMAND, feast_store,
                        make_data)
from loopline_process import LooplineProcess, free_port

START, END = "2024-04-01T00:00:00", "2024-06-01T00:00:00"
STORED = ["driver_stats:conv_rate", "driver_stats:avg_daily_trips"]
COMPUTED = ["trip_estimates:fare_estimate", "trip_estimates:trips_per_km"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    directory = tmp_path_factory.mktemp("on_demand")
    entities = make_data(directory, ties=False)
    entities["distance_km"] = np.random.default_rng(5).uniform(0.5, 30, len(entities)).round(3)
    entities.to_parquet(directory / "entities.parquet")
    store = feast_store(directory, FEAST_ON_DEMAND, "feast_on_demand")
    (directory / "features.yaml").write_text(LOOPLINE_DEFINITIONS + LOOPLINE_ON_DEMAND)
    return directory, entities, store


def same(theirs, mine):
    """Equal values, a missing value (None or NaN) on both sides counting as equal."""
    theirs = pd.Series(theirs, dtype="float64")
    mine = pd.Series(mine, dtype="float64")
    assert list(theirs.isna()) == list(mine.isna())
    np.testing.assert_allclose(mine[~mine.isna()], theirs[~theirs.isna()], rtol=1e-12)


def test_training_set_on_demand_features_equal_feasts(workspace):
    directory, entities, store = workspace
    feast = store.get_historical_features(entity_df=entities, features=STORED + COMPUTED).to_df()
    out = directory / "with_on_demand.parquet"
    subprocess.run([BINARY, "features", "historical", "-d", str(directory / "features.yaml"), "--entities",
                    str(directory / "entities.parquet"), "--features", ",".join(STORED + COMPUTED), "-o", str(out)],
                   check=True, capture_output=True, text=True)
    ours = pd.read_parquet(out).set_index("label")
    assert list(ours.columns[-4:]) == ["conv_rate", "avg_daily_trips", "fare_estimate", "trips_per_km"]
    feast = feast.set_index("label").sort_index()
    kept = ours.loc[feast.index]
    for column in ["conv_rate", "fare_estimate", "trips_per_km"]:
        same(feast[column], kept[column])
    assert kept["fare_estimate"].notna().sum() > 100 and kept["fare_estimate"].isna().sum() > 100


def test_a_training_set_without_the_request_field_is_refused_by_name(workspace):
    directory, entities, _ = workspace
    entities.drop(columns=["distance_km"]).to_parquet(directory / "no_request.parquet")
    result = subprocess.run([BINARY, "features", "historical", "-d", str(directory / "features.yaml"), "--entities",
                             str(directory / "no_request.parquet"), "--features", COMPUTED[0],
                             "-o", str(directory / "never.parquet")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "`distance_km`" in result.stderr and "request field" in result.stderr
    assert not (directory / "never.parquet").exists()


@pytest.fixture(scope="module")
def online(workspace):
    directory, _, store = workspace
    store.materialize(pd.Timestamp(START, tz="UTC").to_pydatetime(), pd.Timestamp(END, tz="UTC").to_pydatetime())
    port = free_port()
    loopline = LooplineProcess(["server", "--port", str(port), "--data-dir", str(directory / "loopline-data")], port,
                               directory / "loopline.log")
    cli = {**os.environ, "MLFLOW_TRACKING_URI": loopline.url}
    applied = subprocess.run([BINARY, "features", "apply", "-d", str(directory / "features.yaml")], env=cli,
                             check=True, capture_output=True, text=True)
    assert "+ on-demand feature view trip_estimates" in applied.stdout
    subprocess.run([BINARY, "features", "materialize", START, END], env=cli, check=True, capture_output=True)
    yield store, loopline.url
    loopline.stop()


def test_online_on_demand_features_equal_feasts(online):
    store, url = online
    drivers = [1001, 1002, 999, 1039, 1001]
    distances = [3.5, 12.0, 4.0, 0.75, 30]
    features = ["driver_stats:conv_rate"] + COMPUTED
    theirs = store.get_online_features(
        features=features, entity_rows=[{"driver_id": d, "distance_km": k} for d, k in zip(drivers, distances)]
    ).to_dict()
    answer = requests.post(f"{url}/get-online-features", timeout=30, json={
        "features": features, "entities": {"driver_id": drivers, "distance_km": distances}}).json()
    names = answer["metadata"]["feature_names"]
    # As Feast answers: the join key, the stored features, then the computed ones; the request field not echoed.
    assert names == ["driver_id", "conv_rate", "fare_estimate", "trips_per_km"]
    assert sorted(names) == sorted(theirs)
    columns = dict(zip(names, answer["results"]))
    assert columns["driver_id"]["values"] == theirs["driver_id"] == drivers
    for name in names[1:]:
        same(theirs[name], columns[name]["values"])
    assert columns["fare_estimate"]["statuses"] == ["PRESENT"] * len(drivers)
    assert columns["fare_estimate"]["event_timestamps"] == ["1970-01-01T00:00:00Z"] * len(drivers)
    assert columns["conv_rate"]["statuses"][2] == "NOT_FOUND"


def test_a_lookup_without_the_request_field_is_a_client_error_naming_it(online):
    _, url = online
    response = requests.post(f"{url}/get-online-features", timeout=30, json={
        "features": COMPUTED, "entities": {"driver_id": [1001]}})
    assert response.status_code == 400
    assert "distance_km" in json.loads(response.json())["message"]
    response = requests.post(f"{url}/get-online-features", timeout=30, json={
        "features": COMPUTED, "entities": {"driver_id": [1001], "distance_km": ["far"]}})
    assert response.status_code == 400
    assert "request field `distance_km`" in json.loads(response.json())["message"]


def test_on_demand_features_of_request_fields_alone_need_no_stored_view(workspace):
    directory, entities, _ = workspace
    (directory / "request_only.yaml").write_text(LOOPLINE_DEFINITIONS + LOOPLINE_ON_DEMAND + """
  - name: trip_only
    sources: [trip_request]
    schema:
      - {name: metres, dtype: float64, expression: "distance_km * 1000"}
      - {name: bucket, dtype: int64, expression: "floor(distance_km / 10)"}
""")
    out = directory / "request_only.parquet"
    subprocess.run([BINARY, "features", "historical", "-d", str(directory / "request_only.yaml"), "--entities",
                    str(directory / "entities.parquet"), "--features", "trip_only:metres,trip_only:bucket",
                    "-o", str(out)], check=True, capture_output=True, text=True)
    ours = pd.read_parquet(out)
    np.testing.assert_allclose(ours["metres"], entities["distance_km"] * 1000, rtol=1e-12)
    assert list(ours["bucket"]) == list(np.floor(entities["distance_km"] / 10).astype("int64"))
