"""The `loopline-fake-llm` binary (crates/test-support) as a process the gateway suites script over HTTP."""

import os
import subprocess
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import REPO_ROOT  # noqa: E402


class Fake:
    """A `loopline-fake-llm` process."""

    def __init__(self, key=None):
        binary = os.environ.get("LOOPLINE_FAKE_LLM_BIN", str(REPO_ROOT / "target" / "debug" / "examples" / "loopline-fake-llm"))
        command = [binary] + (["--key", key] if key else [])
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.base_url = self.process.stdout.readline().strip()
        assert self.base_url.startswith("http://127.0.0.1:"), self.base_url

    def script(self, model, *behaviours):
        response = requests.post(f"{self.base_url.removesuffix('/v1')}/fake/script",
                                 json={"model": model, "behaviours": list(behaviours)}, timeout=10)
        assert response.status_code == 204, response.text

    def calls(self):
        return requests.get(f"{self.base_url.removesuffix('/v1')}/fake/calls", timeout=10).json()

    def stop(self):
        self.process.kill()
        self.process.wait()
