"""What token auth costs on serving (and, with --workload log-metric, on tracking writes): two `loopline server` processes on the same machine, one without auth and
one with `--auth basic,token`, serve the same registered XGBoost model (native evaluator) on
`/models/{name}/versions/1/invocations`. On the second, every request carries an application token: a user
with only USE on that model, holding a token whose only scope is `predict`. The load generator alternates
between the two for --rounds rounds at each concurrency (swapping which goes first each round); each figure is
the median of its rounds. Two further columns are steadier on a shared machine: the cost taken round by round
(each auth run against the no-auth run next to it in time, median of those ratios), and the server's CPU time
per request (user + system of the whole process, from /proc, so it counts every thread the request wakes).

usage: python bench/serving/compare_auth.py --loopline target/release/loopline \
           --loadgen bench/serving/loadgen/target/release/loopline-loadgen [--seconds 10] [--rounds 3] \
           [--pairs 1] [--null] [--pin] [--callgrind SECONDS]

Two processes of one binary stay a few percent apart for their whole life on a small VM, whichever has
auth; --pairs N starts N fresh pairs one after another, and --null (auth off on both) shows what the
method reads when there is nothing to find. --pin runs the servers on CPU 1 and the load generator on CPU 0
(`taskset`), so each server has a core to itself and its CPU time per request is its own work.

On a small shared VM throughput and CPU time swing by more than the few percent auth costs. --callgrind N
counts instead: both servers run under valgrind's callgrind (instrumentation off until the load starts), each
gets N seconds of load at concurrency 4, and the instructions each executed per request are printed, in all
and without the prediction log's writer (which writes a Parquet file every 10,000 rows, so whether a window
holds one of those writes decides much of the total). Needs valgrind.

--workload log-metric calls MLflow's `runs/log-metric` on one run instead (a change, so with auth the guard
reads the run id from the body, and records the call in the audit trail), as a user holding EDIT on the
experiment with a write-scoped token.
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


SERVER_CPU, LOADGEN_CPU = "1", "0"


def pinned(command, cpu, pin):
    return ["taskset", "-c", cpu, *command] if pin else command


def start(binary, auth, workdir, pin=False, callgrind=False):
    port = free_port()
    command = pinned([binary, "server", "--port", str(port), "--data-dir", workdir], SERVER_CPU, pin)
    env = dict(os.environ)
    if callgrind:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={workdir}/callgrind.out", *command]
        # The server runs itself again once to set this when it is unset, which valgrind would not follow.
        env.setdefault("MIMALLOC_PURGE_DELAY", "0")
    if auth:
        command += ["--auth", "basic,token"]
        env["LOOPLINE_ADMIN_PASSWORD"] = ADMIN[1]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(Path(workdir) / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(f"{url}/health", timeout=30 if callgrind else 1).status_code == 200:
                return process, url
        except (requests.ConnectionError, requests.Timeout):
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


def user_token(url, username, kind, resource, level, scope):
    """A user holding `level` on one resource, and a token of theirs with one scope (an Authorization value)."""
    from mlflow.server import get_app_client

    password = f"{username} password"
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
    try:
        admin = get_app_client("basic-auth", tracking_uri=url)
        admin.create_user(username, password)
        admin.grant_user_permission(username, kind, resource, level)
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    issued = requests.post(f"{url}/api/loopline/v1/access/tokens", json={"name": username, "scopes": [scope]},
                           auth=(username, password), timeout=30)
    issued.raise_for_status()
    return f"Bearer {issued.json()['token']}"


def application_token(url):
    """A user who may only call the model, and a predict-only token of theirs."""
    return user_token(url, "scoring-app", "registered_model", MODEL, "USE", "predict")


def cpu_seconds(pid):
    """User + system CPU time of a process and all its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(loadgen, url, body, concurrency, seconds, authorization, pin=False):
    env = dict(os.environ)
    env.pop("LOADGEN_AUTHORIZATION", None)
    if authorization:
        env["LOADGEN_AUTHORIZATION"] = authorization
    command = pinned([loadgen, url, str(body), str(concurrency), str(seconds)], LOADGEN_CPU, pin)
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def tracking_target(url, auth, workdir):
    """A run to log metrics to, and (with auth) a write-scoped token of a user holding EDIT on its experiment:
    the target, the body file and the Authorization header of `log-metric` calls."""
    admin = ADMIN if auth else None
    experiment = requests.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": "tracking-auth-bench"},
                               auth=admin, timeout=30)
    experiment.raise_for_status()
    experiment_id = experiment.json()["experiment_id"]
    run = requests.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, auth=admin,
                        timeout=30)
    run.raise_for_status()
    body = Path(workdir) / "log-metric.json"
    body.write_text(json.dumps({"run_id": run.json()["run"]["info"]["run_id"], "key": "loss", "value": 0.25,
                                "timestamp": 1700000000000, "step": 0}))
    authorization = user_token(url, "trainer", "experiment", experiment_id, "EDIT", "write") if auth else None
    return f"{url}/api/2.0/mlflow/runs/log-metric", body, authorization


