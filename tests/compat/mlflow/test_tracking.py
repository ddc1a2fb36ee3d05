"""Fluent and client tracking through the stock mlflow client."""

import math

import mlflow
import pytest
from mlflow.exceptions import MlflowException


def test_fluent_run_logs_params_metrics_tags(experiment, client):
    with mlflow.start_run(run_name="basic-run", description="a run") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"depth": 3, "model": "rf"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
        mlflow.set_tag("team", "core")
        mlflow.set_tags({"stage": "dev"})
        mlflow.log_metric("nan_metric", float("nan"))
        mlflow.log_metric("inf_metric", float("inf"))
    fetched = client.get_run(run.info.run_id)
    assert fetched.info.status == "FINISHED"
    assert fetched.info.run_name == "basic-run"
    assert fetched.info.end_time is not None
    assert fetched.data.params == {"lr": "0.01", "depth": "3", "model": "rf"}
    assert fetched.data.metrics["loss"] == pytest.approx(0.2)
    assert fetched.data.metrics["acc"] == pytest.approx(0.9)
    assert math.isnan(fetched.data.metrics["nan_metric"])
    assert fetched.data.metrics["inf_metric"] == float("inf")
    assert fetched.data.tags["team"] == "core"
    assert fetched.data.tags["mlflow.runName"] == "basic-run"
    assert fetched.data.tags["mlflow.note.content"] == "a run"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [point.step for point in history] == [0, 1, 2, 3, 4]
    assert [point.value for point in history] == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])


def test_server_generates_run_names_and_keeps_them_in_sync(experiment, client):
    run = client.create_run(experiment)
    assert run.info.run_name
    assert run.data.tags["mlflow.runName"] == run.info.run_name
    client.update_run(run.info.run_id, name="renamed")
    fetched = client.get_run(run.info.run_id)
    assert fetched.info.run_name == "renamed"
    assert fetched.data.tags["mlflow.runName"] == "renamed"
    client.set_tag(run.info.run_id, "mlflow.runName", "via-tag")
    assert client.get_run(run.info.run_id).info.run_name == "via-tag"


def test_nested_and_failed_runs(experiment, client):
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("m", 1)
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    with pytest.raises(ZeroDivisionError):
        with mlflow.start_run(run_name="boom") as failed:
            1 / 0
    assert client.get_run(failed.info.run_id).info.status == "FAILED"
    killed = mlflow.start_run(run_name="killed")
    mlflow.end_run(status="KILLED")
    assert client.get_run(killed.info.run_id).info.status == "KILLED"


def test_resume_run_sets_running_again(experiment, client):
    with mlflow.start_run() as run:
        mlflow.log_param("a", "1")
    with mlflow.start_run(run_id=run.info.run_id):
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
        mlflow.log_metric("after_resume", 2.0)
    fetched = client.get_run(run.info.run_id)
    assert fetched.info.status == "FINISHED"
    assert fetched.data.metrics["after_resume"] == 2.0


def test_params_are_immutable(experiment, client):
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "p", "1")
    client.log_param(run.info.run_id, "p", "1")
    with pytest.raises(MlflowException) as raised:
        client.log_param(run.info.run_id, "p", "2")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in str(raised.value)


def test_errors_use_mlflow_codes(experiment, client):
    name = client.get_experiment(experiment).name
    with pytest.raises(MlflowException) as duplicate:
        client.create_experiment(name)
    assert duplicate.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_experiment_by_name("no-such-experiment-xyz") is None
    run = client.create_run(experiment)
    with pytest.raises(MlflowException) as bad_key:
        client.log_metric(run.info.run_id, "bad$key", 1.0)
    assert bad_key.value.error_code == "INVALID_PARAMETER_VALUE"


def test_deleted_runs_refuse_writes_and_restore(experiment, client):
    run = client.create_run(experiment)
    client.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as raised:
        client.log_metric(run.info.run_id, "m", 1.0)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    client.restore_run(run.info.run_id)
    client.log_metric(run.info.run_id, "m", 1.0)


def test_experiment_lifecycle_and_tags(client):
    experiment_id = client.create_experiment("compat-lifecycle-exp", tags={"owner": "me"})
    experiment = client.get_experiment(experiment_id)
    assert experiment.tags["owner"] == "me"
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment_id}"
    client.set_experiment_tag(experiment_id, "k", "v")
    client.rename_experiment(experiment_id, "compat-lifecycle-renamed")
    assert client.get_experiment_by_name("compat-lifecycle-renamed").tags["k"] == "v"
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    assert client.get_experiment("0").name == "Default"


def test_log_batch_and_async_logging(experiment, client):
    run = client.create_run(experiment)
    metrics = [mlflow.entities.Metric(f"m{i % 10}", float(i), 1000 + i, i // 10) for i in range(1000)]
    client.log_batch(run.info.run_id, metrics=metrics)
    history = client.get_metric_history(run.info.run_id, "m3")
    assert len(history) == 100
    with mlflow.start_run() as async_run:
        for step in range(20):
            mlflow.log_metric("async", float(step), step=step, synchronous=False)
    assert len(client.get_metric_history(async_run.info.run_id, "async")) == 20
    assert client.get_run(async_run.info.run_id).data.metrics["async"] == 19.0
