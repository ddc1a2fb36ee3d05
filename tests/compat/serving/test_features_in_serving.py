"""A model that declares a feature service is called with entity ids: the server joins the online features
before the model runs. Trained on a training set from `loopline features historical`, logged and registered
with the stock mlflow client, tagged with its feature service, and served; its answers equal the model's own
predictions on the same features looked up through Feast's online API."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from loopline_process import binary

DEFINITIONS = """
project: rides
entities: [{name: driver, join_keys: [driver_id], value_type: int64}]
sources: [{name: driver_stats, path: driver_stats.parquet, timestamp_field: event_timestamp}]
feature_views:
  - {name: driver_hourly, entities: [driver], ttl: 1d, source: driver_stats,
     schema: [{name: conv_rate, dtype: float64}, {name: trips, dtype: int64}]}
request_sources: [{name: trip, schema: [{name: distance_km, dtype: float64}]}]
on_demand_feature_views:
  - {name: estimates, sources: [driver_hourly, trip],
     schema: [{name: fare, dtype: float64, expression: "2.5 + distance_km * (1 + conv_rate)"},
              {name: busy, dtype: int64, expression: "if(trips > 150, 1, 0)"}]}
feature_services:
  - {name: ranking, features: [driver_hourly]}
  - {name: ranking_live, features: [driver_hourly, estimates]}
