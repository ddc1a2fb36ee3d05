"""MLflow's own AI-gateway store tests (tests/store/tracking/test_gateway_sql_store.py) pointed at a live
`loopline server` through the stock client's REST store, instead of the SqlAlchemy store they were written
for. Each test gets a fresh server (the tests reuse names). Loaded by gateway.sh, which copies MLflow's test
file next to this one; nothing here is MLflow's code."""

import os
import socket
import subprocess
import tempfile
import time

import pytest
import requests
from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
from mlflow.tracking._tracking_service.utils import _get_store

from test_gateway_sql_store import *  # noqa: F401,F403  the test functions, collected here with these fixtures

BINARY = os.environ["LOOPLINE_BIN"]


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def loopline_url():
    data = tempfile.mkdtemp(prefix="loopline-gateway-suite-")
    port = _free_port()
    environment = {**os.environ, "MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES": "http,https",
                   "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS": "true"}
    with open(os.path.join(data, "server.log"), "wb") as log:
        server = subprocess.Popen([BINARY, "server", "--port", str(port), "--data-dir", data],
                                  stdout=log, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"loopline did not start; see {data}/server.log")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(autouse=True)
def workspaces_enabled(monkeypatch):
    """Loopline has no workspaces: only the suite's workspace-disabled half applies."""
    monkeypatch.setenv(MLFLOW_ENABLE_WORKSPACES.name, "false")
    yield False


@pytest.fixture
def store(loopline_url, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", loopline_url)
    yield _get_store(loopline_url)
