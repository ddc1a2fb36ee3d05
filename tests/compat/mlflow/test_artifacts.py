"""Artifacts through the proxy: files, directories, dicts, text, tables, listing and download."""

import json

import mlflow
import pandas as pd


def test_files_and_directories_round_trip(experiment, client, tmp_path):
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "b.txt").write_text("dir/sub/b.txt")
    (tmp_path / "single.bin").write_bytes(bytes(range(256)) * 40)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "single.bin"))
        mlflow.log_artifacts(str(source), artifact_path="mydir")
        mlflow.log_dict({"x": 1, "y": [1, 2]}, "config/params.json")
        mlflow.log_text("hello text", "notes/readme.txt")
        mlflow.log_table(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "tables/t.json")
    run_id = run.info.run_id
    top = sorted((entry.path, entry.is_dir) for entry in client.list_artifacts(run_id))
    assert top == [("config", True), ("mydir", True), ("notes", True), ("single.bin", False), ("tables", True)]
    listed = {entry.path: entry for entry in client.list_artifacts(run_id, "mydir")}
    assert listed["mydir/a.txt"].file_size == 5
    assert listed["mydir/sub"].is_dir
    downloaded = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="mydir", dst_path=str(tmp_path / "out"))
    assert (tmp_path / "out" / "mydir" / "sub" / "b.txt").read_text() == "dir/sub/b.txt"
    assert downloaded.endswith("mydir")
    single = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="single.bin", dst_path=str(tmp_path / "one"))
    assert open(single, "rb").read() == bytes(range(256)) * 40
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {"x": 1, "y": [1, 2]}
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/readme.txt") == "hello text"
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/tables/t.json"))
    assert table["columns"] == ["a", "b"]
    assert "tables/t.json" in client.get_run(run_id).data.tags["mlflow.loggedArtifacts"]


def test_listing_a_file_or_missing_path_is_empty(experiment, client, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "f.txt"))
    assert client.list_artifacts(run.info.run_id, "f.txt") == []
    assert client.list_artifacts(run.info.run_id, "missing-dir") == []
