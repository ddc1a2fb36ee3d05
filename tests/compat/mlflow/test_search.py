"""Search grammar, ordering and pagination through the client and pandas."""

import mlflow
import pytest
from mlflow.exceptions import MlflowException


@pytest.fixture()
def populated(experiment, client):
    run_ids = []
    for index in range(12):
        run = client.create_run(experiment, run_name=f"r{index}", start_time=1_000 + index)
        client.log_batch(
            run.info.run_id,
            metrics=[mlflow.entities.Metric("acc", index / 12, 0, 0)] + ([mlflow.entities.Metric("loss", 1 - index / 12, 0, 0)] if index % 2 else []),
            params=[mlflow.entities.Param("model", "rf" if index % 3 == 0 else "lr")],
            tags=[mlflow.entities.RunTag("team", "a" if index < 6 else "b")],
        )
        run_ids.append(run.info.run_id)
    return experiment, run_ids


def test_filters_order_and_pandas(populated, client):
    experiment, run_ids = populated
    frame = mlflow.search_runs([experiment], filter_string="metrics.acc >= 0.5 and params.model = 'rf' and tags.team = 'b'", order_by=["metrics.acc DESC"])
    assert list(frame["tags.mlflow.runName"]) == ["r9", "r6"]
    names = [run.info.run_name for run in client.search_runs([experiment], "tags.`team` LIKE 'a%'", order_by=["attributes.start_time ASC"])]
    assert names == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert len(client.search_runs([experiment], "tags.team ILIKE 'A'")) == 6
    assert len(client.search_runs([experiment], "tags.team LIKE 'A'")) == 0
    assert [run.info.run_name for run in client.search_runs([experiment], "attributes.run_name = 'r3'")] == ["r3"]
    assert len(client.search_runs([experiment], "run_name != 'r3'")) == 11
    assert len(client.search_runs([experiment], "tags.missing IS NULL")) == 12
    subset = client.search_runs([experiment], f"attributes.run_id IN ('{run_ids[0]}', '{run_ids[1]}')")
    assert {run.info.run_id for run in subset} == {run_ids[0], run_ids[1]}
    either = client.search_runs([experiment], "(params.model = 'rf' OR tags.team = 'a') AND metrics.acc >= 0")
    assert len(either) == 8


def test_missing_values_sort_last(populated, client):
    experiment, _ = populated
    for ascending in ("ASC", "DESC"):
        runs = client.search_runs([experiment], order_by=[f"metrics.loss {ascending}"])
        has_loss = ["loss" in run.data.metrics for run in runs]
        assert has_loss == [True] * 6 + [False] * 6, ascending


def test_pagination_walks_every_run_once(populated, client):
    experiment, run_ids = populated
    seen = []
    token = None
    while True:
        page = client.search_runs([experiment], max_results=5, page_token=token)
        seen.extend(run.info.run_id for run in page)
        token = page.token
        if not token:
            break
    assert sorted(seen) == sorted(run_ids)
    assert len(mlflow.search_runs([experiment])) == 12


def test_bad_filters_are_400s(populated, client):
    experiment, _ = populated
    for bad in ["metrics.acc >> 1", "params.model = 1", "foo.bar = 'x'", "metrics.acc = 'x'"]:
        with pytest.raises(MlflowException) as raised:
            client.search_runs([experiment], bad)
        assert raised.value.error_code == "INVALID_PARAMETER_VALUE", bad


def test_search_experiments_and_registry(client):
    for suffix in ("one", "two"):
        client.create_experiment(f"compat-search-exp-{suffix}", tags={"kind": "search"})
    found = client.search_experiments(filter_string="tags.kind = 'search' and name LIKE 'compat-search-exp-%'", order_by=["name ASC"])
    assert [experiment.name for experiment in found] == ["compat-search-exp-one", "compat-search-exp-two"]
    client.create_registered_model("xsearch-a")
    client.create_registered_model("xsearch-b", tags={"team": "b"})
    models = client.search_registered_models(filter_string="name LIKE 'xsearch-%'", order_by=["name DESC"])
    assert [model.name for model in models] == ["xsearch-b", "xsearch-a"]
    client.create_model_version("xsearch-a", "mlflow-artifacts:/0/some/model")
    client.create_model_version("xsearch-a", "mlflow-artifacts:/0/some/model")
    versions = client.search_model_versions("name = 'xsearch-a'", order_by=["version_number DESC"])
    assert [version.version for version in versions] == ["2", "1"]
