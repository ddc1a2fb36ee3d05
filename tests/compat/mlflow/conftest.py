"""Starts a fresh `loopline server` for the session and points the stock mlflow client at it.

Environment:
  LOOPLINE_BIN                     path to the loopline binary (default: target/debug/loopline)
  LOOPLINE_COMPAT_BACKEND_STORE_URI  backend store for the server (default: SQLite in a temp dir)
  LOOPLINE_COMPAT_ARTIFACTS_DESTINATION  artifact destination (default: a temp dir)
"""

import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def server_url():
    binary = os.environ.get("LOOPLINE_BIN", str(REPO_ROOT / "target" / "debug" / "loopline"))
    data_dir = tempfile.mkdtemp(prefix="loopline-compat-")
    port = _free_port()
    command = [binary, "server", "--port", str(port), "--data-dir", data_dir]
    backend = os.environ.get("LOOPLINE_COMPAT_BACKEND_STORE_URI")
    if backend:
        command += ["--backend-store-uri", backend]
    artifacts = os.environ.get("LOOPLINE_COMPAT_ARTIFACTS_DESTINATION")
    if artifacts:
        command += ["--artifacts-destination", artifacts]
    log_path = Path(data_dir) / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"loopline server exited early:\n{log_path.read_text()}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"loopline server did not become healthy:\n{log_path.read_text()}")
        time.sleep(0.1)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, f"server did not shut down cleanly:\n{log_path.read_text()}"


@pytest.fixture(scope="session", autouse=True)
def mlflow_tracking(server_url):
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = server_url
    # Fail fast instead of retrying server errors for minutes.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    mlflow.set_tracking_uri(server_url)
    yield


@pytest.fixture()
def experiment(mlflow_tracking):
    import mlflow

    name = f"compat-{uuid.uuid4().hex[:12]}"
    experiment_id = mlflow.set_experiment(name).experiment_id
    yield experiment_id
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture()
def client(mlflow_tracking):
    from mlflow import MlflowClient

    return MlflowClient()
