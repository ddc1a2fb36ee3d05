"""Collection snapshots through the real qdrant-client: made, listed, recovered over the collection and
under another name, deleted; and, with the artifact store on S3 (moto), a snapshot one server makes recovered
by a second server with its own data directory that shares the bucket.
"""

import os
import tempfile
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from conftest import start

VECTORS = models.VectorParams(size=4, distance=models.Distance.COSINE)


def fill(client, name, ids):
    client.upsert(name, points=[models.PointStruct(id=i, vector=[1.0, i % 3, i % 5, 1.0], payload={"i": i})
                                for i in ids], wait=True)


def ids(client, name):
    points, _ = client.scroll(name, limit=1000)
    return sorted(point.id for point in points)


def test_snapshots_are_made_listed_recovered_and_deleted(server):
    client = QdrantClient(url=server.url, timeout=60)
    try:
        client.create_collection("snap", vectors_config=VECTORS)
        fill(client, "snap", range(10))
        made = client.create_snapshot("snap", wait=True)
        assert made.name.startswith("snap-") and made.size > 0 and len(made.checksum) == 64
        assert [s.name for s in client.list_snapshots("snap")] == [made.name]
        fill(client, "snap", range(10, 15))
        client.delete("snap", points_selector=models.PointIdsList(points=[0, 1]), wait=True)
        location = f"{server.url}/collections/snap/snapshots/{made.name}"
        assert client.recover_snapshot("snap", location=location, checksum=made.checksum, wait=True)
        assert ids(client, "snap") == list(range(10))
        assert client.recover_snapshot("snap_copy", location=location, wait=True)
        assert ids(client, "snap_copy") == list(range(10))
        hit = client.query_points("snap_copy", query=[1.0, 2.0, 2.0, 1.0], limit=1).points[0]
        assert hit.id in {2, 5, 7}
        assert client.delete_snapshot("snap", made.name, wait=True)
        assert client.list_snapshots("snap") == []
    finally:
        for name in ["snap", "snap_copy"]:
            client.delete_collection(name)
        client.close()


@pytest.mark.skipif(not os.environ.get("LOOPLINE_TEST_S3_BUCKET"),
                    reason="needs the S3-compatible server scripts/test.sh starts")
def test_a_snapshot_on_s3_moves_a_collection_to_another_server():
    destination = f"s3://{os.environ['LOOPLINE_TEST_S3_BUCKET']}/vector-snapshot-test-{os.getpid()}"
    first_dir, second_dir = tempfile.mkdtemp(prefix="loopline-snap-a-"), tempfile.mkdtemp(prefix="loopline-snap-b-")
    first = start(first_dir, ["--artifacts-destination", destination])
    second = start(second_dir, ["--artifacts-destination", destination])
    try:
        one, two = QdrantClient(url=first.url, timeout=60), QdrantClient(url=second.url, timeout=60)
        one.create_collection("moved", vectors_config=VECTORS)
        fill(one, "moved", range(25))
        made = one.create_snapshot("moved", wait=True)
        assert not two.collection_exists("moved")
        # The second server reads the snapshot from the shared bucket by its URL on the first.
        assert two.recover_snapshot("moved", location=f"{first.url}/collections/moved/snapshots/{made.name}",
                                    checksum=made.checksum, wait=True)
        assert ids(two, "moved") == list(range(25))
        assert [s.name for s in two.list_snapshots("moved")] == [made.name]
        one.close()
        two.close()
    finally:
        for process in (first, second):
            assert process.stop() == 0, process.log_text()
