"""The whole loop, as a new user runs it: `loopline quickstart` with the project's Python (scikit-learn and the
stock mlflow client), then what it left behind checked through the stock client and Loopline's API: the alert
retrained the model on the new dataset version, the gate passed it against the champion, the canary promoted
it, the lineage walks from the data to the retraining run, and the registry refuses to move the protected
alias back to a version whose gate is stale."""

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import binary  # noqa: E402


def api(url, path):
    answer = requests.get(f"{url}{path}", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_every_stage_of_the_loop_ran(quickstart):
    _, output, _ = quickstart
    for stage in range(1, 10):
        assert f"[{stage}/9]" in output, output
    assert "alert 'input-drift' fired" in output
    assert "promoted: churn/2 serves all traffic" in output


def test_the_retrained_champion_came_from_the_new_data_through_a_nested_run(quickstart):
    url, _, _ = quickstart
    mlflow.set_tracking_uri(url)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("churn", "champion")
    assert champion.version == "2"
    run = client.get_run(champion.run_id)
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["loopline.pipeline"] == "quickstart"
    assert run.data.tags["loopline.pipeline_run"] == parent.data.tags["loopline.pipeline_run"]
    inputs = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    train = api(url, "/api/loopline/v1/datasets/churn-train/versions/2")["version"]
    assert inputs == {"churn-train": train["hash"]}
    assert run.data.metrics["train_accuracy"] > 0.6


def test_the_lineage_walks_from_the_data_to_the_retraining_the_alert_caused(quickstart):
    url, _, _ = quickstart
    lineage = api(url, "/api/loopline/v1/lineage?model=churn&version=2")
    assert [(d["name"], d["version"]) for d in lineage["datasets"]] == [("churn-train", 2)]
    assert lineage["pipeline_run"]["cause"]["kind"] == "alert"
    assert lineage["pipeline_run"]["cause"]["source"]["monitor"] == "churn-drift"
    # The evaluation that admitted it judged it against version 1 on the fresh holdout (later retraining
    # requests while the canary ran may have judged it again, as the champion itself).
    admitted = [g for g in lineage["gates"] if g["champion_version"] == 1]
    assert admitted and admitted[-1]["passed"] and admitted[-1]["dataset"] == "churn-holdout@2"
    assert lineage["deployments"][0]["serves_this_version"]
    assert any(a["kind"] == "retraining_requested" for a in lineage["alerts"])
    caused = [r for r in lineage["retraining_runs"] if r["run_id"] == lineage["pipeline_run"]["run_id"]]
    assert caused and caused[0]["registered"] == [{"name": "churn", "version": 2}]
    # The same walk from the command line.
    tree = subprocess.run([binary(), "lineage", "models:/churn@champion", "--server", url],
                          capture_output=True, text=True, check=True).stdout
    assert "dataset churn-train@2" in tree and "-> model version churn/2" in tree


def test_the_gate_refuses_the_stock_client_moving_champion_back_to_a_stale_pass(quickstart):
    url, _, _ = quickstart
    mlflow.set_tracking_uri(url)
    client = mlflow.MlflowClient()
    with pytest.raises(mlflow.exceptions.MlflowException) as refused:
        client.set_registered_model_alias("churn", "champion", "1")
    assert "quality gate" in str(refused.value)
    assert client.get_model_version_by_alias("churn", "champion").version == "2"


def test_the_pipeline_runs_record_their_causes_and_steps(quickstart):
    url, _, _ = quickstart
    runs = api(url, "/api/loopline/v1/pipelines/quickstart/runs")["runs"]
    first = [r for r in runs if r["cause"]["kind"] == "manual"]
    by_alert = [r for r in runs if r["cause"]["kind"] == "alert"]
    assert len(first) == 1 and first[0]["status"] == "succeeded"
    assert by_alert and by_alert[-1]["status"] == "succeeded"
    states = {s["name"]: s["state"] for s in by_alert[-1]["steps"]}
    assert states == {"validate": "succeeded", "train": "succeeded", "register": "succeeded",
                      "gate": "succeeded", "deploy": "succeeded"}
    log = api(url, f"/api/loopline/v1/pipeline-runs/{by_alert[-1]['run_id']}/logs/train")
    assert "trained on 4000 rows" in log["text"]
