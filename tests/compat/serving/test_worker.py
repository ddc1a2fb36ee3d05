"""A custom pyfunc model in the Python worker: its own errors are the caller's 400, a crash answers 503 and
the next request is served by a restarted worker, and the registry server keeps serving other models."""

import os
import sys

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import requests


class Fragile(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        x = model_input["x"].to_numpy()
        if (x < 0).any():
            raise ValueError("x must not be negative")
        if (x == 13).any():
            os._exit(9)
        return x + 1


def test_worker_crash_is_503_then_recovers(server, models):
    # The worker imports nothing from this suite: the model class travels inside the pickle.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    info = mlflow.pyfunc.log_model(name="fragile", python_model=Fragile(), registered_model_name="fragile",
                                   input_example=pd.DataFrame({"x": [1.0]}))
    url = f"{server.url}/models/fragile/versions/{info.registered_model_version}/invocations"
    ok = requests.post(url, json={"dataframe_records": [{"x": 1.0}, {"x": 2.5}]})
    assert ok.status_code == 200, ok.text
    np.testing.assert_allclose(ok.json()["predictions"], [2.0, 3.5])
    refused = requests.post(url, json={"dataframe_records": [{"x": -1.0}]})
    assert refused.status_code == 400 and "x must not be negative" in refused.json()["message"]
    crashed = requests.post(url, json={"dataframe_records": [{"x": 13.0}]})
    assert crashed.status_code == 503, crashed.text
    assert crashed.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "restarted" in crashed.json()["message"]
    other = requests.post(f"{server.url}/models/xgb-regressor/versions/1/invocations",
                          json={"dataframe_split": {"columns": list(models["xgb-regressor"].inputs.columns),
                                                    "data": models["xgb-regressor"].inputs.values.tolist()}})
    assert other.status_code == 200
    again = requests.post(url, json={"dataframe_records": [{"x": 4.0}]})
    assert again.status_code == 200, again.text
    assert again.json()["predictions"] == [5.0]
