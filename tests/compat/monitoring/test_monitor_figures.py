"""Monitor figures against the reference implementations, on windows of known logged predictions and labels:
realised performance equals scikit-learn to 1e-12; CBPE's estimated accuracy and ROC AUC, with their
confidence bands, equal NannyML's on the same reference and chunks; the shipped Prometheus rules pass
`promtool check rules` and the Grafana dashboard only asks for gauges the server exports.
"""

import json
import re
import shutil
import time
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn import metrics

from conftest import register, write_feedback, write_predictions

REPO_ROOT = Path(__file__).resolve().parents[3]
WINDOW = 1000
WINDOWS = 6


def scores(rng, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """An overconfident binary classifier: the label's true probability is sigmoid(z), the model says sigmoid(2z)."""
    x0 = rng.normal(shift, 1.0, rows)
    x1 = rng.normal(0.0, 1.0, rows)
    z = 1.2 * x0 - 0.8 * x1
    truth = 1 / (1 + np.exp(-z))
    probability = 1 / (1 + np.exp(-2 * z))
    label = (rng.uniform(size=rows) < truth).astype(np.int64)
    return pd.DataFrame({"x0": x0, "x1": x1, "probability": probability,
                         "prediction": (probability >= 0.5).astype(np.float64), "label": label})


@pytest.fixture(scope="module")
def monitored(server, tmp_path_factory):
    rng = np.random.default_rng(7)
    register(server, "scored")
    reference = scores(rng, 5000)
    train = tmp_path_factory.mktemp("reference") / "train.parquet"
    reference.to_parquet(train)
    fitted = subprocess.run([server.binary, "monitor", "--server", server.url, "reference", "--model", "scored",
                             "--version", "1", "--data", str(train), "--probability-column", "probability"],
                            capture_output=True, text=True, timeout=120)
    assert fitted.returncode == 0, fitted.stderr
    assert "performance estimation fitted on 5000 labelled rows" in fitted.stdout, fitted.stdout

    windows = [scores(rng, WINDOW, shift=0.25 * (index // 2)) for index in range(WINDOWS)]
    analysis = pd.concat(windows, ignore_index=True)
    logged = pd.DataFrame({"input.x0": analysis.x0, "input.x1": analysis.x1,
                           "output.prediction": analysis.prediction, "output.probability": analysis.probability})
    start = int(time.time() * 1000) - 2 * 3_600_000
    ids = write_predictions(server.data_dir, "scored", logged, start)
    # Labels arrive now, long after the predictions, as feedback does.
    write_feedback(server.data_dir, ids, analysis.label, int(time.time() * 1000))
    spec = {"name": "scored-live", "model": "scored", "window": {"predictions": WINDOW}, "start_ms": 0,
            "task": "classification", "output": "prediction", "probability_output": "probability"}
    created = requests.post(f"{server.url}/api/loopline/v1/monitors", json=spec)
    assert created.status_code == 200, created.text
    ran = requests.post(f"{server.url}/api/loopline/v1/monitors/scored-live/run", json={})
    assert ran.status_code == 200, ran.text
    listed = requests.get(f"{server.url}/api/loopline/v1/monitors/scored-live/windows").json()["windows"]
    assert len(listed) == WINDOWS, listed
    return reference, windows, listed


def test_realised_performance_equals_scikit_learn(monitored):
    _, windows, listed = monitored
    for frame, window in zip(windows, listed):
        figures = window["figures"]
        y, predicted, probability = frame.label, frame.prediction.astype(np.int64), frame.probability
        expected = {
            "accuracy": metrics.accuracy_score(y, predicted),
            "precision": metrics.precision_score(y, predicted),
            "recall": metrics.recall_score(y, predicted),
            "f1": metrics.f1_score(y, predicted),
            "roc_auc": metrics.roc_auc_score(y, probability),
            "log_loss": metrics.log_loss(y, probability),
        }
        assert window["labels"] == WINDOW
        for name, value in expected.items():
            assert figures[f"performance.{name}"] == pytest.approx(value, abs=1e-12, rel=1e-12), name


def test_regression_figures_equal_scikit_learn(server):
    rng = np.random.default_rng(11)
    register(server, "priced")
    truth = rng.gamma(2.0, 10.0, WINDOW)
    predicted = truth + rng.normal(0, 3.0, WINDOW)
    logged = pd.DataFrame({"input.x0": rng.normal(size=WINDOW), "output.prediction": predicted})
    start = int(time.time() * 1000) - 3_600_000
    ids = write_predictions(server.data_dir, "priced", logged, start)
    received = int(time.time() * 1000)
    feedback_dir = server.data_dir / "artifacts" / "feedback"
    # Regression labels are numbers: written as JSON text with full precision.
    import pyarrow as pa
    import pyarrow.parquet as pq
    from conftest import hour_of, _name
    directory = feedback_dir / f"hour={hour_of(received)}"
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"request_id": pa.array(ids),
                             "timestamp": pa.array(np.full(WINDOW, received, dtype=np.int64), type=pa.timestamp("ms", tz="UTC")),
                             "label": pa.array([repr(float(v)) for v in truth])}), directory / _name())
    spec = {"name": "priced-live", "model": "priced", "window": {"predictions": WINDOW}, "start_ms": 0, "task": "regression"}
    assert requests.post(f"{server.url}/api/loopline/v1/monitors", json=spec).status_code == 200
    requests.post(f"{server.url}/api/loopline/v1/monitors/priced-live/run", json={}).raise_for_status()
    window = requests.get(f"{server.url}/api/loopline/v1/monitors/priced-live/windows").json()["windows"][0]
    figures = window["figures"]
    expected = {
        "rmse": metrics.root_mean_squared_error(truth, predicted),
        "mae": metrics.mean_absolute_error(truth, predicted),
        "mape": metrics.mean_absolute_percentage_error(truth, predicted),
        "r2": metrics.r2_score(truth, predicted),
    }
    for name, value in expected.items():
        assert figures[f"performance.{name}"] == pytest.approx(value, abs=1e-12, rel=1e-12), name


def test_estimated_performance_equals_nannyml_cbpe(monitored):
    import nannyml as nml

    reference, windows, listed = monitored
    frame = lambda f: pd.DataFrame({"y_pred_proba": f.probability, "y_pred": f.prediction.astype(int), "y_true": f.label})
    estimator = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true",
                         problem_type="classification_binary", metrics=["roc_auc", "accuracy"], chunk_size=WINDOW)
    estimator.fit(frame(reference))
    analysis = pd.concat([frame(w).drop(columns="y_true") for w in windows], ignore_index=True)
    result = estimator.estimate(analysis).filter(period="analysis").to_df()
    assert len(result) == WINDOWS
    for index, window in enumerate(listed):
        figures = window["figures"]
        for metric in ["accuracy", "roc_auc"]:
            expected = result[(metric, "value")].iloc[index]
            assert figures[f"estimated.{metric}"] == pytest.approx(expected, abs=1e-4), (index, metric)
            assert figures[f"estimated.{metric}_lower"] == pytest.approx(
                result[(metric, "lower_confidence_boundary")].iloc[index], abs=1e-4), (index, metric)
            assert figures[f"estimated.{metric}_upper"] == pytest.approx(
                result[(metric, "upper_confidence_boundary")].iloc[index], abs=1e-4), (index, metric)
    # The estimate follows the realised accuracy as the inputs shift.
    realised = [w["figures"]["performance.accuracy"] for w in listed]
    estimated = [w["figures"]["estimated.accuracy"] for w in listed]
    assert max(abs(r - e) for r, e in zip(realised, estimated)) < 0.05


