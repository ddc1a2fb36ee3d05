"""A loopline server for the monitoring suite, and a writer of prediction-log files in the layout serving writes
(predictions/model=<name>/hour=<H>/part-<written-ms>-<uuid>.parquet, feedback/hour=<H>/...), so that windows of
exactly known predictions and labels can be compared with scikit-learn and NannyML.
"""

import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, binary, free_port  # noqa: E402


@pytest.fixture(scope="session")
def server():
    data_dir = tempfile.mkdtemp(prefix="loopline-monitoring-")
    port = free_port()
    # A long tick: the tests evaluate on demand (`monitor run`) so nothing races them.
    process = LooplineProcess(["server", "--port", str(port), "--data-dir", data_dir, "--monitor-tick-seconds", "3600"],
                              port, Path(data_dir) / "server.log", timeout=60)
    process.data_dir = Path(data_dir)
    process.binary = binary()
    yield process
    process.stop()


def register(server, name: str) -> None:
    api = f"{server.url}/api/2.0/mlflow"
    requests.post(f"{api}/registered-models/create", json={"name": name}).raise_for_status()
    created = requests.post(f"{api}/model-versions/create", json={"name": name, "source": f"mlflow-artifacts:/models/{name}"})
    created.raise_for_status()
    requests.post(f"{api}/registered-models/alias", json={"name": name, "alias": "champion", "version": "1"}).raise_for_status()


def hour_of(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H")


_written = [0]


def _name() -> str:
    # Names begin with an increasing write time, as the server's writer makes them.
    import time
    _written[0] = max(_written[0] + 1, int(time.time() * 1000))
    return f"part-{_written[0]:013d}-{uuid.uuid4().hex}.parquet"


def write_predictions(data_dir: Path, model: str, frame: pd.DataFrame, start_ms: int) -> list[str]:
    """One logged prediction per row (its own request id), a millisecond apart from `start_ms`."""
    ids = [uuid.uuid4().hex for _ in range(len(frame))]
    times = start_ms + np.arange(len(frame), dtype=np.int64)
    columns = {
        "request_id": pa.array(ids),
        "timestamp": pa.array(times, type=pa.timestamp("ms", tz="UTC")),
        "model_version": pa.array(["1"] * len(frame)),
        "role": pa.array(["served"] * len(frame)),
        "row": pa.array(np.zeros(len(frame), dtype=np.int64)),
    }
    for column in frame.columns:
        columns[column] = pa.array(frame[column].to_numpy())
    hours = pd.Series([hour_of(int(t)) for t in times])
    table = pa.table(columns)
    for hour in hours.unique():
        mask = (hours == hour).to_numpy()
        directory = data_dir / "artifacts" / "predictions" / f"model={model}" / f"hour={hour}"
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(mask)), directory / _name())
    return ids


def write_feedback(data_dir: Path, ids: list[str], labels, at_ms: int) -> None:
    directory = data_dir / "artifacts" / "feedback" / f"hour={hour_of(at_ms)}"
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "request_id": pa.array(ids),
        "timestamp": pa.array(np.full(len(ids), at_ms, dtype=np.int64), type=pa.timestamp("ms", tz="UTC")),
        "label": pa.array([str(int(label)) for label in labels]),
    })
    pq.write_table(table, directory / _name())
