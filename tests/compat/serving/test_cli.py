"""`loopline serve -m` and `loopline predict -m` used as the mlflow CLI is: models:/ and runs:/ URIs resolved
through MLFLOW_TRACKING_URI (here a Loopline server), every MLflow scoring input form, the Open Inference
Protocol through tritonclient, and batch predictions written to Parquet equal to mlflow.pyfunc's."""

import os
import subprocess
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from loopline_process import LooplineProcess, binary, free_port
from mlflow.utils.proto_json_utils import dump_input_data


@pytest.fixture(scope="module")
def served(server, models):
    """`loopline serve -m models:/xgb-regressor@champion` with a 1 MiB body limit, started with the rest of
    `mlflow models serve`'s flags as a script written for mlflow passes them."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="loopline-serve-")) / "serve.log"
    process = LooplineProcess(["serve", "-m", "models:/xgb-regressor@champion", "-h", "127.0.0.1", "-p", str(port),
                               "-t", "30", "-w", "2", "--env-manager", "local", "--max-request-mb", "1"], port, log,
                              health_path="/ping",
                              env={"MLFLOW_TRACKING_URI": server.url})
    yield process
    assert process.stop() == 0, process.log_text()


def test_serve_answers_every_scoring_form(served, models):
    model = models["xgb-regressor"]
    frame = model.inputs
    assert requests.get(f"{served.url}/ping").status_code == 200
    assert requests.get(f"{served.url}/health").status_code == 200
    assert requests.get(f"{served.url}/version").text.strip()
    bodies = [
        {"dataframe_split": frame.to_dict(orient="split")},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": frame.to_dict(orient="records")},
        {"inputs": frame.to_dict(orient="list")},
        {"inputs": frame.to_numpy().tolist()},
    ]
    for body in bodies:
        body.get("dataframe_split", {}).pop("index", None)
        response = requests.post(f"{served.url}/invocations", json=body)
        assert response.status_code == 200, (list(body), response.text)
        np.testing.assert_allclose(response.json()["predictions"], model.expected, rtol=1e-6, atol=1e-6)
    csv = requests.post(f"{served.url}/invocations", data=frame.to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200, csv.text
    np.testing.assert_allclose(csv.json()["predictions"], model.expected, rtol=1e-6, atol=1e-6)


def test_serve_reads_missing_and_infinite_values_as_python_writes_them(served, models):
    """mlflow's own request serialiser (dump_input_data, what its scoring clients send) goes through json.dumps,
    which writes bare NaN and Infinity; mlflow models serve reads them, and so must Loopline, with the same
    predictions as mlflow.pyfunc on the same frame."""
    model = models["xgb-regressor"]
    frame = model.inputs.copy()
    frame.iloc[0, 0] = np.nan
    frame.iloc[1, 1] = np.inf
    frame.iloc[2, 2] = -np.inf
    body = dump_input_data(frame)
    assert "NaN" in body and "-Infinity" in body
    response = requests.post(f"{served.url}/invocations", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    expected = mlflow.pyfunc.load_model(model.uri).predict(frame)
    np.testing.assert_allclose(response.json()["predictions"], np.asarray(expected).ravel(), rtol=1e-6, atol=1e-6)


def test_serve_speaks_the_open_inference_protocol(served, models):
    client = triton.InferenceServerClient(served.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("xgb-regressor")
    matrix = models["xgb-regressor"].inputs.to_numpy(dtype=np.float32)
    tensor = triton.InferInput("input", list(matrix.shape), "FP32")
    tensor.set_data_from_numpy(matrix)
    result = client.infer("xgb-regressor", [tensor])
    np.testing.assert_allclose(result.as_numpy("prediction"), models["xgb-regressor"].expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(triton.InferenceServerException, match="no model named"):
        client.infer("someone-else", [tensor])


def test_serve_refuses_bad_input_in_mlflow_shape(served):
    url = f"{served.url}/invocations"
    missing = requests.post(url, json={"dataframe_records": [{"f0": 1.0}]})
    assert missing.status_code == 400 and missing.json()["error_code"] == "BAD_REQUEST"
    assert "f1" in missing.json()["message"]
    text = requests.post(url, json={"dataframe_records": [{f"f{i}": "x" for i in range(6)}]})
    assert text.status_code == 400 and "column 'f0'" in text.json()["message"]
    extra = requests.post(url, json={"dataframe_records": [{**{f"f{i}": 1.0 for i in range(6)}, "surprise": 1.0}]})
    assert extra.status_code == 400 and "surprise" in extra.json()["message"]
    empty = requests.post(url, json={"dataframe_split": {"columns": [f"f{i}" for i in range(6)], "data": []}})
    assert empty.status_code == 400
    huge = requests.post(url, data=b" " * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    unsupported = requests.post(url, data="x", headers={"Content-Type": "text/plain"})
    assert unsupported.status_code == 415


def _predict(server, uri, frame, directory):
    source, target = Path(directory) / "in.parquet", Path(directory) / "out.parquet"
    frame.to_parquet(source)
    result = subprocess.run([binary(), "predict", "-m", uri, "-i", str(source), "-o", str(target)],
                            env={**os.environ, "MLFLOW_TRACKING_URI": server.url}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return pd.read_parquet(target)


@pytest.mark.parametrize("name", ["xgb-multiclass", "lgb-booster", "onnx-forest", "sk-pipeline"])
def test_predict_writes_what_pyfunc_predicts(server, models, name, tmp_path):
    model = models[name]
    out = _predict(server, f"models:/{name}@champion", model.inputs, tmp_path)
    want = next(iter(model.expected.values())) if model.kind == "onnx" else model.expected
    got = out.to_numpy().reshape(want.shape)
    np.testing.assert_allclose(got.astype(float), want.astype(float), rtol=1e-6, atol=1e-6)


def test_predict_and_serve_resolve_runs_and_logged_models(server, tmp_path):
    import mlflow
    import xgboost as xgb

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])
    with mlflow.start_run() as run:
        info = mlflow.xgboost.log_model(xgb.XGBRegressor(n_estimators=5).fit(frame, frame.a * 2), name="model")
    want = np.asarray(mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(frame))
    for uri in [f"runs:/{run.info.run_id}/model", f"models:/{info.model_id}"]:
        out = _predict(server, uri, frame, tmp_path)
        np.testing.assert_allclose(out["prediction"].to_numpy(), want, rtol=1e-6, atol=1e-6, err_msg=uri)
    missing = subprocess.run([binary(), "predict", "-m", "models:/no-such-model/1", "-i", str(tmp_path / "in.parquet"),
                              "-o", str(tmp_path / "x.parquet")], env={**os.environ, "MLFLOW_TRACKING_URI": server.url},
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no-such-model" in missing.stderr


def test_logged_predictions_export_with_feedback(server, models, tmp_path):
    model = models["lgb-regressor-booster"]
    url = f"{server.url}/models/lgb-regressor-booster/versions/champion/invocations"
    first = requests.post(url, json=split_body(model.inputs.head(3)), headers={"X-Request-Id": "export-1"})
    second = requests.post(url, json=split_body(model.inputs.tail(2)))
    assert first.status_code == second.status_code == 200
    generated = second.headers["x-request-id"]
    feedback = requests.post(f"{server.url}/api/loopline/v1/feedback", json={"feedback": [
        {"request_id": "export-1", "label": 0.5}, {"request_id": generated, "label": 1.5}]})
    assert feedback.json() == {"recorded": 2}
    assert requests.post(f"{server.url}/api/loopline/v1/predictions/flush").status_code == 200
    target = tmp_path / "log.parquet"
    result = subprocess.run([binary(), "predictions", "export", "--model", "lgb-regressor-booster", "--data-dir",
                             server.data_dir, "-o", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    log = pd.read_parquet(target)
    mine = log[log.request_id.isin(["export-1", generated])].sort_values(["timestamp", "request_id", "row"])
    assert len(mine) == 5
    assert list(mine.label) == ["0.5"] * 3 + ["1.5"] * 2
    np.testing.assert_allclose(mine["input.f0"].to_numpy(), pd.concat([model.inputs.head(3), model.inputs.tail(2)]).f0.to_numpy())
    np.testing.assert_allclose(mine["output.prediction"].to_numpy(),
                               np.concatenate([model.expected[:3], model.expected[-2:]]), rtol=1e-6)
    none = subprocess.run([binary(), "predictions", "export", "--model", "nobody", "--data-dir", server.data_dir,
                           "-o", str(tmp_path / "none.parquet")], capture_output=True, text=True)
    assert none.returncode == 2 and "no logged predictions for model 'nobody'" in none.stderr


def split_body(frame):
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
