"""`loopline validate` against Great Expectations: the same suite on the same data must give the same verdicts,
observed values, unexpected counts and percentages, and partial unexpected lists."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench" / "drift"))
from run_gx import gx_validate  # noqa: E402

from conftest import read_json  # noqa: E402

SUITE = [
    ("expect_column_to_exist", {"column": "price"}),
    ("expect_column_to_exist", {"column": "absent"}),
    ("expect_table_columns_to_match_ordered_list", {"column_list": ["id", "price", "qty", "city", "code", "flag", "ts_order"]}),
    ("expect_table_columns_to_match_ordered_list", {"column_list": ["id", "qty", "price"]}),
    ("expect_table_columns_to_match_set", {"column_set": ["id", "price", "qty", "city", "code", "flag", "ts_order"]}),
    ("expect_table_columns_to_match_set", {"column_set": ["id", "price", "zzz"], "exact_match": False}),
    ("expect_table_row_count_to_be_between", {"min_value": 100, "max_value": 5000}),
    ("expect_table_row_count_to_be_between", {"min_value": 10, "max_value": 50}),
    ("expect_column_values_to_not_be_null", {"column": "price"}),
    ("expect_column_values_to_not_be_null", {"column": "price", "mostly": 0.9}),
    ("expect_column_values_to_not_be_null", {"column": "city", "mostly": 0.99}),
    ("expect_column_values_to_be_between", {"column": "price", "min_value": 0, "max_value": 150}),
    ("expect_column_values_to_be_between", {"column": "price", "min_value": 0, "max_value": 150, "mostly": 0.95}),
    ("expect_column_values_to_be_between", {"column": "qty", "min_value": 1, "max_value": 9, "strict_min": True}),
    ("expect_column_values_to_be_between", {"column": "qty", "min_value": None, "max_value": 7}),
    ("expect_column_values_to_be_in_set", {"column": "city", "value_set": ["oslo", "paris", "lima"]}),
    ("expect_column_values_to_be_in_set", {"column": "city", "value_set": ["oslo", "paris", "lima"], "mostly": 0.8}),
    ("expect_column_values_to_be_in_set", {"column": "qty", "value_set": [1, 2, 3, 4, 5, 6, 7, 8]}),
    ("expect_column_values_to_not_be_in_set", {"column": "city", "value_set": ["tokyo"]}),
    ("expect_column_values_to_match_regex", {"column": "code", "regex": "^[A-Z]{2}-\\d{3}$"}),
    ("expect_column_values_to_match_regex", {"column": "code", "regex": "\\d", "mostly": 0.5}),
    ("expect_column_values_to_be_unique", {"column": "id"}),
    ("expect_column_values_to_be_unique", {"column": "qty"}),
    ("expect_column_value_lengths_to_be_between", {"column": "code", "min_value": 6, "max_value": 6}),
    ("expect_column_value_lengths_to_be_between", {"column": "city", "min_value": 4, "max_value": None}),
    ("expect_column_values_to_be_of_type", {"column": "qty", "type_": "int64"}),
    ("expect_column_values_to_be_of_type", {"column": "price", "type_": "int64"}),
    ("expect_column_mean_to_be_between", {"column": "price", "min_value": 40, "max_value": 60}),
    ("expect_column_median_to_be_between", {"column": "price", "min_value": 50, "max_value": 60}),
    ("expect_column_stdev_to_be_between", {"column": "price", "min_value": 10, "max_value": 40}),
    ("expect_column_min_to_be_between", {"column": "qty", "min_value": 1, "max_value": 1}),
    ("expect_column_max_to_be_between", {"column": "price", "max_value": 150, "strict_max": True}),
    ("expect_column_sum_to_be_between", {"column": "qty", "min_value": 1000}),
    ("expect_column_proportion_of_unique_values_to_be_between", {"column": "city", "min_value": 0, "max_value": 0.01}),
    ("expect_column_proportion_of_unique_values_to_be_between", {"column": "id", "min_value": 1, "max_value": 1}),
    ("expect_column_values_to_be_increasing", {"column": "ts_order"}),
    ("expect_column_values_to_be_increasing", {"column": "ts_order", "strictly": True}),
    ("expect_column_values_to_be_increasing", {"column": "id", "mostly": 0.5}),
]


def make_frame(rows: int = 2000, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    price = rng.normal(50, 20, rows)
    price[rng.choice(rows, 60, replace=False)] = np.nan
    price[rng.choice(rows, 5, replace=False)] = 175.5
    city = rng.choice(["oslo", "paris", "lima", "rome", None], rows, p=[0.4, 0.3, 0.2, 0.08, 0.02]).astype(object)
    letters = rng.choice(list("ABCDEFG"), (rows, 2))
    code = [f"{a}{b}-{n:03d}" for (a, b), n in zip(letters, rng.integers(0, 1000, rows))]
    for position in rng.choice(rows, 30, replace=False):
        code[position] = "bad"
    ids = np.arange(rows)
    ids[[5, 900, 1500]] = [4, 17, 17]
    ts_order = np.sort(rng.integers(0, 10_000, rows))
    ts_order[[100, 700]] = [0, 3]
    return pd.DataFrame(
        {
            "id": ids,
            "price": price,
            "qty": rng.integers(1, 10, rows),
            "city": city,
            "code": code,
            "flag": rng.random(rows) < 0.3,
            "ts_order": ts_order,
        }
    )


def run_gx(frame: pd.DataFrame) -> tuple[dict, dict]:
    return gx_validate(frame, "compat", SUITE)


def config_key(config: dict) -> str:
    """An expectation's identity: its type and arguments, numbers as floats, nulls and GX's batch_id left out
    (GX groups its results by column, so results are matched by configuration, not position)."""

    def normal(value):
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, list):
            return [normal(v) for v in value]
        return value

    kwargs = {k: normal(v) for k, v in config["kwargs"].items() if k != "batch_id" and v is not None}
    return json.dumps([config["type"], kwargs], sort_keys=True)


def by_config(result: dict) -> dict:
    return {config_key(r["expectation_config"]): r for r in result["results"]}


def close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.fixture(scope="module", params=["parquet", "csv"])
def both_results(request, tmp_path_factory, loopline_bin):
    """GX on the frame, Loopline on the frame written as Parquet (text read as dictionaries) or as CSV (text read
    as plain strings): both paths must give GX's answers."""
    import subprocess

    directory = tmp_path_factory.mktemp("gx")
    frame = make_frame()
    data = directory / f"data.{request.param}"
    if request.param == "parquet":
        frame.to_parquet(data, index=False)
    else:
        frame.to_csv(data, index=False)
    suite_json, gx_result = run_gx(frame)
    # The suite file is the one GX itself wrote.
    (directory / "suite.json").write_text(json.dumps(suite_json))
    process = subprocess.run(
        [loopline_bin, "validate", data, "--suite", directory / "suite.json", "--json", directory / "out.json"],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 1, process.stderr  # some expectations fail on purpose
    return gx_result, read_json(directory / "out.json")


def test_suite_verdicts_match(both_results):
    gx_result, ours = both_results
    assert ours["success"] is False
    assert len(ours["results"]) == len(gx_result["results"]) == len(SUITE)
    ours_by_config = by_config(ours)
    for key, expected in by_config(gx_result).items():
        assert ours_by_config[key]["success"] == expected["success"], key
    assert ours["statistics"]["successful_expectations"] == gx_result["statistics"]["successful_expectations"]


@pytest.mark.parametrize("index", range(len(SUITE)), ids=[f"{i}-{kind}" for i, (kind, _) in enumerate(SUITE)])
def test_each_result_matches(both_results, index):
    gx_result, ours = both_results
    actual = ours["results"][index]
    expected = by_config(gx_result)[config_key(actual["expectation_config"])]
    assert actual["success"] == expected["success"], (expected["result"], actual["result"])
    for key in [
        "observed_value",
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "missing_count",
        "missing_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
        "partial_unexpected_list",
    ]:
        if key not in expected["result"]:
            continue
        want, got = expected["result"][key], actual["result"].get(key)
        if isinstance(want, list):
            assert len(got) == len(want), (key, want, got)
            assert all(close(a, b) for a, b in zip(got, want)), (key, want, got)
        else:
            assert close(got, want), (key, want, got)


def test_unknown_expectation_type_is_refused_by_name(tmp_path, run_loopline):
    frame = make_frame()
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    suite = {"name": "s", "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "id"}},
                                            {"type": "expect_column_values_to_sparkle", "kwargs": {"column": "id"}}]}
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    process = run_loopline("validate", tmp_path / "data.parquet", "--suite", tmp_path / "suite.json")
    assert process.returncode == 2
    assert "expect_column_values_to_sparkle" in process.stderr
    assert process.stdout == ""