def start_pair(args, directory, model_path, model_body, null):
    """A server without auth and one with token auth (with --null, a second one without), each with what the
    workload calls: (process, target URL, body file, Authorization header)."""
    servers = {}
    try:
        for name, auth in [("no auth", False), ("token auth", not null)]:
            workdir = tempfile.mkdtemp(prefix="server-", dir=directory)
            process, url = start(os.path.abspath(args.loopline), auth, workdir, args.pin, bool(args.callgrind))
            servers[name] = (process, url, None, None)
            if args.workload == "log-metric":
                target, body, authorization = tracking_target(url, auth, workdir)
                servers[name] = (process, target, body, authorization)
            else:
                register(url, model_path, auth)
                target = f"{url}/models/{MODEL}/versions/1/invocations"
                servers[name] = (process, target, model_body, application_token(url) if auth else None)
    except BaseException:
        stop(servers)
        raise
    return servers


def stop(servers):
    for process, _, _, _ in servers.values():
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
    parser.add_argument("--pin", action="store_true", help="servers on CPU 1, the load generator on CPU 0")
    parser.add_argument("--workload", choices=["predict", "log-metric"], default="predict",
                        help="predictions (default), or raw MLflow log-metric calls to one run")
    parser.add_argument("--callgrind", type=float, default=0, metavar="SECONDS",
                        help="count instructions per request under callgrind instead of timing")
    args = parser.parse_args()
    if args.callgrind:
        return count_instructions(args)
    levels = [int(level) for level in args.levels.split(",")]
    directory = tempfile.mkdtemp(prefix="loopline-bench-serving-auth-")
    paths, model_body, _ = make_models(directory)
    names = ["no auth", "token auth"]
    figures = {(name, level): [] for name in names for level in levels}
    for pair in range(args.pairs):
        # Two processes of the same binary differ by a few percent for as long as they live (where their
        # threads and memory landed): fresh pairs spread that over both sides.
        servers = start_pair(args, directory, paths["xgboost"], model_body, args.null)
        try:
            for name, (_, target, body, authorization) in servers.items():
                warm = load(args.loadgen, target, body, 2, 2, authorization)
                if warm["errors"] or not warm["requests"]:
                    raise RuntimeError(f"{name}: the warm-up failed: {warm}")
            for number in range(args.rounds):
                for level in levels:
                    # Each round swaps which server goes first, so neither always runs on a warmer machine.
                    order = list(servers.items()) if number % 2 == 0 else list(reversed(servers.items()))
                    for name, (process, target, body, authorization) in order:
                        before = cpu_seconds(process.pid)
                        result = load(args.loadgen, target, body, level, args.seconds, authorization, args.pin)
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
          f"{'p50 no auth':>12} {'p50 token':>10} {'CPU/req no auth':>16} {'token':>8} {'paired':>8}")
    for level in levels:
        plain_runs, token_runs = figures[("no auth", level)], figures[("token auth", level)]
        median = lambda runs, key: statistics.median(run[key] for run in runs)  # noqa: E731
        plain, token = median(plain_runs, "rps"), median(token_runs, "rps")
        paired = statistics.median(1 - t["rps"] / p["rps"] for p, t in zip(plain_runs, token_runs))
        cpu_paired = statistics.median(t["cpu_us"] / p["cpu_us"] - 1 for p, t in zip(plain_runs, token_runs))
        print(f"{level:<12} {plain:16.1f} {token:19.1f} {(1 - token / plain) * 100:+7.1f}% {paired * 100:+7.1f}% "
              f"{median(plain_runs, 'p50_ms'):10.2f}ms {median(token_runs, 'p50_ms'):8.2f}ms "
              f"{median(plain_runs, 'cpu_us'):13.1f} us {median(token_runs, 'cpu_us'):5.1f} us {cpu_paired * 100:+7.1f}%")
    print("\ncost: throughput lost with token auth on (negative: none measured), from the medians of all rounds;")
    print("paired: the median of each round's own cost; CPU/req: the server process's CPU time per request (its")
    print("paired column: the median of each round's extra CPU per request with auth).")


