"""pytest plugin that runs MLflow's own server tests against `loopline server` or `mlflow server`.

Loaded with `-p loopline_plugin`; LOOPLINE_SUITE_TARGET picks the server:

- `loopline`: every way the five MLflow test files start a tracking server starts `$LOOPLINE_BIN
  server` instead, on the port the test chose and with a fresh data directory:
  `tests.tracking.integration_test_utils.ServerThread` (in-process uvicorn, one server per test),
  `tests.tracking.integration_test_utils._init_server` (a uvicorn/flask subprocess), `_launch_server`
  in test_mlflow_artifacts.py (`mlflow server`, module-scoped), and a `python -m mlflow server` /
  `mlflow server` subprocess started inside a test body. MLflow's fixtures otherwise run unchanged
  (parameters, skips, environment). They still build an in-process MLflow store first; Loopline never
  sees it (it keeps its own schema). Where MLflow's fixture points the test process's fluent API (and so
  the in-process CLI) at the server's own database, the plugin points it at the Loopline server instead,
  the same store reached the only way Loopline's can be; a test that opens the store by hand still cannot pass.
  The fixture's artifact root, when it is a local directory, becomes --artifacts-destination.
- `mlflow` (the baseline): `ServerThread` starts MLflow's FastAPI app in a uvicorn subprocess, as
  `_init_server` does, on the store and artifact root the fixture set up; everything else is MLflow's.
  In-process, the tests' global OpenTelemetry tracer provider also instruments FastAPI's own request
  telemetry, whose synchronous export back to the same server deadlocks (test_otel_loading.py).
- `mlflow-inprocess`: the fixtures exactly as MLflow wrote them.

LOOPLINE_SUITE_LOG_DIR, when set, keeps each server's output there, named after the test.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

TARGET = os.environ.get("LOOPLINE_SUITE_TARGET", "mlflow")
TARGETS = ("loopline", "mlflow", "mlflow-inprocess")


def _binary() -> str:
    return os.environ.get("LOOPLINE_BIN", "loopline")


def _log_path() -> Path | None:
    log_dir = os.environ.get("LOOPLINE_SUITE_LOG_DIR")
    if not log_dir:
        return None
    test = os.environ.get("PYTEST_CURRENT_TEST", "session").rsplit(" ", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", test)[:200]
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    path = Path(log_dir, f"{name}.log")
    n = 1
    while path.exists():
        n += 1
        path = Path(log_dir, f"{name}.{n}.log")
    return path


def _local_dir(uri: str | None) -> str | None:
    """The directory an artifact root names, when it is a local one."""
    if not uri:
        return None
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    if parsed.scheme == "" and os.path.isabs(uri):
        return uri
    return None


class ServerProcess:
    """One server process with a scratch directory of its own, ready once GET /health answers 200."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.health_url = f"{self.url}/health"
        self.process = None
        self._data_dir = None
        self._log = None

    def command(self) -> tuple[list[str], dict]:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> str:
        self._data_dir = tempfile.mkdtemp(prefix="mlflow-suite-server-")
        args, env = self.command()
        log_path = _log_path() or Path(self._data_dir, "server.log")
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{args[0]} exited early ({self.process.returncode}); log: {log_path}")
            if _healthy(self.health_url):
                return self.url
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args[0]} was not healthy within {timeout}s; log: {log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        self.process = self._data_dir = self._log = None


class LooplineServer(ServerProcess):
    """`loopline server` on a fresh data directory."""

    def __init__(self, port: int, host: str = "127.0.0.1", artifacts_destination: str | None = None,
                 env: dict | None = None):
        super().__init__(port, host)
        self.artifacts_destination = artifacts_destination
        self.env = env

    def command(self) -> tuple[list[str], dict]:
        args = [_binary(), "server", "--host", self.host, "--port", str(self.port), "--data-dir", self._data_dir]
        if self.artifacts_destination:
            os.makedirs(self.artifacts_destination, exist_ok=True)
            args += ["--artifacts-destination", self.artifacts_destination]
        return args, dict(self.env if self.env is not None else os.environ)


class MlflowServer(ServerProcess):
    """MLflow's FastAPI app under uvicorn in its own process, as _init_server starts it."""

    def __init__(self, port: int, backend_uri: str, artifact_root: str):
        super().__init__(port)
        self.backend_uri, self.artifact_root = backend_uri, artifact_root

    def command(self) -> tuple[list[str], dict]:
        from mlflow.server import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR

        args = [sys.executable, "-m", "uvicorn", "mlflow.server.fastapi_app:app",
                "--host", self.host, "--port", str(self.port)]
        env = {**os.environ, BACKEND_STORE_URI_ENV_VAR: self.backend_uri, ARTIFACT_ROOT_ENV_VAR: self.artifact_root}
        return args, env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _fixture_store():
    """The store MLflow's fixture just set up in-process (initialize_backend_stores)."""
    return getattr(sys.modules.get("mlflow.server.handlers"), "_tracking_store", None)


class SubprocessServerThread:
    """Stands in for tests.tracking.integration_test_utils.ServerThread(app, port)."""

    def __init__(self, app=None, port: int = 0):
        self.host = "127.0.0.1"
        self.port = port
        self.url = f"http://{self.host}:{port}"
        self.health_url = f"{self.url}/health"
        store = _fixture_store()
        self._shared_store_uri = getattr(store, "db_uri", None)
        self._previous_uri = None
        if TARGET == "loopline":
            self._server = LooplineServer(port, self.host, _local_dir(getattr(store, "artifact_root_uri", None)))
        else:
            self._server = MlflowServer(port, store.db_uri, store.artifact_root_uri)

    def _share_store(self, url: str) -> None:
        """On MLflow the test process's fluent API and in-process CLI write straight into the server's own
        database (MLflow's fixture points both at one SQLite file). Loopline's store is reached through its
        server, so there the fluent tracking URI is pointed at the server for the test's duration."""
        import mlflow

        if TARGET == "loopline" and self._shared_store_uri and mlflow.get_tracking_uri() == self._shared_store_uri:
            self._previous_uri = self._shared_store_uri
            mlflow.set_tracking_uri(url)

    def _unshare_store(self) -> None:
        import mlflow

        if self._previous_uri is not None:
            mlflow.set_tracking_uri(self._previous_uri)
            self._previous_uri = None

    def start(self) -> None:
        self._share_store(self._server.start())

    def shutdown(self) -> None:
        self._unshare_store()
        self._server.stop()

    def join(self, timeout=None) -> None:
        pass

    def __enter__(self) -> str:
        url = self._server.start()
        self._share_store(url)
        return url

    def __exit__(self, exc_type, exc, tb):
        self._unshare_store()
        self._server.stop()
        return None


@contextlib.contextmanager
def loopline_init_server(backend_uri, root_artifact_uri, extra_env=None, app=None, server_type="fastapi"):
    """Stands in for tests.tracking.integration_test_utils._init_server (extra_env is MLflow's)."""
    import mlflow

    from tests.helper_functions import get_safe_port

    mlflow.set_tracking_uri(None)
    server = LooplineServer(get_safe_port(), artifacts_destination=_local_dir(root_artifact_uri))
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def loopline_launch_server(host, port, backend_store_uri, default_artifact_root, artifacts_destination):
    """Stands in for test_mlflow_artifacts._launch_server (`mlflow server ... --artifacts-destination`)."""
    server = LooplineServer(port, host, _local_dir(artifacts_destination))
    try:
        server.start()
        yield server.process
    finally:
        server.stop()


class _LooplinePopen:
    """What `subprocess.Popen([... "mlflow", "server", ...])` becomes inside a test body."""

    def __init__(self, args, **kwargs):
        opts = dict(zip(args, args[1:]))
        # The test's environment goes with it (MLflow server settings such as
        # MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX are read from there).
        self._server = LooplineServer(int(opts.get("--port", 5000)), opts.get("--host", "127.0.0.1"),
                                      _local_dir(opts.get("--artifacts-destination")), kwargs.get("env"))
        self._server.start()
        self.process = self._server.process
        self.pid = self.process.pid
        self.returncode = None

    def poll(self):
        return self.process.poll() if self.process else self.returncode

    def wait(self, timeout=None):
        return self.poll()

    def terminate(self):
        self._stop()

    kill = terminate

    def _stop(self):
        if self._server.process is not None:
            self._server.stop()
            self.returncode = 0
            self.process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop()


def _starts_mlflow_server(args) -> bool:
    if isinstance(args, (str, bytes)) or not args:
        return False
    args = [str(a) for a in args]
    return any(a in ("mlflow", "mlflow.cli") or a.endswith("/mlflow") for a in args[:3]) and "server" in args


def _popen(args, *rest, **kwargs):
    if _starts_mlflow_server(args):
        return _LooplinePopen(list(args), **kwargs)
    return subprocess.Popen(args, *rest, **kwargs)


def _subprocess_shim() -> types.ModuleType:
    shim = types.ModuleType("subprocess")
    shim.__dict__.update(subprocess.__dict__)
    shim.Popen = _popen
    return shim


_REPLACEMENTS = {
    "loopline": {
        "ServerThread": SubprocessServerThread,
        "_init_server": loopline_init_server,
        "_launch_server": loopline_launch_server,
    },
    "mlflow": {"ServerThread": SubprocessServerThread},
    "mlflow-inprocess": {},
}


def _patch(module) -> None:
    for name, replacement in _REPLACEMENTS[TARGET].items():
        if hasattr(module, name):
            setattr(module, name, replacement)
    if TARGET == "loopline" and getattr(module, "subprocess", None) is subprocess:
        module.subprocess = _subprocess_shim()


def pytest_configure(config):
    if TARGET not in TARGETS:
        raise pytest.UsageError(f"LOOPLINE_SUITE_TARGET={TARGET!r}: expected one of {', '.join(TARGETS)}")
    if TARGET == "loopline" and shutil.which(_binary()) is None:
        raise pytest.UsageError(f"LOOPLINE_BIN={_binary()!r} is not an executable")


def pytest_report_header(config):
    return f"loopline_plugin: target={TARGET}" + (f" binary={_binary()}" if TARGET == "loopline" else "")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Fixtures and test bodies look these names up when they run, so patching after import is enough."""
    if utils := sys.modules.get("tests.tracking.integration_test_utils"):
        _patch(utils)
    for module in {id(item.module): item.module for item in items if getattr(item, "module", None)}.values():
        _patch(module)

