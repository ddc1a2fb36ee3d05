"""Side-by-side benchmark of monitoring one day of logged traffic in hourly windows: Loopline's monitor
(drift of 20 features, data quality, classification performance from labels and CBPE estimates, per window)
against Evidently (DataDriftPreset + ClassificationPreset per hour) and NannyML's CBPE (per hour) on the same
data. Wall time and peak RSS of each; Loopline's is the `monitor run` that evaluates all 24 windows, measured on
the server process. Loopline's monitors and NannyML run `--repeat` times (default 3; medians reported), Evidently
once (it takes minutes).

usage: python bench.py --data DIR --loopline PATH [--skip-reference-tools | --skip-evidently] [--repeat N]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "compat"))
from loopline_process import LooplineProcess, free_port  # noqa: E402


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a process."""
    process = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"{command[1]} failed:\n{process.stderr[-3000:]}")
    wall, rss_kib = process.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss_kib) / 1024


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def loopline(data: pathlib.Path, binary: str, repeat: int) -> tuple[float, float, list, float]:
    meta = dict(line.split("=") for line in (data / "meta.txt").read_text().split())
    port = free_port()
    os.environ["LOOPLINE_BIN"] = binary
    server = LooplineProcess(["server", "--port", str(port), "--data-dir", str(data / "data"),
                              "--monitor-tick-seconds", "86400"], port, data / "server.log", timeout=60)
    try:
        # Monitors left by earlier runs would be evaluated beside ours when the server starts: remove them.
        for old in requests.get(f"{server.url}/api/loopline/v1/monitors").json()["monitors"]:
            requests.delete(f"{server.url}/api/loopline/v1/monitors/{old['name']}")
        api = f"{server.url}/api/2.0/mlflow"
        requests.post(f"{api}/registered-models/create", json={"name": "bench"})
        versions = requests.post(f"{api}/registered-models/get-latest-versions", json={"name": "bench"}).json()
        if not versions.get("model_versions"):
            created = requests.post(f"{api}/model-versions/create", json={"name": "bench", "source": "mlflow-artifacts:/models/bench"})
            assert created.status_code == 200, created.text
        fitted = subprocess.run([binary, "monitor", "--server", server.url, "reference", "--model", "bench", "--version", "1",
                                 "--data", str(data / "reference.parquet"), "--probability-column", "probability"],
                                capture_output=True, text=True)
        assert fitted.returncode == 0, fitted.stderr
        def timed_run(spec: dict) -> float:
            """Creates a monitor and times its `run` (all 24 windows)."""
            created = requests.post(f"{server.url}/api/loopline/v1/monitors", json=spec)
            assert created.status_code == 200, created.text
            started = time.perf_counter()
            ran = requests.post(f"{server.url}/api/loopline/v1/monitors/{spec['name']}/run", json={}, timeout=3600)
            assert ran.status_code == 200, ran.text
            return time.perf_counter() - started

        name = f"bench-{int(time.time())}"
        full = {"model": "bench", "window": {"seconds": 3600}, "start_ms": int(meta["day_start_ms"]),
                "task": "classification", "output": "prediction", "probability_output": "probability",
                # Labels come within the hour after their predictions: no need to read later feedback.
                "label_delay_seconds": 7200}
        # The like-for-like run for NannyML: estimates only (no drift, no labels, no inputs read).
        estimate = {"model": "bench", "window": {"seconds": 3600}, "start_ms": int(meta["day_start_ms"]),
                    "output": "prediction", "probability_output": "probability", "drift": {"enabled": False}}
        # Each run is a new monitor over the same day; the median of `repeat` runs is reported.
        walls = [timed_run({"name": f"{name}-{i}", **full}) for i in range(repeat)]
        windows = requests.get(f"{server.url}/api/loopline/v1/monitors/{name}-0/windows").json()["windows"]
        days = [w for w in windows if w["rows"] > 0]
        peak = peak_rss_mib(server.process.pid)
        estimate_walls = [timed_run({"name": f"{name}-estimate-{i}", **estimate}) for i in range(repeat)]
        wall, estimate_wall = statistics.median(walls), statistics.median(estimate_walls)
        print(f"loopline runs: monitor {[round(w, 2) for w in walls]} s, estimates only {[round(w, 3) for w in estimate_walls]} s")
        for done in [f"{name}-{i}" for i in range(repeat)] + [f"{name}-estimate-{i}" for i in range(repeat)]:
            requests.delete(f"{server.url}/api/loopline/v1/monitors/{done}")
        return wall, peak, days, estimate_wall
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=pathlib.Path, required=True)
    parser.add_argument("--loopline", required=True)
    parser.add_argument("--skip-reference-tools", action="store_true")
    parser.add_argument("--skip-evidently", action="store_true", help="time NannyML but not Evidently (minutes at 10M rows)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each Loopline monitor and of NannyML (median)")
    args = parser.parse_args()
    reference, analysis = args.data / "reference.parquet", args.data / "analysis.parquet"
    ours = loopline(args.data, args.loopline, args.repeat)
    drifted = [sum(1 for k, v in w["figures"].items() if k.startswith("drift.detected.") and v == 1.0) for w in ours[2]]
    print(f"loopline: {len(ours[2])} windows, {sum(w['rows'] for w in ours[2])} rows; drifted columns per hour {drifted}")
    rows = [("loopline monitor (24 windows)", "-", (ours[0], ours[1])),
            ("loopline estimates only", "-", (ours[3], ours[1]))]
    if not args.skip_reference_tools:
        python = sys.executable
        if not args.skip_evidently:
            rows.append(("evidently drift+classification", "Evidently",
                         measure([python, str(HERE / "run_evidently.py"), str(reference), str(analysis)])))
        nanny = [measure([python, str(HERE / "run_nannyml.py"), str(reference), str(analysis)]) for _ in range(args.repeat)]
        print(f"nannyml runs: {[w for w, _ in nanny]} s")
        rows.append(("nannyml cbpe", "NannyML", (statistics.median(w for w, _ in nanny), max(m for _, m in nanny))))
    print(f"{'run':<34} {'wall s':>8} {'peak MiB':>9} {'Loopline faster':>16}")
    for task, _, (wall, rss) in rows:
        # Evidently against the whole monitor; NannyML's CBPE against the estimates-only monitor.
        baseline = ours[3] if task.startswith("nannyml") else ours[0]
        ratio = "" if task.startswith("loopline") else f"{wall / baseline:.1f}x"
        print(f"{task:<34} {wall:>8.2f} {rss:>9.0f} {ratio:>16}")
    print(json.dumps({task: {"wall_s": wall, "peak_mib": rss} for task, _, (wall, rss) in rows}))


if __name__ == "__main__":
    main()
