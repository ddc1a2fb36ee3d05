"""Helpers for the statistics, drift and validation compatibility suites: the loopline binary and a way to run it.

Environment:
  LOOPLINE_BIN   path to the loopline binary (default: target/debug/loopline)
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def loopline_bin() -> str:
    binary = os.environ.get("LOOPLINE_BIN", str(REPO_ROOT / "target" / "debug" / "loopline"))
    assert Path(binary).exists(), f"build the binary first: {binary} is missing"
    return binary


@pytest.fixture
def run_loopline(loopline_bin):
    """Runs `loopline ARGS...` and returns the completed process (never raises on a non-zero exit)."""

    def run(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [loopline_bin, *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )

    return run


def read_json(path: Path):
    with open(path) as handle:
        return json.load(handle)
