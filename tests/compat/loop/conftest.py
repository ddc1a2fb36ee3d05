"""The loop suite's shared fixture: one `loopline quickstart`, run as a new user runs it, kept serving for the
whole session (the quickstart tests read what it left; the browser tests look at it in Chromium)."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import binary, free_port  # noqa: E402


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    # Working on a suite: LOOPLINE_QUICKSTART_URL reuses a quickstart already running (its directory beside).
    if os.environ.get("LOOPLINE_QUICKSTART_URL"):
        yield os.environ["LOOPLINE_QUICKSTART_URL"], "", Path(os.environ.get("LOOPLINE_QUICKSTART_DIR", "."))
        return
    work = tmp_path_factory.mktemp("quickstart")
    port = free_port()
    process = subprocess.Popen(
        [binary(), "quickstart", "--dir", str(work / "qs"), "--python", sys.executable, "--port", str(port)],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    lines = []
    deadline = time.monotonic() + 600
    for line in process.stdout:
        lines.append(line)
        if "The loop closed" in line or time.monotonic() > deadline:
            break
    output = "".join(lines)
    if "The loop closed" not in output:
        process.kill()
        log = (work / "qs" / "server.log")
        raise AssertionError(f"quickstart did not close the loop:\n{output}\n{log.read_text() if log.exists() else ''}")
    # The rest of the output (next steps) is read in the background so the process never blocks on it.
    threading.Thread(target=lambda: [lines.append(l) for l in process.stdout], daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    yield url, output, work / "qs"
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


