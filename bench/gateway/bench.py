"""LLM gateway benchmark: Loopline's gateway and the LiteLLM proxy in front of the same fake provider
(crates/test-support's loopline-fake-llm, release build), driven by one closed-loop load generator
(bench/serving/loadgen) at 1, 64 and 512 concurrent clients, against the provider called directly as the
baseline. Three workloads: an instant provider, a provider answering after 50 ms, and the same streaming its
answer token by token; then the 50 ms provider at fixed rates (`--rates`, open loop, default 1,000 req/s), where
the latency a gateway adds is read without the closed loop's queueing. Prints req/s, p50 and p99, the latency each gateway adds over the direct call, memory,
and the throughput ratio; `--soak-seconds N` then drives Loopline for N seconds sampling its memory.

usage: python bench.py --loopline target/release/loopline --fake target/release/examples/loopline-fake-llm \
         --loadgen bench/serving/loadgen/target/release/loopline-loadgen --litellm .venv-litellm/bin/litellm
"""

import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

MASTER_KEY = "sk-bench-" + "0" * 32
MESSAGE = "the quick brown fox jumps over the lazy dog and keeps running across the wide green field today"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid):
    """Resident memory of a process and its descendants (LiteLLM's workers), in MiB."""
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{current}/task/{current}/children") as children:
                pids.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            continue
    return total / 1024


