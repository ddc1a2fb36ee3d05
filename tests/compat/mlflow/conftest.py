"""Starts a fresh `loopline server` for the session and points the stock mlflow client at it.

Environment:
  LOOPLINE_BIN                     path to the loopline binary (default: target/debug/loopline)
  LOOPLINE_COMPAT_BACKEND_STORE_URI  backend store for the server (default: SQLite in a temp dir)
  LOOPLINE_COMPAT_ARTIFACTS_DESTINATION  artifact destination (default: a temp dir)
  LOOPLINE_COMPAT_AUTH             `basic` or `token`: the server runs with `--auth basic,token`, and every test
                                   runs as a non-admin user holding the built-in `editor` role, through
                                   MLFLOW_TRACKING_USERNAME/PASSWORD (basic) or MLFLOW_TRACKING_TOKEN (token)
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
ADMIN_PASSWORD = "compat admin password"
USER = "compat-user"
USER_PASSWORD = "compat user password"


def _auth_mode():
    mode = os.environ.get("LOOPLINE_COMPAT_AUTH", "")
    assert mode in ("", "basic", "token"), f"LOOPLINE_COMPAT_AUTH={mode!r}: use basic or token"
    return mode


def _sign_in_as_editor(url, mode):
    """Creates the editor user with the stock admin client, then points the mlflow client (and `requests` calls
    made by the tests themselves) at the server with that user's credentials."""
    import requests
    from mlflow.server import get_app_client

    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN_PASSWORD
    admin = get_app_client("basic-auth", tracking_uri=url)
    admin.create_user(USER, USER_PASSWORD)
    editor = next(role for role in admin.list_roles("default") if role.name == "editor")
    admin.assign_role(USER, editor.id)
    if mode == "basic":
        os.environ["MLFLOW_TRACKING_USERNAME"] = USER
        os.environ["MLFLOW_TRACKING_PASSWORD"] = USER_PASSWORD
        header = None
        auth = (USER, USER_PASSWORD)
    else:
        del os.environ["MLFLOW_TRACKING_USERNAME"]
        del os.environ["MLFLOW_TRACKING_PASSWORD"]
        issued = requests.post(f"{url}/api/loopline/v1/access/tokens", json={"name": "compat", "scopes": ["write"]},
                               auth=(USER, USER_PASSWORD), timeout=30)
        assert issued.status_code == 200, issued.text
        os.environ["MLFLOW_TRACKING_TOKEN"] = issued.json()["token"]
        header = f"Bearer {issued.json()['token']}"
        auth = None
    original = requests.Session.request

    server = url

    def with_credentials(self, method, url, *args, **kwargs):
        headers = dict(kwargs.get("headers") or {})
        if (str(url).startswith(server) and kwargs.get("auth") is None
                and not any(name.lower() == "authorization" for name in headers)):
            if header:
                headers["Authorization"] = header
                kwargs["headers"] = headers
            else:
                kwargs["auth"] = auth
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = with_credentials


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
    mode = _auth_mode()
    env = {}
    if mode:
        args += ["--auth", "basic,token"]
        env["LOOPLINE_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    server = LooplineProcess(args, port, Path(data_dir) / "server.log", timeout=60, env=env)
    _SERVERS.append(server)
    if mode:
        _sign_in_as_editor(server.url, mode)
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


@pytest.fixture()
def as_admin():
    """Within it, the mlflow client acts as the admin (webhooks are admin-only, as in MLflow's auth app)."""
    import contextlib

    @contextlib.contextmanager
    def admin():
        if not _auth_mode():
            yield
            return
        saved = {name: os.environ.get(name) for name in
                 ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")}
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
        os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN_PASSWORD
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    return admin
