"""Side-by-side benchmark: the real `mlflow server` and `loopline server`, same machine, same client
workload, one run. Prints a table with the ratio for each measurement.

Usage (see run.sh, which prepares the venv and the release binary):
    python bench/tracking/bench.py --loopline-bin target/release/loopline [--runs 10000] [--seconds 10]

With --compare-auth it runs two Loopline servers instead, one without auth and one with `--auth basic,token`
where every call is made as a non-admin editor presenting an API token (MLFLOW_TRACKING_TOKEN), and prints what
auth costs. The whole workload alternates between the two servers for --rounds rounds and each figure is the
median of its rounds, so a slow minute of the machine falls on both sides instead of on one.
"""

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

SEARCH_FILTER = "metrics.acc > 0.5 and params.model = 'rf' and tags.team = 'a'"
SEARCH_ORDER = ["metrics.acc DESC"]
ADMIN_PASSWORD = "bench admin password"
# Headers every raw-HTTP session sends (the token, when auth is on).
SESSION_HEADERS = {}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_tree(pid):
    """The pid and all its descendants, from /proc."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass
    return pids


def memory_mib(pid):
    """(RSS, PSS) summed over the process tree, in MiB."""
    rss = pss = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def cpu_seconds(pid):
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / ticks


class Server:
    def __init__(self, name, command, cwd, url):
        self.name, self.url = name, url
        self.log = open(Path(cwd) / "server.log", "wb")
        started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = started + 180
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} exited early; see {cwd}/server.log")
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become healthy in 180 s")
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - started

    def stop(self):
        try:
            os.killpg(self.process.pid, 15)
            self.process.wait(timeout=30)
        except Exception:
            os.killpg(self.process.pid, 9)


def run_for(seconds, threads, work):
    """Calls work(thread_index, iteration) from `threads` threads for `seconds`; returns (ops/s, p50 ms)."""
    latencies = [[] for _ in range(threads)]
    stop_at = time.monotonic() + seconds

    def worker(index):
        iteration = 0
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            work(index, iteration)
            latencies[index].append(time.perf_counter() - began)
            iteration += 1

    pool = [threading.Thread(target=worker, args=(index,)) for index in range(threads)]
    began = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - began
    flat = [value for per_thread in latencies for value in per_thread]
    return len(flat) / elapsed, statistics.median(flat) * 1000


def _log_metric_process(url, run_id, seconds, barrier, results):
    from mlflow import MlflowClient

    client = MlflowClient(url)
    client.get_run(run_id)  # warm the connection before the clock starts
    barrier.wait()
    latencies = []
    stop_at = time.monotonic() + seconds
    step = 0
    while time.monotonic() < stop_at:
        began = time.perf_counter()
        client.log_metric(run_id, "m8", 0.5, step=step)
        latencies.append(time.perf_counter() - began)
        step += 1
    results.put(latencies)


def run_in_processes(url, run_ids, seconds):
    """log_metric from one client process per run: no shared GIL, so the server is what is measured.
    Every process imports mlflow and connects first; the clock starts when all are ready."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(run_ids) + 1)
    results = context.Queue()
    processes = [context.Process(target=_log_metric_process, args=(url, run_id, seconds, barrier, results)) for run_id in run_ids]
    for process in processes:
        process.start()
    barrier.wait()
    began = time.monotonic()
    # A client process that dies (it prints why) must not leave the benchmark waiting for ever.
    per_process = [results.get(timeout=seconds + 120) for _ in processes]
    elapsed = time.monotonic() - began
    for process in processes:
        process.join()
    flat = [value for latencies in per_process for value in latencies]
    return len(flat) / elapsed, statistics.median(flat) * 1000


def run_record(index):
    generator = random.Random(index)
    return {
        "metrics": {"acc": generator.random(), "loss": generator.random(), "f1": generator.random()},
        "params": {"model": generator.choice(["rf", "lr", "svm"]), "lr": generator.choice(["0.001", "0.003", "0.01"]), "depth": str(generator.randint(2, 12))},
        "tags": {"team": generator.choice(["a", "b", "c"]), "stage": generator.choice(["prod", "dev", "test"])},
    }


