"""Quality gates seen from the stock mlflow client: moving a protected alias with
`set_registered_model_alias` is refused (an MlflowException naming the gate) until the version passes the
gate Loopline runs on a dataset version; a worse model fails it and the refusal lists why."""

import os
import subprocess
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from xgboost import XGBClassifier

LOOPLINE = os.environ.get("LOOPLINE_BIN", "target/debug/loopline")


def _add_dataset(server_url: str, name: str, frame: pd.DataFrame) -> int:
    """Versions a table as a user would: `loopline data add --push` in a project of its own."""
    project = Path(tempfile.mkdtemp(prefix="gate-data-"))
    (project / ".git").mkdir()
    frame.to_csv(project / f"{name}.csv", index=False)
    done = subprocess.run(
        [LOOPLINE, "data", "add", f"{name}.csv", "--name", name, "--push", "--server", server_url],
        cwd=project, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pointer = (project / f"{name}.csv.loopline").read_text()
    return int(next(line for line in pointer.splitlines() if line.startswith("version:")).split(":")[1])


def _log(model, features, name):
    signature = infer_signature(features, model.predict(features))
    with mlflow.start_run():
        info = mlflow.xgboost.log_model(model, name="model", signature=signature, registered_model_name=name)
    return str(info.registered_model_version)


def test_protected_alias_moves_only_after_a_passing_gate(experiment, client, server_url):
    generator = np.random.default_rng(7)
    features = pd.DataFrame(generator.random((600, 4)), columns=["a", "b", "c", "d"])
    labels = ((features.a + features.b) > 1).astype(int)
    train, holdout = slice(0, 400), slice(400, 600)
    good = XGBClassifier(n_estimators=40, max_depth=3).fit(features[train], labels[train])
    name = f"gated-{experiment}"
    first = _log(good, features[train], name)
    client.set_registered_model_alias(name, "champion", first)

    evaluation = features[holdout].assign(label=labels[holdout].values)
    version = _add_dataset(server_url, f"holdout-{experiment}", evaluation)
    policy = {
        "dataset": f"holdout-{experiment}@{version}",
        "target": "label",
        "checks": [{"metric": "accuracy", "min": 0.8}],
        "no_regression": [{"metric": "accuracy", "margin": 0.02}],
        "mcnemar_alpha": 0.05,
        "resamples": 300,
    }
    answer = requests.put(f"{server_url}/api/loopline/v1/registered-models/{name}/gate-policy", json=policy, timeout=30)
    assert answer.status_code == 200, answer.text

    # A model trained on shuffled labels: the gate must stop it.
    shuffled = labels[train].sample(frac=1, random_state=0).values
    worse = XGBClassifier(n_estimators=5, max_depth=1).fit(features[train], shuffled)
    second = _log(worse, features[train], name)
    with pytest.raises(MlflowException, match="has not passed it"):
        client.set_registered_model_alias(name, "champion", second)
    gate = requests.post(f"{server_url}/api/loopline/v1/registered-models/{name}/versions/{second}/gate", timeout=120)
    assert gate.status_code == 200, gate.text
    assert gate.json()["evaluation"]["passed"] is False
    with pytest.raises(MlflowException, match="below the minimum 0.8"):
        client.set_registered_model_alias(name, "champion", second)
    assert client.get_model_version_by_alias(name, "champion").version == first

    # The good model again, as a new version: it passes and takes the alias.
    third = _log(good, features[train], name)
    gate = requests.post(f"{server_url}/api/loopline/v1/registered-models/{name}/versions/{third}/gate", timeout=120)
    evidence = gate.json()["evaluation"]["evidence"]
    assert gate.json()["evaluation"]["passed"] is True, evidence
    assert evidence["champion_version"] == int(first) and evidence["rows"] == 200
    client.set_registered_model_alias(name, "champion", third)
    assert client.get_model_version_by_alias(name, "champion").version == third
