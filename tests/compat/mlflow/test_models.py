"""Logged models, the registry, aliases, stages and loading models back through every URI form."""

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


@pytest.fixture(scope="module")
def iris():
    features, labels = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(features, labels)
    return features, labels, model


def test_log_model_register_alias_and_load(experiment, client, iris):
    features, _, model = iris
    name = f"iris-{experiment}"
    signature = infer_signature(features, model.predict(features))
    with mlflow.start_run() as run:
        mlflow.log_metric("acc", 0.95)
        info = mlflow.sklearn.log_model(
            model, name="model", signature=signature, input_example=features.head(3), registered_model_name=name
        )
    assert info.model_id.startswith("m-")
    logged = mlflow.get_logged_model(info.model_id)
    assert logged.status == "READY"
    assert logged.source_run_id == run.info.run_id
    version = client.get_model_version(name, "1")
    assert version.run_id == run.info.run_id
    assert version.current_stage == "None"
    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    expected = model.predict(features.head(5))
    for uri in [f"models:/{name}@champion", f"models:/{name}/1", f"runs:/{run.info.run_id}/model", f"models:/{info.model_id}"]:
        loaded = mlflow.pyfunc.load_model(uri)
        assert np.array_equal(np.asarray(loaded.predict(features.head(5))), expected), uri
    sklearn_model = mlflow.sklearn.load_model(f"models:/{name}@champion")
    assert np.array_equal(sklearn_model.predict(features.head(5)), expected)
    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException) as missing_alias:
        client.get_model_version_by_alias(name, "champion")
    assert missing_alias.value.error_code == "INVALID_PARAMETER_VALUE"


def test_register_from_run_uri_stages_and_versions(experiment, client, iris):
    features, _, model = iris
    name = f"staged-{experiment}"
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model2")
    first = mlflow.register_model(f"runs:/{run.info.run_id}/model2", name)
    second = mlflow.register_model(f"runs:/{run.info.run_id}/model2", name)
    assert (first.version, second.version) == ("1", "2")
    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "production", archive_existing_versions=True)
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert client.get_model_version(name, "2").current_stage == "Production"
    latest = client.get_latest_versions(name, stages=["Production"])
    assert [version.version for version in latest] == ["2"]
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/Production")
    assert len(loaded.predict(features.head(2))) == 2
    client.update_model_version(name, "2", description="second")
    client.set_model_version_tag(name, "2", "validated", "yes")
    fetched = client.get_model_version(name, "2")
    assert (fetched.description, fetched.tags) == ("second", {"validated": "yes"})
    client.delete_model_version(name, "1")
    with pytest.raises(MlflowException) as missing:
        client.get_model_version(name, "1")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_registered_model_crud_and_errors(client):
    name = "compat-registry-crud"
    client.create_registered_model(name, tags={"team": "a"}, description="first")
    with pytest.raises(MlflowException) as duplicate:
        client.create_registered_model(name)
    assert duplicate.value.error_code == "RESOURCE_ALREADY_EXISTS"
    client.update_registered_model(name, description="updated")
    client.set_registered_model_tag(name, "k", "v")
    client.rename_registered_model(name, name + "-renamed")
    renamed = client.get_registered_model(name + "-renamed")
    assert renamed.description == "updated"
    assert renamed.tags == {"team": "a", "k": "v"}
    client.delete_registered_model_tag(name + "-renamed", "k")
    client.delete_registered_model(name + "-renamed")
    with pytest.raises(MlflowException) as missing:
        client.get_registered_model(name + "-renamed")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_autolog_and_log_input(experiment, client, iris):
    features, labels, _ = iris
    mlflow.sklearn.autolog(log_input_examples=False, log_model_signatures=True)
    try:
        LogisticRegression(max_iter=200).fit(features, labels)
    finally:
        mlflow.sklearn.autolog(disable=True)
    run = mlflow.last_active_run()
    fetched = client.get_run(run.info.run_id)
    assert fetched.data.params["max_iter"] == "200"
    assert "training_accuracy_score" in fetched.data.metrics
    assert fetched.data.tags["mlflow.autologging"] == "sklearn"
    assert fetched.outputs.model_outputs, "autolog records its model as a run output"
    dataset = mlflow.data.from_pandas(features.assign(label=labels), name="iris-train", targets="label")
    with mlflow.start_run() as input_run:
        mlflow.log_input(dataset, context="training", tags={"split": "train"})
    inputs = client.get_run(input_run.info.run_id).inputs.dataset_inputs
    assert inputs[0].dataset.name == "iris-train"
    found = mlflow.search_runs(
        [experiment], filter_string="dataset.name = 'iris-train' and dataset.context = 'training'", output_format="list"
    )
    assert [found_run.info.run_id for found_run in found] == [input_run.info.run_id]
