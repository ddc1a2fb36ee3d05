"""`loopline data add|checkout --link hardlink` and `unprotect` as a user runs them: the working files become
the cached objects (one inode, read-only, nothing copied), `unprotect` makes them writable copies again, and
an edit after that leaves the cached version intact."""

import os
import stat
import subprocess
from pathlib import Path

LOOPLINE = os.path.abspath(os.environ.get("LOOPLINE_BIN", "target/debug/loopline"))


def loopline(cwd, *args):
    done = subprocess.run([LOOPLINE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"loopline {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def cached(project: Path):
    return {p.stat().st_ino: p for p in (project / ".loopline" / "cache" / "objects").rglob("*") if p.is_file()}


def test_linked_data_is_the_cache_until_unprotected(tmp_path):
    project = tmp_path / "project"
    images = project / "images"
    images.mkdir(parents=True)
    (project / ".loopline").mkdir()
    for index in range(3):
        (images / f"{index}.bin").write_bytes(os.urandom(50_000 + index))
    loopline(project, "data", "add", "--link", "hardlink", "images")
    objects = cached(project)
    for index in range(3):
        info = (images / f"{index}.bin").stat()
        assert info.st_ino in objects and info.st_nlink == 2
        assert stat.S_IMODE(info.st_mode) & 0o222 == 0
    assert "up to date" in loopline(project, "data", "status")

    assert "3 file(s) made writable copies" in loopline(project, "data", "unprotect", "images")
    original = (images / "0.bin").read_bytes()
    (images / "0.bin").write_bytes(b"edited in place")
    assert original in [p.read_bytes() for p in cached(project).values()]

    # Checked out again by links: the version's bytes, shared with the cache once more.
    loopline(project, "data", "checkout", "--force", "--link", "hardlink", "images")
    assert (images / "0.bin").read_bytes() == original
    assert (images / "0.bin").stat().st_ino in cached(project)
    # A plain checkout of a deleted file gives a writable copy of its own.
    (images / "1.bin").unlink()
    loopline(project, "data", "checkout", "images")
    assert (images / "1.bin").stat().st_ino not in cached(project)
    assert stat.S_IMODE((images / "1.bin").stat().st_mode) & 0o200
