"""Side-by-side benchmark of versioned data and cached pipelines: DVC against Loopline on the same dataset.

1. `dvc add DIR` against `loopline data add DIR` on a directory of N files (hashing and caching every byte);
2. a 10-step pipeline whose every step reads that directory (and the previous step's output), run once by each
   tool, then run again with nothing changed: `dvc repro` against `loopline pipeline run` (the cached no-op
   rerun, where each tool must decide from the file system that nothing changed).
Each tool runs as its own process under /usr/bin/time (wall time and peak RSS include starting it). The dataset
lives in the Loopline project; the DVC project holds hard links to the same files, so both read the same bytes
from a warm page cache.

usage: python bench.py --loopline PATH [--files 10000] [--gigabytes 5] [--work DIR] [--repeat 3] [--only-add]
(adds are the best of --repeat tries, each in a fresh project)

--only-add measures the copying adds alone and removes each tool's project when its tries are done, so the
run holds the dataset and one cache at a time (twice the dataset's size). With --work on a tmpfs it measures
the tools without the disk: on a VM whose disk takes buffered writes slowly, writing the cache's copy is
bounded by the disk for any tool (`cp -r` of the same directory included), and the ratio then says more about
the disk than about the tools. Mount one with `mount -t tmpfs -o size=12G tmpfs DIR` (as root).
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


def new_project(project: pathlib.Path, dataset: pathlib.Path, copy: bool = False) -> None:
    """An empty git repository holding `dataset` as hard links (the same bytes, nothing written), or as copies
    of its own (for linking adds: Loopline copies rather than links a file that has other names)."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["cp", "-r" if copy else "-al", str(dataset), str(project / "dataset")], check=True)


def measure_fresh(command, project, make_project, repeat):
    """As `measure`, each try in a project made anew, after the disk has written out what came before (the
    removed project, the other tool's cache): an add writes gigabytes, and the time to absorb them depends on
    what the disk is still busy with."""
    best = None
    for _ in range(repeat):
        make_project()
        subprocess.run(["sync"], check=True)
        run = measure(command, project)
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
    parser.add_argument("--only-add", action="store_true",
                        help="only the copying adds, each project removed after its tries (see the module text)")
    args = parser.parse_args()
    loopline = str(pathlib.Path(args.loopline).resolve())
    dvc = str(pathlib.Path(sys.executable).with_name("dvc"))
    work = args.work.resolve()
    ours, theirs = work / "loopline", work / "dvc"
    dataset = work / "source" / "dataset"
    generate(dataset, args.files, int(args.gigabytes * (1 << 30)))

    def fresh_dvc(project, cache_type="copy"):
        def make():
            new_project(project, dataset, copy=cache_type != "copy")
            subprocess.run([dvc, "init", "-q"], cwd=project, check=True)
            subprocess.run([dvc, "config", "core.autostage", "false"], cwd=project, check=True)
            subprocess.run([dvc, "config", "cache.type", cache_type], cwd=project, check=True)
            # DVC remembers hashes in a site cache outside the project: kept inside it, each try starts cold.
            subprocess.run([dvc, "config", "core.site_cache_dir", str(project / ".dvc-site")], cwd=project, check=True)
        return make

    def fresh_loopline(project, copy=False):
        def make():
            if args.only_add:
                shutil.rmtree(theirs, ignore_errors=True)
            new_project(project, dataset, copy)
            (project / ".loopline").mkdir()
        return make

    rows = []
    print(f"==> dvc add / loopline data add (best of {args.repeat}, each in a fresh project)", flush=True)
    dvc_add = measure_fresh([dvc, "add", "-q", "dataset"], theirs, fresh_dvc(theirs), args.repeat)
    our_add = measure_fresh([loopline, "data", "add", "dataset"], ours, fresh_loopline(ours), args.repeat)
    rows.append((f"add {args.files} files, {args.gigabytes:g} GiB", "dvc add", dvc_add, our_add))
    if args.only_add:
        shutil.rmtree(ours, ignore_errors=True)
        report(rows, None)
        return

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

    # Both tools can link the cache to the working tree instead of copying into it (DVC's `cache.type
    # hardlink`, Loopline's `--link hardlink`): then adding is hashing alone. Last, since linking makes the
    # shared files read-only.
    print("==> dvc add / loopline data add, linking instead of copying", flush=True)
    linked_ours, linked_theirs = work / "loopline-hardlink", work / "dvc-hardlink"
    dvc_linked = measure_fresh([dvc, "add", "-q", "dataset"], linked_theirs, fresh_dvc(linked_theirs, "hardlink"), args.repeat)
    our_linked = measure_fresh(
        [loopline, "data", "add", "--link", "hardlink", "dataset"], linked_ours, fresh_loopline(linked_ours, copy=True), args.repeat
    )
    rows.append((f"add {args.files} files, hard links", "dvc add", dvc_linked, our_linked))

    report(rows, our_noop)


def report(rows, our_noop) -> None:
    print(f"\n{'task':<32} {'reference':<10} {'their s':>8} {'ours s':>8} {'speed-up':>9} {'their MiB':>10} {'our MiB':>8}")
    for task, tool, their, our in rows:
        print(
            f"{task:<32} {tool:<10} {their[0]:>8.2f} {our[0]:>8.2f} {their[0] / max(our[0], 0.005):>8.1f}x "
            f"{their[1]:>10.0f} {our[1]:>8.0f}"
        )
    if our_noop:
        print(f"\ncache hit decided (whole `loopline pipeline run`, process start included): {our_noop[0] * 1000:.0f} ms")
    print(json.dumps({task: {"theirs": their[:2], "ours": our[:2]} for task, _, their, our in rows}))


if __name__ == "__main__":
    main()
