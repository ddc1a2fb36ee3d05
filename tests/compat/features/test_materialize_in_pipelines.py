"""Materialisation as a pipeline step (`kind: materialize`), so a schedule or any other trigger keeps the online
store fresh: the step starts an incremental materialisation on the server and follows it to its end."""

import os
import subprocess
import time

import requests

from feast_data import BINARY, LOOPLINE_DEFINITIONS, make_data
from loopline_process import LooplineProcess, free_port

PIPELINE = """
pipeline: refresh-features
steps:
  refresh:
    kind: materialize
    with: {{project: {project}, views: [driver_stats], {window}}}
"""


def test_a_pipeline_step_materialises_from_the_watermark_and_fails_with_the_servers_reason(tmp_path):
    make_data(tmp_path, ties=False)
    (tmp_path / "features.yaml").write_text(LOOPLINE_DEFINITIONS)
    port = free_port()
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", str(tmp_path / "data")], port,
                             tmp_path / "loopline.log")
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    views_url = f"{server.url}/api/loopline/v1/features/projects/compat/views"

    def run(project, window):
        (tmp_path / "loopline.yaml").write_text(PIPELINE.format(project=project, window=window))
        return subprocess.run([BINARY, "pipeline", "run"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)

    try:
        subprocess.run([BINARY, "features", "apply", "-d", "features.yaml"], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
        first = run("compat", 'start: "2024-04-01T00:00:00", end: "2024-05-01T08:00:00"')
        assert first.returncode == 0, first.stdout + first.stderr
        views = {v["name"]: v for v in requests.get(views_url, timeout=30).json()["views"]}
        assert views["driver_stats"]["materialized_until"] == "2024-05-01T08:00:00Z"
        assert views["customer_stats"]["materialized_until"] is None, "only the views the step names"
        lookup = {"features": ["driver_stats:conv_rate"], "entities": {"driver_id": list(range(1000, 1040))}}
        answer = requests.post(f"{server.url}/get-online-features", json=lookup, timeout=30).json()
        assert "PRESENT" in answer["results"][1]["statuses"]

        # The step acts on the server, so it is never skipped as cached: the next run goes on from the watermark.
        second = run("compat", 'end: "2024-05-02T00:00:00"')
        assert second.returncode == 0, second.stdout + second.stderr
        views = {v["name"]: v for v in requests.get(views_url, timeout=30).json()["views"]}
        assert views["driver_stats"]["materialized_until"] == "2024-05-02T00:00:00Z"

        failed = run("nowhere", 'end: "2024-05-02T00:00:00"')
        assert failed.returncode != 0
        assert "nowhere" in failed.stdout + failed.stderr
    finally:
        server.stop()


def test_a_pipeline_registered_on_the_server_runs_the_step_there(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    make_data(project, ties=False)
    (project / "features.yaml").write_text(LOOPLINE_DEFINITIONS)
    (project / "loopline.yaml").write_text(PIPELINE.format(
        project="compat", window='start: "2024-04-01T00:00:00", end: "2024-06-01T00:00:00"'))
    port = free_port()
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", str(tmp_path / "data"),
                              "--pipeline-root", str(tmp_path)], port, tmp_path / "loopline.log")
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    api = f"{server.url}/api/loopline/v1"
    try:
        subprocess.run([BINARY, "features", "apply", "-d", "features.yaml"], cwd=project, env=env, check=True,
                       capture_output=True)
        registered = requests.post(f"{api}/pipelines", json={"name": "refresh", "directory": str(project)}, timeout=30)
        assert registered.status_code in (200, 201), registered.text
        started = requests.post(f"{api}/pipelines/refresh/runs", json={}, timeout=30)
        assert started.status_code in (200, 201, 202), started.text
        run_id = started.json()["run"]["run_id"]
        for _ in range(600):
            run = requests.get(f"{api}/pipeline-runs/{run_id}", timeout=30).json()["run"]
            if run["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert run["status"] == "succeeded", run
        views = {v["name"]: v for v in requests.get(f"{api}/features/projects/compat/views", timeout=30).json()["views"]}
        assert views["driver_stats"]["materialized_until"] == "2024-06-01T00:00:00Z"
    finally:
        server.stop()
