"""Side-by-side benchmark of drift reports (Evidently vs `loopline drift`) and validation (Great Expectations vs
`loopline validate`) on the same Parquet files. Each tool runs as its own process under /usr/bin/time, so wall
time and peak RSS include reading the files and starting the interpreter or binary.

usage: python bench.py --data DIR --loopline PATH [--repeat N]
"""

import argparse
import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def measure(command: list[str], repeat: int) -> tuple[float, float, int]:
    """Best wall seconds, peak RSS (MiB) of that run, and the exit code."""
    best = None
    for _ in range(repeat):
        process = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True)
        wall, rss_kib = process.stderr.strip().splitlines()[-1].split()
        run = (float(wall), int(rss_kib) / 1024, process.returncode)
        if best is None or run[0] < best[0]:
            best = run
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=pathlib.Path, required=True)
    parser.add_argument("--loopline", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reference, current = args.data / "reference.parquet", args.data / "current.parquet"
    suite = HERE / "suite.json"
    python = sys.executable
    rows = []
    evidently = measure([python, str(HERE / "run_evidently.py"), str(reference), str(current)], 1)
    loopline_drift = measure(
        [args.loopline, "drift", "--reference", str(reference), "--current", str(current), "--json", "/dev/null"],
        args.repeat,
    )
    rows.append(("drift report (20 columns)", "Evidently DataDriftPreset", evidently, loopline_drift))
    gx = measure([python, str(HERE / "run_gx.py"), str(current), str(suite)], 1)
    loopline_validate = measure(
        [args.loopline, "validate", str(current), "--suite", str(suite), "--json", "/dev/null"], args.repeat
    )
    rows.append(("validation (15 expectations)", "great-expectations", gx, loopline_validate))
    print(f"{'task':<30} {'reference tool':<26} {'their s':>8} {'ours s':>8} {'speed-up':>9} {'their MiB':>10} {'our MiB':>8}")
    for task, tool, theirs, ours in rows:
        print(
            f"{task:<30} {tool:<26} {theirs[0]:>8.2f} {ours[0]:>8.2f} {theirs[0] / ours[0]:>8.1f}x "
            f"{theirs[1]:>10.0f} {ours[1]:>8.0f}"
        )
    print(json.dumps({task: {"theirs": theirs, "ours": ours} for task, _, theirs, ours in rows}))


if __name__ == "__main__":
    main()
