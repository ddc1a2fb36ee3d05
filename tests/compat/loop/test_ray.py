"""Pipeline steps on a real Ray head node (the `ray` package's, started by scripts/test.sh) through its Jobs
REST API: the project shipped as the job's working directory package, parameters and variables as its
environment, the job's log read into the step's, failures and timeouts (the job stopped on the cluster),
outputs refused unless the project is on a filesystem every node shares, and a server running a registered
pipeline's Ray step."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, binary, free_port  # noqa: E402

RAY = os.environ.get("LOOPLINE_TEST_RAY_ADDRESS")
pytestmark = pytest.mark.skipif(not RAY, reason="needs the Ray head node scripts/test.sh starts")

PIPELINE = """
params: {size: 3}
steps:
  prepare: {run: 'echo prepared > prepared.txt', outputs: [prepared.txt]}
  remote:
    executor: ray
    run: 'cat input.txt && echo "size=$LOOPLINE_PARAM_SIZE step=$LOOPLINE_STEP" && test -f prepared.txt'
    inputs: [input.txt, prepared.txt]
    params: [size]
    resources: {cpus: 1, memory_mb: 64}
"""


def project(directory: Path, pipeline: str) -> Path:
    (directory / ".loopline").mkdir(parents=True)
    (directory / ".git").mkdir()
    (directory / ".git" / "secret").write_text("not shipped")
    (directory / "input.txt").write_text("hello from the project\n")
    (directory / "loopline.yaml").write_text(pipeline)
    return directory


def run(directory, *args):
    return subprocess.run([binary(), "pipeline", "run", *args, "--ray-address", RAY], cwd=directory,
                          capture_output=True, text=True, timeout=600)


def jobs():
    return requests.get(f"{RAY}/api/jobs/", timeout=30).json()


def newest_log(directory: Path, step: str) -> str:
    runs = sorted((directory / ".loopline" / "pipeline-runs").iterdir())
    return (runs[-1] / f"{step}.log").read_text()


def test_a_step_runs_as_a_ray_job_with_the_project_shipped(tmp_path):
    directory = project(tmp_path / "p", PIPELINE)
    result = run(directory)
    assert result.returncode == 0, result.stdout + result.stderr
    log = newest_log(directory, "remote")
    assert "hello from the project" in log and "size=3 step=remote" in log, log
    job = next(j for j in jobs() if j["metadata"].get("loopline_step") == "remote"
               and "size=" in j["entrypoint"] and j["status"] == "SUCCEEDED")
    assert job["runtime_env"]["working_dir"].startswith("gcs://_ray_pkg_")
    assert job["runtime_env"]["env_vars"]["LOOPLINE_PARAM_SIZE"] == "3"
    # Nothing changed: both steps are reused, no new job.
    before = len(jobs())
    again = run(directory)
    assert again.returncode == 0 and "2 cached" in again.stdout, again.stdout
    assert len(jobs()) == before


def test_a_failing_job_and_a_timeout_fail_their_steps_and_the_timed_out_job_is_stopped(tmp_path):
    directory = project(tmp_path / "p", """
steps:
  boom: {executor: ray, run: 'echo going down; exit 3'}
  slow: {executor: ray, run: 'echo started; sleep 600', timeout_seconds: 5}
""")
    result = run(directory)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "JOB_ENTRYPOINT_COMMAND_ERROR" in result.stderr
    assert "ran past its timeout of 5 s" in result.stderr
    assert "going down" in newest_log(directory, "boom")
    slow = [j for j in jobs() if j["metadata"].get("loopline_step") == "slow"]
    assert slow and all(j["status"] == "STOPPED" for j in slow), slow


def test_outputs_need_a_shared_directory(tmp_path):
    directory = project(tmp_path / "p", "steps: {make: {executor: ray, run: 'echo made > made.txt', outputs: [made.txt]}}")
    refused = run(directory)
    assert refused.returncode == 2
    assert "step 'make', outputs" in refused.stderr and "--ray-shared-directory" in refused.stderr
    shared = run(directory, "--ray-shared-directory")
    assert shared.returncode == 0, shared.stdout + shared.stderr
    assert (directory / "made.txt").read_text() == "made\n"


def test_a_server_runs_a_registered_pipelines_ray_step(tmp_path):
    directory = project(tmp_path / "projects" / "p", PIPELINE.replace("prepare:", "prepare0:")
                        .replace("prepared.txt", "prepared0.txt"))
    port = free_port()
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", str(tmp_path / "data"),
                              "--pipeline-root", str(tmp_path / "projects"), "--pipeline-tick-seconds", "1",
                              "--ray-address", RAY], port, tmp_path / "server.log", timeout=60)
    try:
        registered = requests.post(f"{server.url}/api/loopline/v1/pipelines",
                                   json={"directory": str(directory), "name": "on-ray"}, timeout=30)
        assert registered.status_code == 201, registered.text
        started = requests.post(f"{server.url}/api/loopline/v1/pipelines/on-ray/runs", json={}, timeout=30)
        assert started.status_code == 202, started.text
        status_url = server.url + started.json()["run"]["status_url"]
        deadline = time.monotonic() + 300
        while True:
            run_state = requests.get(status_url, timeout=30).json()["run"]
            if run_state["status"] not in ("queued", "running") or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert run_state["status"] == "succeeded", json.dumps(run_state)
        log = requests.get(f"{status_url}/logs/remote", timeout=30).json()
        assert "size=3 step=remote" in log["text"]
    finally:
        server.stop()
