"""Versioned data through a server whose artifact store is S3 (moto): pushed objects land under the bucket's
prefix content-addressed, a second clone holding only the pointer files pulls the same bytes back, and an
object changed behind the server's back is refused on the way down, leaving nothing half-written."""

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, binary, free_port  # noqa: E402

BUCKET = os.environ.get("LOOPLINE_TEST_S3_BUCKET")
pytestmark = pytest.mark.skipif(not BUCKET, reason="needs the S3-compatible test server (scripts/test.sh starts it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    prefix = f"data-{uuid.uuid4().hex[:8]}"
    directory = tmp_path_factory.mktemp("server")
    port = free_port()
    process = LooplineProcess(
        ["server", "--port", str(port), "--data-dir", str(directory),
         "--artifacts-destination", f"s3://{BUCKET}/{prefix}"],
        port, directory / "server.log", timeout=60)
    yield process.url, prefix
    process.stop()


def loopline(cwd, *args, check=True):
    result = subprocess.run([binary(), *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"loopline {' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_push_to_s3_and_pull_into_another_clone(server, tmp_path):
    url, prefix = server
    first = tmp_path / "first"
    (first / ".loopline").mkdir(parents=True)
    (first / "data" / "images").mkdir(parents=True)
    (first / "data" / "train.csv").write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(5000)))
    for index in range(3):
        (first / "data" / "images" / f"{index}.bin").write_bytes(os.urandom(70_000 + index))
    loopline(first, "data", "add", "data/train.csv", "data/images")
    loopline(first, "data", "push", "--server", url)

    s3 = boto3.client("s3")
    stored = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/datasets/objects/")
              for o in page.get("Contents", [])]
    # The table, three images and the directory's manifest, by content.
    assert len(stored) == 5, stored
    assert all(len(key.rsplit("/", 2)[-2]) == 2 for key in stored)

    second = tmp_path / "second"
    (second / ".loopline").mkdir(parents=True)
    (second / "data").mkdir()
    for pointer in ["train.csv.loopline", "images.loopline"]:
        shutil.copy(first / "data" / pointer, second / "data" / pointer)
    loopline(second, "data", "pull", "--server", url)
    for relative in ["data/train.csv", "data/images/0.bin", "data/images/1.bin", "data/images/2.bin"]:
        assert digest(second / relative) == digest(first / relative), relative
    status = loopline(second, "data", "status", "--remote", "--server", url).stdout
    assert "modified" not in status and "missing" not in status, status

    # An object replaced on S3 behind the server's back is refused when pulled; nothing is checked out.
    image = next(key for key in stored if s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 70_001)
    s3.put_object(Bucket=BUCKET, Key=image, Body=os.urandom(70_001))
    third = tmp_path / "third"
    (third / ".loopline").mkdir(parents=True)
    (third / "data").mkdir()
    shutil.copy(first / "data" / "images.loopline", third / "data" / "images.loopline")
    refused = loopline(third, "data", "pull", "--server", url, check=False)
    assert refused.returncode != 0
    assert not (third / "data" / "images").exists()
