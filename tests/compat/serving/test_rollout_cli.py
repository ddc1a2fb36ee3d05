"""A rollout watched from the command line as a new user would: the stock mlflow client logs and registers
versions, `loopline deploy` puts a canary on the champion alias, moving the alias rolls the new version out step
by step (`loopline rollout status --watch` prints the steps and returns when the rollout ends), and a version
that fails every request is rolled back by the guardrails on its own, with the alias pointed back, while every
caller keeps getting answers."""

import os
import subprocess
import threading

import mlflow
import numpy as np
import pandas as pd
import requests
import tritonclient.http as triton
import xgboost
from loopline_process import binary
from mlflow.models import infer_signature

NAME = "cli-churn"
DEPLOYMENT = "cli-churn-prod"


# A model from code (mlflow's models-from-code), so the Python worker can load it without this test module.
FAILING_MODEL = """
import mlflow


class AlwaysFails(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this version is broken on purpose")


mlflow.models.set_model(AlwaysFails())
"""


def loopline(server, *args, timeout=240):
    result = subprocess.run([binary(), *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "MLFLOW_TRACKING_URI": server.url})
    assert result.returncode == 0, f"loopline {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Traffic:
    """Callers sending requests to the deployment until stopped, keeping every status and answering version."""

    def __init__(self, url, frame):
        self.url, self.body, self.seen, self.stopped = url, {"dataframe_split": frame.to_dict(orient="split")}, [], False
        self.body["dataframe_split"].pop("index")
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        session = requests.Session()
        while not self.stopped:
            response = session.post(self.url, json=self.body, timeout=30)
            self.seen.append((response.status_code, response.headers.get("x-loopline-model-version")))

    def stop(self):
        self.stopped = True
        self.thread.join()
        return self.seen


def test_a_canary_promotion_and_an_automatic_rollback_watched_from_the_cli(server, tmp_path):
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=["a", "b", "c", "d"])
    y = X.a * 2 + X.b
    client = mlflow.MlflowClient()
    for seed in (1, 2):
        model = xgboost.XGBRegressor(n_estimators=10, random_state=seed, max_depth=2 + seed).fit(X, y)
        mlflow.xgboost.log_model(model, name="model", registered_model_name=NAME, signature=infer_signature(X, y))
    client.set_registered_model_alias(NAME, "champion", "1")

    created = loopline(server, "deploy", DEPLOYMENT, "-m", f"models:/{NAME}@champion", "--policy", "canary",
                       "--steps", "25,100", "--min-dwell-seconds", "0", "--min-requests", "30",
                       "--guardrail-min-requests", "10", "--max-error-rate", "0.05")
    assert f"deployment '{DEPLOYMENT}' created" in created
    assert "stable version 1" in created

    traffic = Traffic(f"{server.url}/deployments/{DEPLOYMENT}/invocations", X.head(1))
    try:
        client.set_registered_model_alias(NAME, "champion", "2")
        watched = loopline(server, "rollout", "status", DEPLOYMENT, "--watch")
        for expected in ("rollout_started", "step", "promoted", f"rollout finished: '{DEPLOYMENT}' serves version 2"):
            assert expected in watched, watched

        code = tmp_path / "always_fails.py"
        code.write_text(FAILING_MODEL)
        mlflow.pyfunc.log_model(name="model", python_model=str(code), registered_model_name=NAME,
                                signature=infer_signature(X, y))
        client.set_registered_model_alias(NAME, "champion", "3")
        watched = loopline(server, "rollout", "status", DEPLOYMENT, "--watch")
        for expected in ("guardrail_breach", "rolled_back", f"rollout finished: '{DEPLOYMENT}' serves version 2"):
            assert expected in watched, watched
    finally:
        seen = traffic.stop()

    assert client.get_model_version_by_alias(NAME, "champion").version == "2", "the alias was pointed back"
    statuses = [status for status, _ in seen]
    assert statuses and all(status == 200 for status in statuses), sorted(set(statuses))
    versions = {version for _, version in seen}
    assert {"1", "2"} <= versions and "3" not in versions, versions
    status = loopline(server, "rollout", "status", DEPLOYMENT)
    assert "stable version 2" in status and "rollbacks 1" in status, status
    listed = loopline(server, "rollout", "list")
    assert DEPLOYMENT in listed and "no rollout under way" in listed
    history = requests.get(f"{server.url}/api/loopline/v1/registered-models/alias-history",
                           params={"name": NAME, "alias": "champion"}).json()["changes"]
    assert [change["version"] for change in history] == ["1", "2", "3", "2"]


def test_tritonclient_reaches_a_deployment_by_its_name(server):
    """Runs after the CLI test: the deployment serves version 2, and tritonclient needs nothing special."""
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_model_ready(DEPLOYMENT)
    assert client.get_model_metadata(DEPLOYMENT)["versions"] == ["2"]
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(3, 4)), columns=["a", "b", "c", "d"])
    tensor = triton.InferInput("input", [3, 4], "FP64")
    tensor.set_data_from_numpy(X.to_numpy())
    result = client.infer(DEPLOYMENT, [tensor])
    expected = mlflow.pyfunc.load_model(f"models:/{NAME}/2").predict(X)
    np.testing.assert_allclose(result.as_numpy("prediction").ravel(), np.asarray(expected).ravel(), rtol=1e-6, atol=1e-6)