def populate_over_http(url, experiment_id, runs, threads=8):
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(url)

    def create(index):
        record = run_record(index)
        run = client.create_run(experiment_id, run_name=f"run-{index}", start_time=1_000_000 + index)
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(key, value, now, 0) for key, value in record["metrics"].items()],
            params=[Param(key, value) for key, value in record["params"].items()],
            tags=[RunTag(key, value) for key, value in record["tags"].items()],
        )

    indexes = iter(range(runs))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                index = next(indexes, None)
            if index is None:
                return
            create(index)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def populate_mlflow_in_process(database_path, artifact_root, experiment_id, runs):
    """MLflow over HTTP creates ~13 runs/s here; write its runs through its own store instead, as its
    own tests do. The data is the same as Loopline's."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{database_path}", artifact_root)
    for index in range(runs):
        record = run_record(index)
        run = store.create_run(experiment_id, "bench", 1_000_000 + index, [RunTag("mlflow.runName", f"run-{index}")], f"run-{index}")
        now = int(time.time() * 1000)
        store.log_batch(
            run.info.run_id,
            metrics=[Metric(key, value, now, 0) for key, value in record["metrics"].items()],
            params=[Param(key, value) for key, value in record["params"].items()],
            tags=[RunTag(key, value) for key, value in record["tags"].items()],
        )


def measure(server, args, workdir):
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    results = {"startup to healthy (s)": server.startup_seconds}
    time.sleep(3)
    results["idle RSS (MiB)"], results["idle PSS (MiB)"] = memory_mib(server.process.pid)
    client = MlflowClient(server.url)
    experiment_id = client.create_experiment(f"bench-{time.time_ns()}")
    runs = [client.create_run(experiment_id).info.run_id for _ in range(8)]

    pid = server.process.pid

    def timed(label, seconds, threads, work):
        cpu_before = cpu_seconds(pid)
        ops, p50 = run_for(seconds, threads, work)
        operations = ops * seconds
        results[f"{label} server CPU per op (ms)"] = (cpu_seconds(pid) - cpu_before) / max(operations, 1) * 1000
        return ops, p50

    ops, p50 = timed("log_metric", args.seconds, 1, lambda thread, step: client.log_metric(runs[0], "m", 0.5, step=step))
    results["log_metric, 1 thread (req/s)"] = ops
    results["log_metric, 1 thread p50 (ms)"] = p50
    ops, _ = run_for(args.seconds, 8, lambda thread, step: client.log_metric(runs[thread], "m8", 0.5, step=step))
    results["log_metric, 8 threads (req/s)"] = ops
    ops, _ = run_in_processes(server.url, runs, args.seconds)
    results["log_metric, 8 processes (req/s)"] = ops
    session = requests.Session()
    session.headers.update(SESSION_HEADERS)
    payload = lambda step: {"run_id": runs[1], "key": "raw", "value": 1.0, "timestamp": 1, "step": step}
    ops, _ = run_for(args.seconds, 1, lambda thread, step: session.post(f"{server.url}/api/2.0/mlflow/runs/log-metric", json=payload(step)).raise_for_status())
    results["log_metric raw HTTP, 1 thread (req/s)"] = ops

    def log_thousand(thread, iteration):
        base = iteration * 100
        now = int(time.time() * 1000)
        metrics = [Metric(f"k{key}", float(step), now, base + step) for key in range(10) for step in range(100)]
        client.log_batch(runs[2], metrics=metrics)

    ops, p50 = timed("log_batch", args.seconds, 1, log_thousand)
    results["log_batch of 1000 metrics (batches/s)"] = ops
    results["log_batch p50 (ms)"] = p50
    # The same batches as pre-serialised JSON: what the server sustains when the client costs nothing.
    now = int(time.time() * 1000)
    run_for_raw = runs[3]

    def raw_batch(batch):
        metrics = ",".join(
            f'{{"key":"k{key}","value":{step}.0,"timestamp":{now},"step":{batch * 100 + step}}}' for key in range(10) for step in range(100)
        )
        return f'{{"run_id":"{run_for_raw}","metrics":[{metrics}]}}'.encode()

    # Serialised before the clock starts (formatting one costs the client about 1 ms, a quarter of a fast
    # server's answer); every batch carries new points. Should a server outrun the prepared bodies, the rest
    # are formatted in the loop.
    prepared = [raw_batch(batch) for batch in range(int(args.seconds * 500))]
    body = lambda batch: prepared[batch] if batch < len(prepared) else raw_batch(batch)
    headers = {"Content-Type": "application/json"}
    ops, _ = run_for(args.seconds, 1, lambda thread, batch: session.post(f"{server.url}/api/2.0/mlflow/runs/log-batch", data=body(batch), headers=headers).raise_for_status())
    del prepared
    results["log_batch raw HTTP (batches/s)"] = ops

    search_experiment = client.create_experiment(f"search-{time.time_ns()}")
    began = time.monotonic()
    if server.name == "mlflow":
        populate_mlflow_in_process(Path(workdir) / "mlflow.db", str(Path(workdir) / "mlartifacts"), search_experiment, args.runs)
    else:
        populate_over_http(server.url, search_experiment, args.runs)
    results[f"populate {args.runs} runs (s)"] = time.monotonic() - began

    timings, raw_timings, hits = [], [], 0
    # One untimed search first, on both servers: the runs table is asked for again and again, and the first
    # answer after the writes pays for caches (connections, pages, statements) the others reuse.
    client.search_runs([search_experiment], SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=100)
    # Forty of each: with fifteen, one busy second of the machine moved the median by a fifth.
    for _ in range(40):
        began = time.perf_counter()
        found = client.search_runs([search_experiment], SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=100)
        timings.append(time.perf_counter() - began)
        hits = len(found)
        began = time.perf_counter()
        session.post(
            f"{server.url}/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [search_experiment], "filter": SEARCH_FILTER, "order_by": SEARCH_ORDER, "max_results": 100},
        ).raise_for_status()
        raw_timings.append(time.perf_counter() - began)
    results["3-clause search, 100 hits (ms)"] = statistics.median(timings) * 1000
    results["3-clause search raw HTTP (ms)"] = statistics.median(raw_timings) * 1000
    results["search hits"] = hits
    results["loaded RSS (MiB)"], results["loaded PSS (MiB)"] = memory_mib(server.process.pid)
    return results


HIGHER_IS_BETTER = ("req/s", "batches/s")


def sign_in_with_token(url):
    """Creates an editor user with the stock admin client and gives every client that user's API token."""
    from mlflow.server import get_app_client

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = "admin", ADMIN_PASSWORD
    admin = get_app_client("basic-auth", tracking_uri=url)
    admin.create_user("bench", "bench user password")
    admin.assign_role("bench", next(role.id for role in admin.list_roles("default") if role.name == "editor"))
    del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    issued = requests.post(f"{url}/api/loopline/v1/access/tokens", json={"name": "bench", "scopes": ["write"]},
                           auth=("bench", "bench user password"), timeout=30)
    issued.raise_for_status()
    token = issued.json()["token"]
    return token


