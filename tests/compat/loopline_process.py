"""Starts and stops a `loopline` process for the compatibility suites (shared by their conftest files).

LOOPLINE_BIN names the binary (default: target/debug/loopline).
"""

import os
import socket
import subprocess
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def binary() -> str:
    return os.environ.get("LOOPLINE_BIN", str(REPO_ROOT / "target" / "debug" / "loopline"))


class LooplineProcess:
    """A running `loopline <args>` listening on `port`, logging to `log_path`."""

    def __init__(self, args, port, log_path, health_path="/health", env=None, timeout=120):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(log_path)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([binary(), *args], stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                            env={**os.environ, **(env or {})})
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"loopline {args[0]} exited early:\n{self.log_text()}")
            try:
                if requests.get(f"{self.url}{health_path}", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"loopline {args[0]} did not become healthy:\n{self.log_text()}")
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, wait for the drain, and return the exit code."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return self.process.returncode
