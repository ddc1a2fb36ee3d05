"""Sources and a Feast registry on S3 (the suite's S3-compatible server): training sets and online values equal
to those of the same data on local disk, a changed object is fetched again, and a registry that `feast apply`
wrote is read from its s3:// URI."""

import os
import subprocess
import uuid

import pandas as pd
import pytest
import requests

from feast_data import BINARY, LOOPLINE_DEFINITIONS, feast_store, make_data
from loopline_process import LooplineProcess, free_port

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL")
BUCKET = os.environ.get("LOOPLINE_TEST_S3_BUCKET")
pytestmark = pytest.mark.skipif(not (ENDPOINT and BUCKET), reason="no S3-compatible server (scripts/test.sh starts one)")
START, END = "2024-04-01T00:00:00", "2024-06-01T00:00:00"


def put(key: str, data: bytes):
    import boto3

    boto3.client("s3", endpoint_url=ENDPOINT).put_object(Bucket=BUCKET, Key=key, Body=data)


@pytest.fixture(scope="module")
def on_s3(tmp_path_factory):
    directory = tmp_path_factory.mktemp("s3")
    make_data(directory, ties=False)
    prefix = f"features-{uuid.uuid4().hex[:8]}"
    put(f"{prefix}/driver_stats.parquet", (directory / "driver_stats.parquet").read_bytes())
    # A directory source: the trips split over two objects under a prefix.
    trips = pd.read_parquet(directory / "trips.parquet")
    half = len(trips) // 2
    for part, rows in enumerate([trips[:half], trips[half:]]):
        rows.to_parquet(directory / f"part-{part}.parquet")
        # Keys are read as S3 lists them, whatever characters they hold.
        put(f"{prefix}/trips/run #{part}/part ü~{part}.parquet", (directory / f"part-{part}.parquet").read_bytes())
    remote = (LOOPLINE_DEFINITIONS
              .replace("path: driver_stats.parquet", f"path: s3://{BUCKET}/{prefix}/driver_stats.parquet")
              .replace("path: trips.parquet", f"path: s3://{BUCKET}/{prefix}/trips/"))
    (directory / "remote.yaml").write_text(remote)
    (directory / "local.yaml").write_text(LOOPLINE_DEFINITIONS.replace("project: compat", "project: local"))
    return directory, prefix


def historical(directory, definitions, out):
    return subprocess.run([BINARY, "features", "historical", "-d", str(definitions), "--entities",
                           str(directory / "entities.parquet"), "--service", "everything", "--full-feature-names",
                           "-o", str(directory / out)], check=True, capture_output=True, text=True)


def test_a_training_set_from_sources_on_s3_equals_the_one_from_local_copies(on_s3):
    directory, _ = on_s3
    ran = historical(directory, directory / "remote.yaml", "remote.parquet")
    assert "copying the sources on S3" in ran.stdout
    historical(directory, directory / "local.yaml", "local.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(directory / "remote.parquet"),
                                  pd.read_parquet(directory / "local.parquet"))
    assert not [p for p in directory.iterdir() if p.name.startswith(".loopline-sources")], "the copies are removed"
    checked = subprocess.run([BINARY, "features", "check", "-d", str(directory / "remote.yaml")],
                             check=True, capture_output=True, text=True)
    assert "ok       trip_stats" in checked.stdout
    for bucket in ["Loop Line", "..", "bucket?list-type=2"]:
        (directory / "bad.yaml").write_text(LOOPLINE_DEFINITIONS.replace(
            "path: driver_stats.parquet", f"path: 's3://{bucket}/x.parquet'"))
        refused = subprocess.run([BINARY, "features", "check", "-d", str(directory / "bad.yaml")],
                                 capture_output=True, text=True)
        assert refused.returncode == 2 and "not an S3 bucket name" in refused.stderr, refused.stderr


def test_the_server_materialises_sources_on_s3_and_fetches_a_changed_object_again(on_s3):
    directory, prefix = on_s3
    port = free_port()
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", str(directory / "data")], port,
                             directory / "loopline.log")
    cli = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    try:
        for name in ["remote", "local"]:
            subprocess.run([BINARY, "features", "apply", "-d", str(directory / f"{name}.yaml")], env=cli,
                           check=True, capture_output=True, text=True)
        for project in ["compat", "local"]:
            subprocess.run([BINARY, "features", "materialize", START, END, "--project", project], env=cli,
                           check=True, capture_output=True, text=True)
        body = {"feature_service": "everything", "full_feature_names": True,
                "entities": {"driver_id": [1003, 1004, 1005, 2000], "customer_id": ["c1", "c7", "c99", "c2"]}}
        scoped = f"{server.url}/api/loopline/v1/features/projects"
        remote = requests.post(f"{scoped}/compat/get-online-features", json=body, timeout=30).json()
        local = requests.post(f"{scoped}/local/get-online-features", json=body, timeout=30).json()
        assert remote == local
        assert "PRESENT" in remote["results"][2]["statuses"]

        # The object changes on S3: the next materialisation reads the new content.
        changed = pd.read_parquet(directory / "driver_stats.parquet")
        changed["conv_rate"] = 42.0
        changed.to_parquet(directory / "changed.parquet")
        put(f"{prefix}/driver_stats.parquet", (directory / "changed.parquet").read_bytes())
        subprocess.run([BINARY, "features", "materialize", START, END, "--project", "compat"], env=cli,
                       check=True, capture_output=True, text=True)
        again = requests.post(f"{scoped}/compat/get-online-features", json=body, timeout=30).json()
        names = again["metadata"]["feature_names"]
        rates = again["results"][names.index("driver_stats__conv_rate")]
        assert {v for v, s in zip(rates["values"], rates["statuses"]) if s == "PRESENT"} == {42.0}
    finally:
        server.stop()


def test_a_feast_registry_on_s3_is_read_from_its_uri(on_s3):
    directory, prefix = on_s3
    feast_store(directory)
    put(f"{prefix}/repo/registry.db", (directory / "feast_repo" / "data" / "registry.db").read_bytes())
    uri = f"s3://{BUCKET}/{prefix}/repo/registry.db"
    checked = subprocess.run([BINARY, "features", "check", "-d", uri], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "ok       driver_stats" in checked.stdout
    historical(directory, uri, "from_s3_registry.parquet")
    historical(directory, directory / "feast_repo", "from_local_registry.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(directory / "from_s3_registry.parquet"),
                                  pd.read_parquet(directory / "from_local_registry.parquet"))
    missing = subprocess.run([BINARY, "features", "check", "-d", f"s3://{BUCKET}/{prefix}/nope/registry.db"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no such object" in missing.stderr
