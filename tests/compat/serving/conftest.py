"""A fresh `loopline server` for the serving suite, the stock mlflow client pointed at it, and a set of
registered models logged by mlflow itself: native (XGBoost, LightGBM Booster), ONNX (skl2onnx and onnxmltools
exports) and Python-worker ones (scikit-learn pickles, LightGBM's scikit-learn API, a custom pyfunc).
"""

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, free_port  # noqa: E402

FEATURES = [f"f{i}" for i in range(6)]
# Types our own test models hold, which skops asks us to vouch for.
TRUSTED = ["sklearn.tree._tree.Tree", "sklearn._loss.link.LogitLink", "sklearn._loss.loss.HalfBinomialLoss",
           "lightgbm.basic.Booster", "collections.OrderedDict", "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"]


@pytest.fixture(scope="session")
def server():
    data_dir = tempfile.mkdtemp(prefix="loopline-serving-")
    port = free_port()
    # The suite serves scikit-learn pickles and custom pyfuncs: the operator's opt-in to the Python worker.
    process = LooplineProcess(["server", "--port", str(port), "--data-dir", data_dir, "--allow-python-models"], port,
                              Path(data_dir) / "server.log", timeout=60)
    process.data_dir = data_dir
    os.environ["MLFLOW_TRACKING_URI"] = process.url
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    import mlflow

    mlflow.set_tracking_uri(process.url)
    mlflow.set_experiment("serving-compat")
    yield process
    code = process.stop()
    assert code == 0, f"server did not shut down cleanly:\n{process.log_text()}"


@dataclass
class Logged:
    name: str
    kind: str  # native, onnx or python
    uri: str
    inputs: pd.DataFrame
    expected: object  # what mlflow.pyfunc predicts; for ONNX, {output: array} from onnxruntime itself
    run_id: str = ""
    model_id: str = ""


def _data():
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(400, len(FEATURES))), columns=FEATURES)
    X_test = pd.DataFrame(rng.normal(size=(40, len(FEATURES))), columns=FEATURES)
    y_binary = (X.f0 + X.f1 * X.f2 > 0).astype(int)
    y_multi = np.digitize(X.f0, [-0.5, 0.5])
    y_value = X.f0 * 3 + X.f3 ** 2
    return X, X_test, y_binary, y_multi, y_value


def _dense(value):
    """An onnxruntime output as an array; a ZipMap (list of {class: probability}) as a class matrix."""
    if isinstance(value, list):
        return np.array([[row[k] for k in sorted(row)] for row in value], dtype=np.float32)
    return np.asarray(value)


