"""Loopline's online API against Feast's own feature server (`feast serve`), both over the same registry of
definitions (the registry `feast apply` wrote, which Loopline reads) and the same data, materialised by each (`feast materialize`, `loopline features materialize`):
every answer to `/get-online-features` is compared whole (names, values, statuses, event times), and so are
pushed rows."""

import json
import os
import subprocess
import time

import pytest
import requests

from feast_data import BINARY, feast_store, make_data
from loopline_process import LooplineProcess, free_port

START, END = "2024-04-01T00:00:00", "2024-06-01T00:00:00"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    directory = tmp_path_factory.mktemp("online")
    make_data(directory, ties=False)
    feast_store(directory)
    repo = directory / "feast_repo"
    env = {**os.environ, "PATH": f"{os.path.dirname(os.sys.executable)}:{os.environ['PATH']}", "FEAST_USAGE": "False"}
    subprocess.run(["feast", "materialize", START, END], cwd=repo, check=True, capture_output=True, env=env)
    feast_port = free_port()
    feast_log = open(directory / "feast.log", "wb")
    feast = subprocess.Popen(["feast", "serve", "-p", str(feast_port), "--no-access-log"], cwd=repo, env=env,
                             stdout=feast_log, stderr=subprocess.STDOUT)
    feast_url = f"http://127.0.0.1:{feast_port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{feast_url}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert feast.poll() is None and time.monotonic() < deadline, (directory / "feast.log").read_text()
        time.sleep(0.2)

    port = free_port()
    loopline = LooplineProcess(["server", "--port", str(port), "--data-dir", str(directory / "loopline-data")], port,
                               directory / "loopline.log")
    # Loopline reads the very registry `feast apply` wrote.
    cli = {**os.environ, "MLFLOW_TRACKING_URI": loopline.url}
    applied = subprocess.run([BINARY, "features", "apply", "-d", str(repo)], env=cli,
                             check=True, capture_output=True, text=True)
    assert "+ feature view driver_stats" in applied.stdout and "version 1" in applied.stdout
    subprocess.run([BINARY, "features", "materialize", START, END], env=cli, check=True, capture_output=True)
    yield feast_url, loopline.url, directory
    feast.terminate()
    feast.wait(timeout=20)
    loopline.stop()


def by_name(answer):
    """The answer as feature name -> column. Feast orders the features of one view as a Python set iterates
    (it changes from process to process with string hashing); Loopline keeps the request's order."""
    names = answer["metadata"]["feature_names"]
    assert len(set(names)) == len(names) == len(answer["results"])
    return dict(zip(names, answer["results"]))


def ask(url, body, path="/get-online-features"):
    response = requests.post(f"{url}{path}", json=body, timeout=30)
    return response.status_code, response.json() if response.content else None


BODIES = [
    {"features": ["driver_stats:conv_rate", "driver_stats:avg_daily_trips"],
     "entities": {"driver_id": [1001, 1002, 999, 1039, 1001]}},
    {"feature_service": "everything", "full_feature_names": True,
     "entities": {"driver_id": [1003, 1004, 1005, 2000], "customer_id": ["c1", "c7", "c99", "c2"]}},
    {"features": ["trip_stats:trip_fare", "customer_stats:lifetime_value"],
     "entities": {"customer_id": ["c3", "c4", "nobody"], "driver_id": [1010, 1011, 1012]}},
]


@pytest.mark.parametrize("body", BODIES)
def test_online_features_equal_feasts_feature_server(servers, body):
    feast_url, loopline_url, _ = servers
    feast_status, feast_answer = ask(feast_url, body)
    status, answer = ask(loopline_url, body)
    assert feast_status == status == 200
    assert by_name(answer) == by_name(feast_answer)
    entity_columns = list(body["entities"])
    assert answer["metadata"]["feature_names"][: len(entity_columns)] == entity_columns
    assert feast_answer["metadata"]["feature_names"][: len(entity_columns)] == entity_columns
    statuses = {s for result in answer["results"] for s in result["statuses"]}
    assert statuses == {"PRESENT", "NOT_FOUND"}, "the entities should give both outcomes"


def test_pushed_rows_are_served_as_feast_serves_them(servers):
    feast_url, loopline_url, _ = servers
    push = {"push_source_name": "driver_push", "to": "online",
            "df": {"driver_id": [1001, 1002], "event_timestamp": ["2024-07-01 10:00:00+00:00", "2024-07-01 11:30:00+00:00"],
                   "created": ["2024-07-01 10:00:05+00:00", "2024-07-01 11:30:05+00:00"],
                   "conv_rate": [0.25, 0.75], "avg_daily_trips": [12, 34]}}
    assert ask(feast_url, push, "/push")[0] == 200
    assert ask(loopline_url, push, "/push")[0] == 200
    body = {"features": ["driver_fresh:conv_rate", "driver_fresh:avg_daily_trips"],
            "entities": {"driver_id": [1001, 1002, 1003]}}
    feast_answer, answer = ask(feast_url, body)[1], ask(loopline_url, body)[1]
    assert by_name(answer) == by_name(feast_answer)
    # 1003 was not pushed: it keeps what materialising the push source's batch source gave it.
    assert answer["results"][1]["values"][:2] == [0.25, 0.75]
    assert answer["results"][1]["statuses"] == ["PRESENT"] * 3
    assert answer["results"][1]["event_timestamps"][:2] == ["2024-07-01T10:00:00Z", "2024-07-01T11:30:00Z"]


def test_unknown_names_are_refused_in_feasts_shape(servers):
    feast_url, loopline_url, _ = servers
    for body in [{"features": ["no_such_view:x"], "entities": {"driver_id": [1]}},
                 {"feature_service": "no_such_service", "entities": {"driver_id": [1]}}]:
        feast_status, feast_answer = ask(feast_url, body)
        status, answer = ask(loopline_url, body)
        assert status == feast_status == 404
        assert isinstance(answer, str), "Feast's error body is a JSON string"
        ours, theirs = json.loads(answer), json.loads(feast_answer)
        assert (ours["module"], ours["class"]) == (theirs["module"], theirs["class"])
    # A body that is not a lookup is FastAPI's 422 in both.
    for url in (feast_url, loopline_url):
        status, answer = ask(url, {"features": ["driver_stats:conv_rate"]})
        assert status == 422 and "detail" in answer


def test_bad_lookups_are_client_errors_naming_the_problem(servers):
    _, loopline_url, _ = servers
    cases = [
        ({"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [1, 2], "x": [1]}}, "has 1 values"),
        ({"features": ["driver_stats:conv_rate"], "entities": {"customer_id": ["c1"]}}, "lacks"),
        ({"features": ["driver_stats:conv_rate"], "entities": {"driver_id": ["1001"]}}, "value_type is Int64"),
        ({"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [[1]]}}, "lists or objects"),
        ({"features": ["driver_stats"], "entities": {"driver_id": [1]}}, "is not `view:feature`"),
    ]
    for body, wanted in cases:
        status, answer = ask(loopline_url, body)
        assert status == 400, (body, status, answer)
        assert wanted in json.loads(answer)["message"], answer
