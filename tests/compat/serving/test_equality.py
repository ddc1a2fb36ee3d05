"""Every model of the test set answers through Loopline what its reference library answers: mlflow.pyfunc for
native and Python-worker models, onnxruntime for ONNX exports, to 1e-6. Requests go through `requests`
(MLflow scoring) and `tritonclient.http` (Open Inference Protocol, binary and JSON tensors)."""

import numpy as np
import pytest
import requests
import tritonclient.http as triton

NAMES = [
    "xgb-classifier", "xgb-multiclass", "xgb-regressor", "lgb-booster", "lgb-regressor-booster",
    "onnx-logistic", "onnx-forest", "onnx-boosting", "onnx-mlp", "onnx-pipeline", "onnx-xgboost", "onnx-lightgbm",
    "sk-logistic", "sk-forest", "sk-boosting", "sk-pipeline", "sk-mlp", "lgbm-classifier",
]


def assert_close(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if want.dtype.kind in "iub":
        assert np.array_equal(got, want), what
    else:
        np.testing.assert_allclose(got.astype(float), want.astype(float), rtol=1e-6, atol=1e-6, err_msg=what)


def check(model, outputs, what):
    """`outputs` maps output names to arrays."""
    if model.kind == "onnx":
        assert set(outputs) == set(model.expected), what
        for name, want in model.expected.items():
            assert_close(np.asarray(outputs[name]).reshape(want.shape), want, f"{what} {name}")
    else:
        (only,) = outputs.values()
        assert_close(np.asarray(only).reshape(model.expected.shape), model.expected, what)


def split_body(frame):
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.astype(object).values.tolist()}}


@pytest.mark.parametrize("name", NAMES)
def test_mlflow_scoring_matches_the_reference(server, models, name):
    model = models[name]
    response = requests.post(f"{server.url}/models/{name}/versions/champion/invocations", json=split_body(model.inputs))
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    if model.kind == "onnx":
        outputs = {key: [row[key] for row in predictions] for key in predictions[0]} if isinstance(predictions[0], dict) \
            else {next(iter(model.expected)): predictions}
    else:
        outputs = {"prediction": predictions}
    check(model, outputs, f"{name} via /invocations")


def triton_inputs(model, binary):
    frame = model.inputs
    one_matrix = model.kind == "native" or (model.kind == "onnx" and "city" not in frame.columns)
    if one_matrix:
        matrix = frame.to_numpy(dtype=np.float32)
        tensor = triton.InferInput("input", list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix, binary_data=binary)
        return [tensor]
    tensors = []
    for column in frame.columns:
        values = frame[column].to_numpy()
        if values.dtype == object:
            values, datatype = values.astype(np.object_), "BYTES"
        elif model.kind == "onnx":
            values, datatype = values.astype(np.float32), "FP32"
        else:
            values, datatype = values.astype(np.float64), "FP64"
        tensor = triton.InferInput(column, [len(values)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        tensors.append(tensor)
    return tensors


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", NAMES)
def test_tritonclient_matches_the_reference(server, models, name, binary):
    model = models[name]
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    metadata = client.get_model_metadata(name, model_version="champion")
    output_names = [o["name"] for o in metadata["outputs"]] or ["prediction"]
    requested = [triton.InferRequestedOutput(o, binary_data=binary) for o in output_names]
    result = client.infer(name, triton_inputs(model, binary), model_version="1", outputs=requested if model.kind == "onnx" else None)
    response = result.get_response()
    assert response["model_name"] == name and response["model_version"] == "1"
    outputs = {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}
    check(model, outputs, f"{name} via tritonclient ({'binary' if binary else 'JSON'})")