@pytest.fixture(scope="session")
def models(server):
    """Every model of the test set, logged and registered with the alias `champion`."""
    import lightgbm as lgb
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature
    from onnxmltools.convert import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as ToolsFloat
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, X_test, y_binary, y_multi, y_value = _data()
    X32, X32_test = X.astype(np.float32), X_test.astype(np.float32)
    rng = np.random.default_rng(8)
    table = X.assign(city=rng.choice(["paris", "oslo", "lima"], len(X)))
    table_test = X_test.assign(city=rng.choice(["paris", "oslo", "lima"], len(X_test)))
    y_table = ((table.f0 > 0) ^ (table.city == "oslo")).astype(int)
    pipeline = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), FEATURES), ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])),
        ("clf", LogisticRegression(max_iter=500)),
    ]).fit(table, y_table)
    logistic = LogisticRegression(max_iter=500).fit(X, y_multi)
    forest = RandomForestRegressor(n_estimators=30, max_depth=6, random_state=0).fit(X, y_value)
    boosting = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(X, y_binary)
    mlp = MLPRegressor(hidden_layer_sizes=(16,), max_iter=500, random_state=0).fit(X, y_value)
    float_input = [("input", FloatTensorType([None, len(FEATURES)]))]
    tools_input = [("input", ToolsFloat([None, len(FEATURES)]))]
    table_inputs = [(c, FloatTensorType([None, 1])) for c in FEATURES] + [("city", StringTensorType([None, 1]))]

    def onnx_of(model, inputs=float_input, **options):
        return to_onnx(model, initial_types=inputs, target_opset=17, **options)

    native = {
        "xgb-classifier": (mlflow.xgboost, xgb.XGBClassifier(n_estimators=100, max_depth=4).fit(X, y_binary), X_test),
        "xgb-multiclass": (mlflow.xgboost, xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y_multi), X_test),
        "xgb-regressor": (mlflow.xgboost, xgb.XGBRegressor(n_estimators=50, max_depth=4).fit(X, y_value), X_test),
        "lgb-booster": (mlflow.lightgbm, lgb.train(dict(objective="multiclass", num_class=3, verbose=-1), lgb.Dataset(X, y_multi), 20), X_test),
        "lgb-regressor-booster": (mlflow.lightgbm, lgb.train(dict(objective="regression", verbose=-1), lgb.Dataset(X, y_value), 30), X_test),
    }
    onnx = {
        "onnx-logistic": (onnx_of(logistic, options={"zipmap": False}), X32_test),
        "onnx-forest": (onnx_of(forest), X32_test),
        "onnx-boosting": (onnx_of(boosting), X32_test),
        "onnx-mlp": (onnx_of(mlp), X32_test),
        "onnx-pipeline": (onnx_of(pipeline, table_inputs), table_test.astype({c: np.float32 for c in FEATURES})),
        "onnx-xgboost": (convert_xgboost(xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X32, y_multi), initial_types=tools_input, target_opset=15), X32_test),
        "onnx-lightgbm": (convert_lightgbm(lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(X32, y_value), initial_types=tools_input,
                                           target_opset=15, zipmap=False), X32_test),
    }
    python = {
        "sk-logistic": (logistic, X_test),
        "sk-forest": (forest, X_test),
        "sk-boosting": (boosting, X_test),
        "sk-pipeline": (pipeline, table_test),
        "sk-mlp": (mlp, X_test),
        "lgbm-classifier": (lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y_binary), X_test),
    }
    logged = {}
    client = mlflow.MlflowClient()

    def register(name, kind, info, inputs):
        version = info.registered_model_version
        client.set_registered_model_alias(name, "champion", str(version))
        expected = np.asarray(mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(inputs))
        logged[name] = Logged(name, kind, f"models:/{name}/{version}", inputs, expected, info.run_id or "", info.model_id or "")

    for name, (flavor, model, inputs) in native.items():
        signature = infer_signature(inputs, model.predict(inputs) if hasattr(model, "predict") else None)
        info = flavor.log_model(model, name=name, registered_model_name=name, signature=signature)
        register(name, "native", info, inputs)
    import onnxruntime

    for name, (proto, inputs) in onnx.items():
        info = mlflow.onnx.log_model(proto, name=name, registered_model_name=name)
        client.set_registered_model_alias(name, "champion", str(info.registered_model_version))
        session = onnxruntime.InferenceSession(proto.SerializeToString())
        if len(session.get_inputs()) == 1:
            feed = {"input": inputs.to_numpy(dtype=np.float32)}
        else:
            feed = {c: inputs[[c]].to_numpy() for c in inputs.columns}
        outputs = {o.name: _dense(v) for o, v in zip(session.get_outputs(), session.run(None, feed))}
        logged[name] = Logged(name, "onnx", f"models:/{name}/{info.registered_model_version}", inputs, outputs)
    for name, (model, inputs) in python.items():
        flavor = mlflow.lightgbm if name.startswith("lgbm") else mlflow.sklearn
        info = flavor.log_model(model, name=name, registered_model_name=name, signature=infer_signature(inputs, model.predict(inputs)),
                                skops_trusted_types=TRUSTED)
        register(name, "python", info, inputs)
    return logged
