"""Starts a fresh `loopline server` for the session and points the stock mlflow client at it.

Environment:
  LOOPLINE_BIN                     path to the loopline binary (default: target/debug/loopline)
  LOOPLINE_COMPAT_BACKEND_STORE_URI  backend store for the server (default: SQLite in a temp dir)
  LOOPLINE_COMPAT_ARTIFACTS_DESTINATION  artifact destination (default: a temp dir)
"""

import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, free_port  # noqa: E402


_SERVERS = []


@pytest.fixture(scope="session")
def server_log():
    """Reads the session server's log so far."""
    return lambda: _SERVERS[0].log_text()


@pytest.fixture(scope="session")
def server_url():
    data_dir = tempfile.mkdtemp(prefix="loopline-compat-")
    port = free_port()
    # Webhook receivers in these tests listen on loopback over http, which the default policy refuses.
    args = ["server", "--port", str(port), "--data-dir", data_dir,
            "--webhook-allowed-schemes", "http,https", "--webhook-allow-private-addresses"]
    backend = os.environ.get("LOOPLINE_COMPAT_BACKEND_STORE_URI")
    if backend:
        args += ["--backend-store-uri", backend]
    artifacts = os.environ.get("LOOPLINE_COMPAT_ARTIFACTS_DESTINATION")
    if artifacts:
        args += ["--artifacts-destination", artifacts]
    server = LooplineProcess(args, port, Path(data_dir) / "server.log", timeout=60)
    _SERVERS.append(server)
    yield server.url
    code = server.stop()
    assert code == 0, f"server did not shut down cleanly:\n{server.log_text()}"


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
