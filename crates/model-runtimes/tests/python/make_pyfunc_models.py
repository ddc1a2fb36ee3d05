"""Saves the models the Python-worker tests serve, and what mlflow.pyfunc predicts for them, into the directory
given on the command line: a scikit-learn pipeline (scaler + logistic regression, saved with mlflow.sklearn),
a custom PythonModel that doubles `x` (refusing negative values, and exiting the process on 13 so the tests
can watch a worker crash, and never answering on 7 so they can watch a call stopped at its time limit), and a model that returns two named outputs.

usage: python make_pyfunc_models.py OUT_DIR
"""

import json
import os
import pathlib
import threading
import sys

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        x = model_input["x"].to_numpy()
        if (x < 0).any():
            raise ValueError("x must not be negative")
        if (x == 13).any():
            os._exit(3)
        if (x == 7).any():
            threading.Event().wait()  # never answers: the caller's time limit must stop it
        return pd.DataFrame({"doubled": x * 2.0})


class TwoOutputs(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=float)
        return {"total": x.sum(axis=1), "scaled": x * 10.0}


class Inspector(mlflow.pyfunc.PythonModel):
    """Reports what the worker process may see and do (the confinement the server applies)."""

    def predict(self, context, model_input, params=None):
        import resource

        leaked = sum(1 for name in os.environ if name.startswith("CARGO"))
        # The worker's arguments are the script, the model directory and the socket; next to the model
        # directory the test left a secret, and nothing may be written there.
        outside = os.path.dirname(os.path.abspath(sys.argv[1]).rstrip("/"))
        try:
            with open(os.path.join(outside, "escape.txt"), "w") as escape:
                escape.write("out")
            wrote_outside = 1.0
        except OSError:
            wrote_outside = 0.0
        try:
            with open(os.path.join(outside, "secret.txt")) as secret:
                read_outside = float(secret.read() == "secret")
        except OSError:
            read_outside = 0.0
        return pd.DataFrame({
            "wrote_outside": [wrote_outside],
            "read_outside": [read_outside],
            "leaked": [float(leaked)],
            "open_files": [float(resource.getrlimit(resource.RLIMIT_NOFILE)[1])],
            "private_home": [float(os.environ.get("HOME") == os.environ.get("TMPDIR") == os.getcwd())],
            "own_group": [float(os.getpgid(0) == os.getpid())],
        })


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    y = (X.a - X.c > 0).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    mlflow.sklearn.save_model(pipeline, str(out / "sklearn"), serialization_format="cloudpickle")
    mlflow.pyfunc.save_model(str(out / "doubler"), python_model=Doubler())
    mlflow.pyfunc.save_model(str(out / "two_outputs"), python_model=TwoOutputs())
    mlflow.pyfunc.save_model(str(out / "inspector"), python_model=Inspector())
    X_test = pd.DataFrame(rng.normal(size=(25, 3)), columns=["a", "b", "c"])
    predicted = mlflow.pyfunc.load_model(str(out / "sklearn")).predict(X_test)
    expected = {"inputs": X_test.to_dict(orient="list"), "sklearn": np.asarray(predicted).tolist()}
    (out / "expected.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main()
