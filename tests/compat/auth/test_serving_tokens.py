"""Serving with auth on, through the real clients: an application token with only the `predict` scope calls a
registered model with `tritonclient.http` and `requests`, and can do nothing else."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import requests

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, free_port  # noqa: E402


def test_a_predict_token_calls_a_model_and_nothing_else(monkeypatch):
    import mlflow
    import tritonclient.http as triton
    import xgboost as xgb
    from mlflow.server import get_app_client
    from tritonclient.utils import InferenceServerException

    data = tempfile.mkdtemp(prefix="loopline-serving-auth-")
    port = free_port()
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", data, "--auth", "basic,token"], port,
                             Path(data) / "server.log", timeout=60, env={"LOOPLINE_ADMIN_PASSWORD": "serving admin pass"})
    try:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "serving admin pass")
        admin = get_app_client("basic-auth", tracking_uri=server.url)
        admin.create_user("trainer", "trainer password")
        admin.assign_role("trainer", next(role.id for role in admin.list_roles("default") if role.name == "editor"))
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "trainer")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "trainer password")
        mlflow.set_tracking_uri(server.url)
        mlflow.set_experiment("served")
        rng = np.random.default_rng(3)
        X = rng.normal(size=(200, 4)).astype(np.float32)
        model = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X, X[:, 0] * 2)
        with mlflow.start_run():
            mlflow.xgboost.log_model(model, name="model", registered_model_name="churn")
        issued = requests.post(f"{server.url}/api/loopline/v1/access/tokens", auth=("trainer", "trainer password"),
                               json={"name": "app", "scopes": ["predict"]}, timeout=30)
        assert issued.status_code == 200, issued.text
        app = {"Authorization": f"Bearer {issued.json()['token']}"}

        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        assert client.is_model_ready("churn", "1", headers=app)
        tensor = triton.InferInput("input", list(X[:3].shape), "FP32")
        # JSON tensors: tritonclient puts binary-size headers as numbers beside caller headers, which requests
        # refuses (a client-side limit, not the server's).
        tensor.set_data_from_numpy(X[:3], binary_data=False)
        answer = client.infer("churn", [tensor], model_version="1", headers=app)
        assert np.allclose(answer.as_numpy(answer.get_response()["outputs"][0]["name"]).reshape(-1),
                           model.predict(X[:3]), atol=1e-5)
        with pytest.raises(InferenceServerException):
            client.infer("churn", [tensor], model_version="1")
        scored = requests.post(f"{server.url}/models/churn/versions/1/invocations", headers=app,
                               json={"inputs": X[:2].tolist()}, timeout=30)
        assert scored.status_code == 200, scored.text
        # Nothing else: not even reading the model's registry entry.
        for method, path in [("GET", "/api/2.0/mlflow/registered-models/get?name=churn"),
                             ("POST", "/api/2.0/mlflow/experiments/search")]:
            refused = requests.request(method, f"{server.url}{path}", headers=app, json={}, timeout=30)
            assert refused.status_code == 403, (path, refused.text)
    finally:
        assert server.stop() == 0