def wait_ready(url, process, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except Exception:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not become ready in {timeout} s")


# With --pin: the gateway under test on one core, the load generator and the fake providers on the other, as
# if on machines of their own; without it every process shares both cores.
SUT_CPU, DRIVER_CPU = "1", "0"
PIN = False


def pinned(command, cpu):
    return ["taskset", "-c", cpu, *command] if PIN else command


def start_fake(binary, latency_ms, token_ms):
    command = [binary, "--port", "0", "--latency-ms", str(latency_ms), "--token-ms", str(token_ms)]
    process = subprocess.Popen(pinned(command, DRIVER_CPU),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base_url = process.stdout.readline().strip()
    return process, base_url


def load(loadgen, url, body, concurrency, seconds, authorization=None, rate=None):
    env = {**os.environ}
    env.pop("LOADGEN_RATE", None)
    if authorization:
        env["LOADGEN_AUTHORIZATION"] = authorization
    if rate:
        env["LOADGEN_RATE"] = str(rate)
    out = subprocess.run(pinned([loadgen, url, str(body), str(concurrency), str(seconds)], DRIVER_CPU),
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def bodies(directory):
    paths = {}
    for name, stream in [("plain", False), ("stream", True)]:
        body = {"model": "MODEL", "messages": [{"role": "user", "content": MESSAGE}], "max_tokens": 64}
        if stream:
            body["stream"] = True
        paths[name] = body
    files = {}
    for model in ["instant", "slow"]:
        for name, body in paths.items():
            path = directory / f"{model}-{name}.json"
            path.write_text(json.dumps({**body, "model": model}))
            files[(model, name)] = path
            direct = directory / f"direct-{model}-{name}.json"
            direct.write_text(json.dumps({**body, "model": "m"}))
            files[("direct", model, name)] = direct
    return files


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loopline", required=True)
    parser.add_argument("--fake", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--litellm", help="the litellm CLI (skipped when absent)")
    parser.add_argument("--litellm-workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--levels", default="1,64,512")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--token-ms", type=int, default=5)
    parser.add_argument("--soak-seconds", type=int, default=0)
    parser.add_argument("--trace-retention-seconds", type=int, default=0,
                        help="Loopline's settings.trace_retention_seconds (0: its default, 7 days); a soak at "
                             "1,200 calls/s writes about 0.75 GB of traces a minute, so bound it for long soaks")
    parser.add_argument("--rates", default="1000",
                        help="open-loop rates (req/s, comma-separated) at which the added latency is measured on the "
                             "slow provider; empty for none")
    parser.add_argument("--rate-providers", default="slow",
                        help="which providers the open-loop rates run against: slow, instant, or both (comma-separated)")
    parser.add_argument("--rate-runs", type=int, default=1,
                        help="how many times each open-loop rate is measured (a p99 of one 30 s run moves by "
                             "tenths of a millisecond from run to run on a shared machine)")
    parser.add_argument("--no-traces", action="store_true",
                        help="Loopline's settings.traces false: calls are not written as MLflow traces")
    parser.add_argument("--pin", action="store_true",
                        help="the gateways on CPU 1, the load generator and the providers on CPU 0 (taskset)")
    args = parser.parse_args()
    global PIN
    PIN = args.pin
    levels = [int(level) for level in args.levels.split(",")]
    directory = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    files = bodies(directory)
    instant, instant_url = start_fake(args.fake, 0, 0)
    slow, slow_url = start_fake(args.fake, args.latency_ms, args.token_ms)
    processes = [instant, slow]
    (directory / "gateway.yaml").write_text(
        f"providers:\n  - {{name: instant, kind: openai-compatible, base_url: '{instant_url}'}}\n"
        f"  - {{name: slow, kind: openai-compatible, base_url: '{slow_url}'}}\n"
        "models:\n  - {name: instant, deployments: [{provider: instant, model: m}], retries: 0}\n"
        "  - {name: slow, deployments: [{provider: slow, model: m}], retries: 0}\n"
        + "settings: {" + ", ".join(
            ([f"trace_retention_seconds: {args.trace_retention_seconds}"] if args.trace_retention_seconds else [])
            + (["traces: false"] if args.no_traces else [])) + "}\n")
    port = free_port()
    loopline = subprocess.Popen(pinned([args.loopline, "server", "--port", str(port), "--data-dir", str(directory / "data"),
                                        "--gateway-config", str(directory / "gateway.yaml")], SUT_CPU),
                                stdout=subprocess.DEVNULL, stderr=open(directory / "loopline.log", "w"))
    processes.append(loopline)
    loopline_url = f"http://127.0.0.1:{port}"
    wait_ready(f"{loopline_url}/health", loopline)
    targets = [("direct", None, None), ("loopline", loopline_url, loopline)]
    authorization = {}
    if args.litellm and Path(args.litellm).exists():
        (directory / "litellm.yaml").write_text(
            "model_list:\n"
            f"  - model_name: instant\n    litellm_params: {{model: openai/m, api_base: '{instant_url}', api_key: fake}}\n"
            f"  - model_name: slow\n    litellm_params: {{model: openai/m, api_base: '{slow_url}', api_key: fake}}\n"
            "litellm_settings: {telemetry: false, drop_params: true}\n")
        litellm_port = free_port()
        litellm = subprocess.Popen(pinned([args.litellm, "--config", str(directory / "litellm.yaml"), "--port",
                                           str(litellm_port), "--num_workers", str(args.litellm_workers)], SUT_CPU),
                                   stdout=open(directory / "litellm.log", "w"), stderr=subprocess.STDOUT,
                                   env={**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
                                        "LITELLM_MASTER_KEY": MASTER_KEY})
        processes.append(litellm)
        litellm_url = f"http://127.0.0.1:{litellm_port}"
        wait_ready(f"{litellm_url}/health/liveliness", litellm, timeout=300)
        targets.append(("litellm", litellm_url, litellm))
    # LiteLLM refuses to start without a master key: its calls carry it.
    authorization = {"litellm": f"Bearer {MASTER_KEY}"}
    rows = []
    try:
        for model, name, label in [("instant", "plain", "instant provider"), ("slow", "plain", f"{args.latency_ms} ms provider"),
                                   ("slow", "stream", f"{args.latency_ms} ms provider, streamed")]:
            print(f"\n{label}", flush=True)
            for target, url, process in targets:
                if target == "direct":
                    endpoint = (instant_url if model == "instant" else slow_url) + "/chat/completions"
                    body = files[("direct", model, name)]
                else:
                    endpoint = f"{url}/v1/chat/completions"
                    body = files[(model, name)]
                auth = authorization.get(target)
                load(args.loadgen, endpoint, body, 4, 2, auth)  # warm-up
                for concurrency in levels:
                    result = load(args.loadgen, endpoint, body, concurrency, args.seconds, auth)
                    result.update(workload=label, target=target, concurrency=concurrency,
                                  rss_mib=rss_mib(process.pid) if process else 0.0)
                    rows.append(result)
                    print(f"  {target:<9} c={concurrency:<4} {result['rps']:>9.1f} req/s  p50 {result['p50_ms']:8.2f} ms"
                          f"  p99 {result['p99_ms']:8.2f} ms  errors {result['errors']:<6} rss {result['rss_mib']:.0f} MiB",
                          flush=True)
        for rate in [int(rate) for rate in args.rates.split(",") if rate]:
            for run in range(1, args.rate_runs + 1):
                for provider in args.rate_providers.split(","):
                    fixed_rate(args, rows, rate, targets, authorization, files,
                               {"slow": slow_url, "instant": instant_url}[provider], provider,
                               run if args.rate_runs > 1 else None)
        summary(rows)
        if args.soak_seconds:
            soak(args, loopline, f"{loopline_url}/v1/chat/completions", files[("slow", "plain")])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    (directory / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\nresults: {directory / 'results.json'}")


def fixed_rate(args, rows, rate, targets, authorization, files, provider_url, provider, run):
    """The added latency at a fixed request rate (open loop) on one provider: 128 connections, each sending
    every 128/rate seconds, latency counted from each request's scheduled instant."""
    label = (f"{args.latency_ms} ms provider" if provider == "slow" else "instant provider") + f" at {rate} req/s"
    if run is not None:
        label += f", run {run}"
    print(f"\n{label} (open loop)", flush=True)
    for target, url, process in targets:
        if target == "direct":
            endpoint, body = f"{provider_url}/chat/completions", files[("direct", provider, "plain")]
        else:
            endpoint, body = f"{url}/v1/chat/completions", files[(provider, "plain")]
        result = load(args.loadgen, endpoint, body, 128, args.seconds * 3, authorization.get(target), rate)
        result.update(workload=label, target=target, concurrency=128,
                      rss_mib=rss_mib(process.pid) if process else 0.0)
        rows.append(result)
        print(f"  {target:<9} {result['rps']:>9.1f} req/s  p50 {result['p50_ms']:8.2f} ms  p99 {result['p99_ms']:8.2f} ms"
              f"  max {result['max_ms']:8.2f} ms  errors {result['errors']:<6} rss {result['rss_mib']:.0f} MiB"
              + (f"  own time p99 {result['overhead_p99_ms']:.3f} ms" if result.get("overhead_p99_ms") is not None else ""),
              flush=True)


def summary(rows):
    def find(workload, target, concurrency):
        return next((row for row in rows if row["workload"] == workload and row["target"] == target
                     and row["concurrency"] == concurrency), None)
    print("\nadded over the direct call (p50 / p99, ms)")
    for workload in dict.fromkeys(row["workload"] for row in rows):
        for concurrency in sorted({row["concurrency"] for row in rows if row["workload"] == workload}):
            direct = find(workload, "direct", concurrency)
            parts = []
            for target in ["loopline", "litellm"]:
                row = find(workload, target, concurrency)
                if row and direct:
                    parts.append(f"{target} {row['p50_ms'] - direct['p50_ms']:+8.2f} / {row['p99_ms'] - direct['p99_ms']:+8.2f}")
                    if row.get("overhead_p99_ms") is not None:
                        parts.append(f"(its own time p50 {row['overhead_p50_ms']:.3f} / p99 {row['overhead_p99_ms']:.3f})")
            print(f"  {workload:<28} c={concurrency:<4} " + "   ".join(parts))
    print("\nmost requests per second (any concurrency)")
    for workload in dict.fromkeys(row["workload"] for row in rows if " req/s" not in row["workload"]):
        best = {target: max((row["rps"] for row in rows if row["workload"] == workload and row["target"] == target),
                            default=0.0) for target in ["direct", "loopline", "litellm"]}
        ratio = f"  ratio {best['loopline'] / best['litellm']:.1f}x" if best["litellm"] else ""
        print(f"  {workload:<28} direct {best['direct']:9.1f}  loopline {best['loopline']:9.1f}  "
              f"litellm {best['litellm']:9.1f}{ratio}")
    peak = {target: max((row["rss_mib"] for row in rows if row["target"] == target), default=0.0)
            for target in ["loopline", "litellm"]}
    print(f"\npeak memory: loopline {peak['loopline']:.0f} MiB, litellm {peak['litellm']:.0f} MiB")


def soak(args, process, url, body):
    print(f"\nsoak: {args.soak_seconds} s at 64 clients on the {args.latency_ms} ms provider", flush=True)
    samples = []
    started = time.time()
    while time.time() - started < args.soak_seconds:
        result = load(args.loadgen, url, body, 64, min(60, args.soak_seconds))
        samples.append(rss_mib(process.pid))
        with open(f"/proc/{process.pid}/status") as status:
            parts = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status
                     if line.startswith(("RssAnon:", "RssFile:"))}
        print(f"  {time.time() - started:7.0f} s  {result['rps']:8.1f} req/s  errors {result['errors']}  "
              f"rss {samples[-1]:.1f} MiB (heap {parts.get('RssAnon', 0):.1f}, mapped files "
              f"{parts.get('RssFile', 0):.1f})  p99 {result['p99_ms']:.2f} ms", flush=True)
    print(f"  rss from {samples[0]:.1f} to {samples[-1]:.1f} MiB (max {max(samples):.1f})")


if __name__ == "__main__":
    main()
