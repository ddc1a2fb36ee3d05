"""`loopline data import-dvc` on a project made by the real `dvc` package: `dvc add` of a file and a
directory, a `dvc.yaml` stage reproduced by `dvc repro`; after the import, Loopline checks out the same bytes
from its own cache and runs the converted pipeline."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LOOPLINE = os.environ.get("LOOPLINE_BIN", "target/debug/loopline")
DVC = str(Path(sys.executable).with_name("dvc"))


def run(command, cwd):
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture()
def dvc_project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    run([DVC, "init", "-q"], root)
    (root / "data.csv").write_bytes(b"x,y\r\n1,2\r\n3,4\r\n")
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    (images / "a.bin").write_bytes(bytes(range(256)) * 40)
    (images / "sub" / "b.bin").write_bytes(b"second file")
    run([DVC, "add", "-q", "data.csv", "images"], root)
    (root / "params.yaml").write_text("prepare:\n  rows: 2\n")
    run([DVC, "stage", "add", "-q", "-n", "prepare", "-d", "data.csv", "-p", "prepare.rows",
         "-o", "prepared.csv", "head -n 2 data.csv > prepared.csv"], root)
    run([DVC, "repro", "-q"], root)
    return root


def test_a_dvc_project_is_imported_and_reproduced(dvc_project):
    root = dvc_project
    before = {name: (root / name).read_bytes() for name in ["data.csv", "images/a.bin", "images/sub/b.bin"]}
    output = run([LOOPLINE, "data", "import-dvc"], root)
    assert "2 output(s) imported, 0 skipped" in output, output
    assert (root / "data.csv.loopline").is_file() and (root / "images.loopline").is_file()
    assert (root / "loopline.yaml").is_file()

    # Without DVC's copies or cache, Loopline restores the same bytes from its own cache.
    (root / "data.csv").unlink()
    shutil.rmtree(root / "images")
    shutil.rmtree(root / ".dvc" / "cache")
    run([LOOPLINE, "data", "checkout"], root)
    for name, content in before.items():
        assert (root / name).read_bytes() == content, name
    status = subprocess.run([LOOPLINE, "data", "status"], cwd=root, capture_output=True, text=True)
    assert status.returncode == 0, status.stdout

    # The converted stage runs as a Loopline step, and a second run is a cache hit.
    (root / "prepared.csv").unlink()
    first = run([LOOPLINE, "pipeline", "run"], root)
    assert "1 ran, 0 cached" in first, first
    assert (root / "prepared.csv").read_bytes() == b"x,y\r\n1,2\r\n"
    second = run([LOOPLINE, "pipeline", "run"], root)
    assert "0 ran, 1 cached" in second, second