"""


# Models trained by the fixture beside the one it returns.
TRAINED = {}


@pytest.fixture(scope="module")
def ranker(server, tmp_path_factory):
    import mlflow
    import xgboost as xgb
    from mlflow import MlflowClient

    directory = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2024-05-01T00:00:00Z")
    stats = pd.DataFrame({
        "driver_id": rng.integers(1, 50, 3000).astype("int64"),
        "event_timestamp": start + pd.to_timedelta(rng.integers(0, 24 * 60, 3000), unit="min"),
        "conv_rate": rng.random(3000).round(4),
        "trips": rng.integers(0, 300, 3000).astype("int64"),
    })
    stats.to_parquet(directory / "driver_stats.parquet")
    entities = pd.DataFrame({
        "driver_id": rng.integers(1, 50, 2000).astype("int64"),
        "event_timestamp": start + pd.to_timedelta(rng.integers(60, 24 * 60, 2000), unit="min"),
    })
    entities["label"] = rng.random(2000)
    entities["distance_km"] = rng.uniform(1, 20, 2000).round(2)
    entities.to_parquet(directory / "entities.parquet")
    (directory / "features.yaml").write_text(DEFINITIONS)
    cli = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    run = lambda *args: subprocess.run([binary(), "features", *args], cwd=directory, env=cli, check=True,  # noqa: E731
                                       capture_output=True, text=True)
    # The training set is logged on the server as a dataset version with its lineage.
    logged = run("historical", "--entities", "entities.parquet", "--service", "ranking", "-o", "train.parquet",
                 "--log-dataset", "ranking-train")
    assert "logged as dataset ranking-train v1" in logged.stdout, logged.stdout
    TRAINED["directory"] = directory
    train = pd.read_parquet(directory / "train.parquet").dropna()
    features = ["conv_rate", "trips"]
    train["label"] = train["conv_rate"] * 2 + train["trips"] / 100
    model = xgb.XGBRegressor(n_estimators=20, max_depth=3).fit(train[features], train["label"])
    client = MlflowClient()
    digest = requests.get(f"{server.url}/api/loopline/v1/datasets/ranking-train/versions/1", timeout=30).json()
    digest = digest.get("version", digest)["hash"]
    for name, tags in [("ranker", {}),
                       ("ranker_with_defaults", {"loopline.features.on_missing": "defaults",
                                                 "loopline.features.defaults": '{"conv_rate": 0.5, "trips": 7}'})]:
        with mlflow.start_run():
            # The stock client's dataset input, with the logged version's hash as its digest.
            mlflow.log_input(mlflow.data.from_pandas(train, name="ranking-train", digest=digest), context="training")
            mlflow.xgboost.log_model(model, name="model", input_example=train[features].head(5),
                                     registered_model_name=name)
        client.set_registered_model_tag(name, "loopline.features.service", "ranking")
        for key, value in tags.items():
            client.set_registered_model_tag(name, key, value)
    # The same definitions give the training set's computed features and the served ones.
    run("historical", "--entities", "entities.parquet", "--service", "ranking_live", "-o", "live.parquet")
    live = pd.read_parquet(directory / "live.parquet").dropna()
    live_features = ["distance_km", "conv_rate", "trips", "fare", "busy"]
    np.testing.assert_allclose(live["fare"], 2.5 + live["distance_km"] * (1 + live["conv_rate"]), rtol=1e-12)
    live_model = xgb.XGBRegressor(n_estimators=20, max_depth=3).fit(live[live_features], live["label"])
    mlflow.xgboost.log_model(live_model, name="model", input_example=live[live_features].head(5),
                             registered_model_name="ranker_live")
    client.set_registered_model_tag("ranker_live", "loopline.features.service", "ranking_live")
    TRAINED["ranker_live"] = live_model
    run("apply")
    run("materialize", "2024-04-30T00:00:00", "2024-05-03T00:00:00")
    return model, features


def score(server, model_name, ids):
    body = {"dataframe_split": {"columns": ["driver_id"], "data": [[i] for i in ids]}}
    return requests.post(f"{server.url}/models/{model_name}/versions/1/invocations", json=body, timeout=60)


def test_a_model_called_with_entity_ids_equals_the_model_on_the_joined_features(server, ranker):
    model, features = ranker
    ids = [3, 11, 17, 29, 41]
    answer = score(server, "ranker", ids)
    assert answer.status_code == 200, answer.text
    online = requests.post(f"{server.url}/get-online-features",
                           json={"feature_service": "ranking", "entities": {"driver_id": ids}}, timeout=30).json()
    columns = dict(zip(online["metadata"]["feature_names"], online["results"]))
    assert all(s == "PRESENT" for name in features for s in columns[name]["statuses"])
    joined = pd.DataFrame({name: columns[name]["values"] for name in features})
    np.testing.assert_allclose(answer.json()["predictions"], model.predict(joined), rtol=1e-6)


def test_an_unknown_entity_is_a_404_naming_it_or_gets_the_declared_defaults(server, ranker):
    model, features = ranker
    missing = score(server, "ranker", [3, 999])
    assert missing.status_code == 404
    assert "driver_id=999" in missing.json()["message"]
    answer = score(server, "ranker_with_defaults", [999])
    assert answer.status_code == 200, answer.text
    defaults = pd.DataFrame({"conv_rate": [0.5], "trips": [7]})
    np.testing.assert_allclose(answer.json()["predictions"], model.predict(defaults), rtol=1e-6)


def test_a_request_without_the_entity_column_says_which_column_to_send(server, ranker):
    body = {"dataframe_split": {"columns": ["driver"], "data": [[3]]}}
    answer = requests.post(f"{server.url}/models/ranker/versions/1/invocations", json=body, timeout=60)
    assert answer.status_code == 400
    assert "'driver_id'" in answer.json()["message"]


def test_the_open_inference_protocol_gets_the_features_joined_too(server, ranker):
    model, features = ranker
    ids = [5, 8, 13]
    body = {"inputs": [{"name": "driver_id", "shape": [len(ids)], "datatype": "INT64", "data": ids}]}
    answer = requests.post(f"{server.url}/v2/models/ranker/versions/1/infer", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    online = requests.post(f"{server.url}/get-online-features",
                           json={"feature_service": "ranking", "entities": {"driver_id": ids}}, timeout=30).json()
    columns = dict(zip(online["metadata"]["feature_names"], online["results"]))
    joined = pd.DataFrame({name: columns[name]["values"] for name in features})
    predictions = np.asarray(answer.json()["outputs"][0]["data"], dtype=float)
    np.testing.assert_allclose(predictions, model.predict(joined), rtol=1e-6)


def test_request_time_features_are_computed_from_the_request_before_the_model_runs(server, ranker):
    ids, distances = [3, 11, 17], [2.5, 7.25, 15.0]
    body = {"dataframe_split": {"columns": ["driver_id", "distance_km"], "data": [list(r) for r in zip(ids, distances)]}}
    answer = requests.post(f"{server.url}/models/ranker_live/versions/1/invocations", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    online = requests.post(f"{server.url}/get-online-features", timeout=30, json={
        "feature_service": "ranking_live", "entities": {"driver_id": ids, "distance_km": distances}}).json()
    columns = dict(zip(online["metadata"]["feature_names"], online["results"]))
    joined = pd.DataFrame({"distance_km": distances,
                           **{name: columns[name]["values"] for name in ["conv_rate", "trips", "fare", "busy"]}})
    np.testing.assert_allclose(joined["fare"], 2.5 + joined["distance_km"] * (1 + joined["conv_rate"]), rtol=1e-12)
    np.testing.assert_allclose(answer.json()["predictions"], TRAINED["ranker_live"].predict(joined), rtol=1e-6)
    missing = requests.post(f"{server.url}/models/ranker_live/versions/1/invocations", timeout=60,
                            json={"dataframe_split": {"columns": ["driver_id"], "data": [[3]]}})
    assert missing.status_code == 400 and "'distance_km'" in missing.json()["message"]


def test_the_training_set_is_a_dataset_version_whose_lineage_names_its_inputs(server, ranker):
    directory = TRAINED["directory"]
    lineage = requests.get(f"{server.url}/api/loopline/v1/lineage?model=ranker&version=1", timeout=30).json()
    (dataset,) = lineage["datasets"]
    assert (dataset["name"], dataset["version"], dataset["registered"]) == ("ranking-train", 1, True)
    built = dataset["computed_from"]
    assert built["kind"] == "feature_training_set" and built["service"] == "ranking"
    assert built["definitions"]["project"] == "rides" and len(built["definitions"]["hash"]) == 64
    assert [(s["name"], s["views"]) for s in built["sources"]] == [("driver_stats", ["driver_hourly"])]
    assert built["columns"] == ["conv_rate", "trips"]
    # The stored object is the file written, and the entity frame's hash is the one `loopline data` gives it.
    stored = requests.get(f"{server.url}/api/loopline/v1/data/objects/{dataset['digest']}", timeout=30)
    assert stored.content == (directory / "train.parquet").read_bytes()
    added = subprocess.run([binary(), "data", "add", "entities.parquet", "--name", "entity-frame", "--push"],
                           cwd=directory, env={**os.environ, "MLFLOW_TRACKING_URI": server.url},
                           check=True, capture_output=True, text=True)
    assert "registered as" in added.stdout
    frame = requests.get(f"{server.url}/api/loopline/v1/datasets/entity-frame/versions/1", timeout=30).json()
    assert frame.get("version", frame)["hash"] == built["entity_frame"]["hash"]
