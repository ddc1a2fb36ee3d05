"""What token auth costs on serving: two `loopline server` processes on the same machine, one without auth and
one with `--auth basic,token`, serve the same registered XGBoost model (native evaluator) on
`/models/{name}/versions/1/invocations`. On the second, every request carries an application token: a user
with only USE on that model, holding a token whose only scope is `predict`. The load generator alternates
between the two for --rounds rounds at each concurrency (swapping which goes first each round); each figure is
the median of its rounds. Two further columns are steadier on a shared machine: the cost taken round by round
(each auth run against the no-auth run next to it in time, median of those ratios), and the server's CPU time
per request (user + system of the whole process, from /proc, so it counts every thread the request wakes).

usage: python bench/serving/compare_auth.py --loopline target/release/loopline \
           --loadgen bench/serving/loadgen/target/release/loopline-loadgen [--seconds 10] [--rounds 3] \
           [--pairs 1] [--null]

Two processes of one binary stay a few percent apart for their whole life on a small VM, whichever has
auth; --pairs N starts N fresh pairs one after another, and --null (auth off on both) shows what the
method reads when there is nothing to find.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from bench import free_port, make_models  # noqa: E402

ADMIN = ("admin", "bench admin password")
MODEL = "bench-xgboost"


def start(binary, auth, workdir):
    port = free_port()
    command = [binary, "server", "--port", str(port), "--data-dir", workdir]
    env = dict(os.environ)
    if auth:
        command += ["--auth", "basic,token"]
        env["LOOPLINE_ADMIN_PASSWORD"] = ADMIN[1]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(Path(workdir) / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy; see {workdir}/server.log")


def register(url, model_path, auth):
    """Logs and registers the model with the stock client (as the admin when auth is on)."""
    import mlflow
    import mlflow.xgboost

    if auth:
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
    try:
        mlflow.set_tracking_uri(url)
        mlflow.set_experiment("serving-auth-bench")
        with mlflow.start_run():
            mlflow.xgboost.log_model(mlflow.xgboost.load_model(str(model_path)), name="model", registered_model_name=MODEL)
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)


def application_token(url):
    """A user who may only call the model, and a predict-only token of theirs."""
    from mlflow.server import get_app_client

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
    try:
        admin = get_app_client("basic-auth", tracking_uri=url)
        admin.create_user("scoring-app", "scoring app password")
        admin.grant_user_permission("scoring-app", "registered_model", MODEL, "USE")
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    issued = requests.post(f"{url}/api/loopline/v1/access/tokens", json={"name": "app", "scopes": ["predict"]},
                           auth=("scoring-app", "scoring app password"), timeout=30)
    issued.raise_for_status()
    return f"Bearer {issued.json()['token']}"


def cpu_seconds(pid):
    """User + system CPU time of a process and all its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(loadgen, url, body, concurrency, seconds, authorization):
    env = dict(os.environ)
    env.pop("LOADGEN_AUTHORIZATION", None)
    if authorization:
        env["LOADGEN_AUTHORIZATION"] = authorization
    out = subprocess.run([loadgen, url, str(body), str(concurrency), str(seconds)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout)


def start_pair(args, directory, model_path, null):
    """A server without auth and one with token auth (with --null, a second one without), model registered."""
    servers = {}
    try:
        for name, auth in [("no auth", False), ("token auth", not null)]:
            workdir = tempfile.mkdtemp(prefix="server-", dir=directory)
            process, url = start(os.path.abspath(args.loopline), auth, workdir)
            servers[name] = (process, url, None)
            register(url, model_path, auth)
            servers[name] = (process, url, application_token(url) if auth else None)
    except BaseException:
        stop(servers)
        raise
    return servers


def stop(servers):
    for process, _, _ in servers.values():
        process.terminate()
        process.wait(timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loopline", required=True)
    parser.add_argument("--loadgen", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per pair of servers")
    parser.add_argument("--pairs", type=int, default=1, help="pairs of freshly started servers")
    parser.add_argument("--null", action="store_true", help="auth off on both servers: the method's own noise")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    directory = tempfile.mkdtemp(prefix="loopline-bench-serving-auth-")
    paths, body, _ = make_models(directory)
    endpoint = f"/models/{MODEL}/versions/1/invocations"
    names = ["no auth", "token auth"]
    figures = {(name, level): [] for name in names for level in levels}
    for pair in range(args.pairs):
        # Two processes of the same binary differ by a few percent for as long as they live (where their
        # threads and memory landed): fresh pairs spread that over both sides.
        servers = start_pair(args, directory, paths["xgboost"], args.null)
        try:
            for name, (_, url, authorization) in servers.items():
                warm = load(args.loadgen, url + endpoint, body, 2, 2, authorization)
                if warm["errors"] or not warm["requests"]:
                    raise RuntimeError(f"{name}: the warm-up failed: {warm}")
            for number in range(args.rounds):
                for level in levels:
                    # Each round swaps which server goes first, so neither always runs on a warmer machine.
                    order = list(servers.items()) if number % 2 == 0 else list(reversed(servers.items()))
                    for name, (process, url, authorization) in order:
                        before = cpu_seconds(process.pid)
                        result = load(args.loadgen, url + endpoint, body, level, args.seconds, authorization)
                        result["cpu_us"] = (cpu_seconds(process.pid) - before) * 1e6 / max(result["requests"], 1)
                        if result["errors"]:
                            raise RuntimeError(f"{name} c={level}: {result['errors']} requests failed")
                        figures[(name, level)].append(result)
                        print(f"  pair {pair + 1} round {number + 1} c={level:<3} {name:<10} {result['rps']:>10.1f} req/s  "
                              f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                              f"server CPU {result['cpu_us']:.0f} us/request", flush=True)
        finally:
            stop(servers)
    if args.null:
        print("\n--null: both servers run without auth; the cost column shows the method's noise.")
    print(f"\n{'concurrency':12} {'no auth (req/s)':>16} {'token auth (req/s)':>19} {'cost':>8} {'paired':>8} "
          f"{'p50 no auth':>12} {'p50 token':>10} {'CPU/req no auth':>16} {'token':>8}")
    for level in levels:
        plain_runs, token_runs = figures[("no auth", level)], figures[("token auth", level)]
        median = lambda runs, key: statistics.median(run[key] for run in runs)  # noqa: E731
        plain, token = median(plain_runs, "rps"), median(token_runs, "rps")
        paired = statistics.median(1 - t["rps"] / p["rps"] for p, t in zip(plain_runs, token_runs))
        print(f"{level:<12} {plain:16.1f} {token:19.1f} {(1 - token / plain) * 100:+7.1f}% {paired * 100:+7.1f}% "
              f"{median(plain_runs, 'p50_ms'):10.2f}ms {median(token_runs, 'p50_ms'):8.2f}ms "
              f"{median(plain_runs, 'cpu_us'):13.0f} us {median(token_runs, 'cpu_us'):5.0f} us")
    print("\ncost: throughput lost with token auth on (negative: none measured), from the medians of all rounds;")
    print("paired: the median of each round's own cost; CPU/req: the server process's CPU time per request.")


if __name__ == "__main__":
    main()