def inclusive(out_file, symbol):
    """The instructions `symbol` (a substring of a function's name) executed with all it called."""
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out_file],
                               capture_output=True, text=True, check=True).stdout
    for line in annotated.splitlines():
        if symbol in line:
            return int(line.split()[0].replace(",", ""))
    return 0


def count_instructions(args):
    directory = tempfile.mkdtemp(prefix="loopline-bench-serving-auth-")
    paths, model_body, _ = make_models(directory)
    servers = start_pair(args, directory, paths["xgboost"], model_body, args.null)
    counted = {}
    try:
        for name, (process, target, body, authorization) in servers.items():
            load(args.loadgen, target, body, 2, 3, authorization)
            subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True, capture_output=True)
            result = load(args.loadgen, target, body, 4, args.callgrind, authorization)
            subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-d", str(process.pid)], check=True, capture_output=True)
            if result["errors"] or not result["requests"]:
                raise RuntimeError(f"{name}: {result}")
            counted[name] = (process.args[process.args.index("--data-dir") + 1], result["requests"])
    finally:
        stop(servers)
    print(f"\n{'server':12} {'requests':>9} {'instructions/request':>21} {'without the log writer':>23} {'guard layer':>12}")
    rows = {}
    for name, (workdir, requests_done) in counted.items():
        # Each server's own dump (`callgrind_control -d`: callgrind.out.1) and what it wrote at exit.
        out = [dump for dump in sorted(Path(workdir).glob("callgrind.out*")) if dump.stat().st_size > 0]
        if not out:
            raise RuntimeError(f"no callgrind dump for {name} in {workdir}")
        total = sum(int(line.split()[1]) for d in out for line in d.read_text(errors="ignore").splitlines()
                    if line.startswith("totals:"))
        writer = sum(inclusive(str(d), "prediction_log::write_loop::{{closure}} ") for d in out)
        guard = sum(inclusive(str(d), "access::layer::Guarded<S> as tower_service::Service") for d in out)
        rows[name] = (total / requests_done, (total - writer) / requests_done)
        print(f"{name:12} {requests_done:9} {total / requests_done:21.0f} {(total - writer) / requests_done:23.0f} "
              f"{guard / requests_done:12.0f}")
    (plain_all, plain_path), (token_all, token_path) = rows["no auth"], rows["token auth"]
    print(f"\nwith token auth, per request: {token_all - plain_all:+.0f} instructions in all "
          f"({(token_all - plain_all) / plain_all * 100:+.1f}%), {token_path - plain_path:+.0f} without the log "
          f"writer ({(token_path - plain_path) / plain_all * 100:+.1f}% of a whole request without auth)")

if __name__ == "__main__":
    main()