def use_token(token):
    """Every client (stock and raw) presents `token` from now on; `None`: none at all."""
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    SESSION_HEADERS.clear()
    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
        SESSION_HEADERS["Authorization"] = f"Bearer {token}"


def start_auth_server(args, name):
    """A Loopline server for an auth comparison: `loopline-token` with `--auth basic,token` and its admin, any
    other name without auth. Answers the server and its data directory."""
    workdir = tempfile.mkdtemp(prefix=f"bench-{name}-")
    port = free_port()
    command = [os.path.abspath(args.loopline_bin), "server", "--port", str(port), "--data-dir", workdir]
    if name == "loopline-token":
        command += ["--auth", "basic,token"]
        os.environ["LOOPLINE_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    print(f"== {name}: starting in {workdir}", flush=True)
    return Server(name, command, workdir, f"http://127.0.0.1:{port}"), workdir


def compare_auth(args):
    """Loopline without auth against Loopline with token auth, the workload alternating between them."""
    servers, tokens = {}, {}
    try:
        for name in ["loopline", "loopline-token"]:
            servers[name] = start_auth_server(args, name)
            tokens[name] = sign_in_with_token(servers[name][0].url) if name == "loopline-token" else None
        rounds = {name: [] for name in servers}
        for number in range(args.rounds):
            # Which server goes first alternates: a machine that slows down or speeds up during the run
            # weighs on both alike.
            order = list(servers.items())
            for name, (server, workdir) in order if number % 2 == 0 else reversed(order):
                print(f"== round {number + 1} of {args.rounds}: {name}", flush=True)
                use_token(tokens[name])
                rounds[name].append(measure(server, args, workdir))
        use_token(None)
    finally:
        for server, _ in servers.values():
            server.stop()
    medians = {name: {key: statistics.median(result[key] for result in results) for key in results[0]}
               for name, results in rounds.items()}
    print_auth_table(medians["loopline"], medians["loopline-token"], rounds["loopline"], rounds["loopline-token"])


def compare_auth_search(args):
    """The 3-clause search alone: both servers get the same runs, then the searches alternate request by
    request between them, so the machine's slow seconds fall on both alike."""
    from mlflow import MlflowClient

    servers, sessions, experiments = {}, {}, {}
    try:
        for name in ["loopline", "loopline-token"]:
            server, _ = start_auth_server(args, name)
            servers[name] = server
            use_token(sign_in_with_token(server.url) if name == "loopline-token" else None)
            experiments[name] = MlflowClient(server.url).create_experiment("search")
            populate_over_http(server.url, experiments[name], args.runs)
            sessions[name] = requests.Session()
            sessions[name].headers.update(SESSION_HEADERS)
        use_token(None)
        time.sleep(2)
        timings = {name: [] for name in servers}
        cpu = {name: 0.0 for name in servers}
        for number in range(args.search_pairs):
            for name in list(servers) if number % 2 == 0 else reversed(list(servers)):
                body = {"experiment_ids": [experiments[name]], "filter": SEARCH_FILTER, "order_by": SEARCH_ORDER,
                        "max_results": 100}
                pid = servers[name].process.pid
                cpu_before = cpu_seconds(pid)
                began = time.perf_counter()
                answer = sessions[name].post(f"{servers[name].url}/api/2.0/mlflow/runs/search", json=body)
                timings[name].append(time.perf_counter() - began)
                cpu[name] += cpu_seconds(pid) - cpu_before
                answer.raise_for_status()
                if len(answer.json()["runs"]) != 100:
                    raise SystemExit(f"{name}: the search found {len(answer.json()['runs'])} runs, not 100")
    finally:
        for server in servers.values():
            server.stop()
    print(f"\n{'3-clause search, raw HTTP':30} {'median (ms)':>12} {'server CPU per search (ms)':>28}")
    for name in servers:
        print(f"{name:30} {statistics.median(timings[name]) * 1000:12.2f} {cpu[name] / len(timings[name]) * 1000:28.2f}")


def auth_cost(key, plain_value, token_value):
    """Throughput lost, or time and memory added, as a fraction (`None` when there is nothing to compare)."""
    if any(unit in key for unit in HIGHER_IS_BETTER):
        return 1 - token_value / plain_value if plain_value else None
    return token_value / plain_value - 1 if plain_value else None


def print_auth_table(plain, token, plain_rounds, token_rounds):
    print()
    print(f"{'measurement':45} {'no auth':>15} {'token auth':>15} {'cost':>10} {'paired':>8}")
    print("-" * 97)
    for key, plain_value in plain.items():
        token_value = token[key]
        if key == "search hits":
            print(f"{key:45} {plain_value:15.1f} {token_value:15.1f} {'same' if plain_value == token_value else 'DIFFERENT':>10}")
            continue
        cost = auth_cost(key, plain_value, token_value)
        each = [auth_cost(key, p[key], t[key]) for p, t in zip(plain_rounds, token_rounds)]
        each = [value for value in each if value is not None]
        paired = f"{statistics.median(each) * 100:+.1f}%" if each else "-"
        cost = f"{cost * 100:+.1f}%" if cost is not None else "-"
        print(f"{key:45} {plain_value:15.1f} {token_value:15.1f} {cost:>10} {paired:>8}")
    print()
    print("cost: throughput lost, or time and memory added, with token auth on (negative: none measured), from")
    print("the medians of the rounds; paired: the median of each round's own cost (the two servers run one after")
    print("the other in each round).")


def print_table(mlflow_results, loopline_results):
    print()
    print(f"{'measurement':45} {'mlflow server':>15} {'loopline':>15} {'ratio':>10}")
    print("-" * 88)
    for key, mlflow_value in mlflow_results.items():
        loopline_value = loopline_results[key]
        if key == "search hits":
            ratio = "same" if mlflow_value == loopline_value else "DIFFERENT"
        elif any(unit in key for unit in HIGHER_IS_BETTER):
            ratio = f"{loopline_value / mlflow_value:.1f}x"
        else:
            ratio = f"{mlflow_value / loopline_value:.1f}x" if loopline_value else "-"
        print(f"{key:45} {mlflow_value:15.1f} {loopline_value:15.1f} {ratio:>10}")
    print()
    print("ratio: how many times better Loopline is (throughput up, time and memory down).")


def main():
    # mlflow's telemetry (a background thread and an environment variable per process) is not what is measured,
    # and it has failed in spawned client processes.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loopline-bin", default="target/release/loopline")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--only", choices=["mlflow", "loopline"])
    parser.add_argument("--compare-auth", action="store_true", help="Loopline without auth against Loopline with token auth")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare-auth: rounds per server (medians)")
    parser.add_argument("--search-pairs", type=int, default=0,
                        help="with --compare-auth: only the search, this many times on each server, alternating")
    args = parser.parse_args()
    if args.compare_auth and args.search_pairs:
        compare_auth_search(args)
        return
    if args.compare_auth:
        compare_auth(args)
        return
    results = {}
    names = ["loopline", "mlflow"]
    for name in names:
        if args.only and args.only != name:
            continue
        workdir = tempfile.mkdtemp(prefix=f"bench-{name}-")
        port = free_port()
        if name == "mlflow":
            mlflow_cli = str(Path(sys.executable).parent / "mlflow")
            command = [mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port)]
        else:
            command = [os.path.abspath(args.loopline_bin), "server", "--port", str(port), "--data-dir", workdir]
        print(f"== {name}: starting in {workdir}", flush=True)
        server = Server(name, command, workdir, f"http://127.0.0.1:{port}")
        try:
            results[name] = measure(server, args, workdir)
        finally:
            server.stop()
        for key, value in results[name].items():
            print(f"   {key}: {value:.1f}", flush=True)
    if len(results) == 2:
        print_table(results["mlflow"], results["loopline"])


if __name__ == "__main__":
    main()