def test_prometheus_rules_pass_promtool_and_the_dashboard_asks_for_exported_gauges(server, monitored):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test.sh installs Debian's prometheus package"
    rules = REPO_ROOT / "docs" / "monitoring" / "prometheus-rules.yml"
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exported = requests.get(f"{server.url}/metrics").text
    families = {line.split()[2] for line in exported.splitlines() if line.startswith("# TYPE loopline_monitor_")}
    dashboard = json.loads((REPO_ROOT / "docs" / "monitoring" / "grafana-dashboard.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"loopline_monitor_[a-z_]+", target["expr"])}
    asked |= set(re.findall(r"loopline_monitor_[a-z_]+", rules.read_text()))
    assert asked and asked <= families, asked - families


def test_an_estimate_only_monitor_reads_no_inputs_and_joins_no_labels(server, monitored):
    _, _, listed = monitored
    spec = {"name": "scored-estimate", "model": "scored", "window": {"predictions": WINDOW}, "start_ms": 0,
            "output": "prediction", "probability_output": "probability", "drift": {"enabled": False}}
    created = requests.post(f"{server.url}/api/loopline/v1/monitors", json=spec)
    assert created.status_code == 200, created.text
    requests.post(f"{server.url}/api/loopline/v1/monitors/scored-estimate/run", json={}).raise_for_status()
    lean = requests.get(f"{server.url}/api/loopline/v1/monitors/scored-estimate/windows").json()["windows"]
    assert len(lean) == WINDOWS
    for full, estimate_only in zip(listed, lean):
        figures = estimate_only["figures"]
        assert not any(name.startswith(("drift.", "performance.", "quality.")) for name in figures), figures
        assert estimate_only["labels"] == 0
        for name in ["estimated.accuracy", "estimated.roc_auc", "estimated.accuracy_upper"]:
            assert figures[name] == pytest.approx(full["figures"][name], abs=1e-12), name
