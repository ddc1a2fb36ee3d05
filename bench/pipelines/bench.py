"""Side-by-side benchmark of versioned data and cached pipelines: DVC against Loopline on the same dataset.

1. `dvc add DIR` against `loopline data add DIR` on a directory of N files (hashing and caching every byte);
2. a 10-step pipeline whose every step reads that directory (and the previous step's output), run once by each
   tool, then run again with nothing changed: `dvc repro` against `loopline pipeline run` (the cached no-op
   rerun, where each tool must decide from the file system that nothing changed).
Each tool runs as its own process under /usr/bin/time (wall time and peak RSS include starting it). The dataset
lives in the Loopline project; the DVC project holds hard links to the same files, so both read the same bytes
from a warm page cache.

usage: python bench.py --loopline PATH [--files 10000] [--gigabytes 5] [--work DIR] [--repeat 3]
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys

STEPS = 10


def measure(command, cwd, repeat=1):
    """Best wall seconds, its peak RSS (MiB), and the output of that run; fails loudly on a non-zero exit."""
    best = None
    for _ in range(repeat):
        process = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], cwd=cwd, capture_output=True, text=True)
        *output, timing = process.stderr.strip().splitlines()
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed in {cwd}:\n{process.stdout}\n{process.stderr}")
        wall, rss_kib = timing.split()
        run = (float(wall), int(rss_kib) / 1024, process.stdout + "\n".join(output))
        if best is None or run[0] < best[0]:
            best = run
    return best


def generate(directory: pathlib.Path, files: int, total_bytes: int) -> None:
    marker = directory / ".complete"
    if marker.exists() and marker.read_text() == f"{files} {total_bytes}":
        return
    shutil.rmtree(directory, ignore_errors=True)
    size = total_bytes // files
    block = os.urandom(1 << 20)
    print(f"==> writing {files} files of {size} bytes into {directory}", flush=True)
    for index in range(files):
        sub = directory / f"part-{index % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        with open(sub / f"{index:05d}.bin", "wb") as out:
            out.write(index.to_bytes(8, "little"))
            remaining = size - 8
            while remaining > 0:
                chunk = block[: min(remaining, len(block))]
                out.write(chunk)
                remaining -= len(chunk)
    marker.write_text(f"{files} {total_bytes}")


def pipelines(loopline_dir: pathlib.Path, dvc_dir: pathlib.Path) -> None:
    """The same 10 steps for both tools: step i reads the dataset and out/{i-1}, writes out/{i}."""
    loopline_steps, dvc_stages = [], []
    for index in range(STEPS):
        command = f"mkdir -p out && echo step {index} > out/{index}.txt"
        deps = ["dataset"] + ([f"out/{index - 1}.txt"] if index else [])
        loopline_steps.append(
            f"  s{index}:\n    run: '{command}'\n    inputs: {json.dumps(deps)}\n    outputs: [out/{index}.txt]\n"
        )
        dvc_stages.append(
            f"  s{index}:\n    cmd: {command}\n    deps: {json.dumps(deps)}\n    outs: [out/{index}.txt]\n"
        )
    (loopline_dir / "loopline.yaml").write_text("pipeline: bench\nsteps:\n" + "".join(loopline_steps))
    (dvc_dir / "dvc.yaml").write_text("stages:\n" + "".join(dvc_stages))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loopline", required=True)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--gigabytes", type=float, default=5.0)
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("target/bench-pipelines"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    loopline = str(pathlib.Path(args.loopline).resolve())
    dvc = str(pathlib.Path(sys.executable).with_name("dvc"))
    work = args.work.resolve()
    ours, theirs = work / "loopline", work / "dvc"
    generate(work / "source" / "dataset", args.files, int(args.gigabytes * (1 << 30)))
    for project in (ours, theirs):
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
        # Hard links: both projects hold the same bytes without writing them twice.
        subprocess.run(["cp", "-al", str(work / "source" / "dataset"), str(project / "dataset")], check=True)
    (ours / ".loopline").mkdir()
    subprocess.run([dvc, "init", "-q"], cwd=theirs, check=True)
    subprocess.run([dvc, "config", "core.autostage", "false"], cwd=theirs, check=True)

    rows = []
    print("==> dvc add / loopline data add", flush=True)
    dvc_add = measure([dvc, "add", "-q", "dataset"], theirs)
    our_add = measure([loopline, "data", "add", "dataset"], ours)
    rows.append((f"add {args.files} files, {args.gigabytes:g} GiB", "dvc add", dvc_add, our_add))

    pipelines(ours, theirs)
    print("==> first pipeline runs (every step runs)", flush=True)
    dvc_first = measure([dvc, "repro", "-q"], theirs)
    our_first = measure([loopline, "pipeline", "run"], ours)
    rows.append((f"first run, {STEPS} steps", "dvc repro", dvc_first, our_first))
    print("==> no-op reruns (nothing changed)", flush=True)
    dvc_noop = measure([dvc, "repro", "-q"], theirs, args.repeat)
    our_noop = measure([loopline, "pipeline", "run"], ours, args.repeat)
    assert f"0 ran, {STEPS} cached" in our_noop[2], our_noop[2]
    rows.append((f"cached rerun, {STEPS} steps", "dvc repro", dvc_noop, our_noop))

    print(f"\n{'task':<32} {'reference':<10} {'their s':>8} {'ours s':>8} {'speed-up':>9} {'their MiB':>10} {'our MiB':>8}")
    for task, tool, their, our in rows:
        print(
            f"{task:<32} {tool:<10} {their[0]:>8.2f} {our[0]:>8.2f} {their[0] / max(our[0], 0.005):>8.1f}x "
            f"{their[1]:>10.0f} {our[1]:>8.0f}"
        )
    print(f"\ncache hit decided (whole `loopline pipeline run`, process start included): {our_noop[0] * 1000:.0f} ms")
    print(json.dumps({task: {"theirs": their[:2], "ours": our[:2]} for task, _, their, our in rows}))


if __name__ == "__main__":
    main()
