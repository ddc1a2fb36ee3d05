"""`loopline drift` against Evidently's DataDriftPreset on the same data: the same method per column, the same
value (p-value or distance) to 1e-9 relative, the same per-column verdicts and the same dataset verdict.

Scenarios cover both of Evidently's regimes (reference of at most 1000 rows: KS, chi-squared and z-test
p-values; larger: normed Wasserstein and Jensen-Shannon distances), binary and few-valued columns, NaN and
infinities (dropped by both), labels the reference never saw, and a small reference against a current table
large enough for the asymptotic KS p-value.
"""

import math
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench" / "drift"))
from run_evidently import drift_verdicts  # noqa: E402

from conftest import read_json  # noqa: E402

# Evidently's method display names → Loopline's method names.
METHODS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
}


def frame(rows: int, moved: bool, rng: np.random.Generator) -> pd.DataFrame:
    shift = 0.6 if moved else 0.0
    numbers = rng.normal(10 + shift, 2, rows)
    numbers[rng.choice(rows, rows // 50, replace=False)] = np.nan
    spiky = rng.standard_t(2, rows) * (1.5 if moved else 1.0)
    spiky[rng.choice(rows, 3, replace=False)] = np.inf
    labels = ["a", "b", "c", "d"] + (["e"] if moved else [])
    weights = np.linspace(1, 2, len(labels))
    return pd.DataFrame(
        {
            "numbers": numbers,
            "spiky": spiky,
            "steady": rng.uniform(0, 1, rows),
            "counts": rng.poisson(3 + (1 if moved else 0), rows).astype("int64"),
            "label": rng.choice(labels, rows, p=weights / weights.sum()),
            "binary": rng.choice(["yes", "no"], rows, p=[0.3, 0.7] if not moved else [0.45, 0.55]),
            "tier": rng.choice(["gold", "silver", "bronze"], rows),
        }
    )


SCENARIOS = {
    "small-reference-same": (600, 500, False),
    "small-reference-moved": (600, 500, True),
    "small-reference-large-current": (800, 30_000, True),
    "large-reference-same": (5000, 4000, False),
    "large-reference-moved": (5000, 4000, True),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_verdicts_match_evidently(scenario, tmp_path, run_loopline):
    reference_rows, current_rows, moved = SCENARIOS[scenario]
    # A seed fixed per scenario (not `hash`, which Python salts per process): every run draws the same data.
    rng = np.random.default_rng(zlib.crc32(scenario.encode()))
    reference, current = frame(reference_rows, False, rng), frame(current_rows, moved, rng)
    reference.to_parquet(tmp_path / "reference.parquet", index=False)
    current.to_parquet(tmp_path / "current.parquet", index=False)

    theirs = drift_verdicts(reference, current)
    process = run_loopline(
        "drift", "--reference", tmp_path / "reference.parquet", "--current", tmp_path / "current.parquet",
        "--json", tmp_path / "report.json",
    )
    assert process.returncode in (0, 1), process.stderr
    ours = {column["name"]: column for column in read_json(tmp_path / "report.json")["columns"]}

    assert set(ours) == set(theirs["columns"])
    drifted = 0
    for name, expected in theirs["columns"].items():
        column = ours[name]
        assert column["method"] == METHODS[expected["method"]], (name, expected, column["method"])
        # Evidently computes the z-test p-value as 2 * (1 - norm.cdf(|z|)), which keeps only ~1e-16 absolute
        # precision; ours (and scipy's norm.sf) keeps it relative, so tiny z-test p-values agree to 1e-15 absolute.
        absolute = 1e-15 if column["method"] == "z" else 1e-300
        assert math.isclose(column["score"], expected["value"], rel_tol=1e-9, abs_tol=absolute), (name, expected, column)
        assert column["threshold"] == expected["threshold"]
        their_drift = (
            expected["value"] < expected["threshold"]
            if column["p_value"] is not None
            else expected["value"] >= expected["threshold"]
        )
        assert column["drifted"] == their_drift, (name, expected, column)
        drifted += their_drift
    report = read_json(tmp_path / "report.json")
    assert report["drifted_columns"] == drifted
    # Evidently 0.7.23's dataset count comes from its legacy DatasetDriftMetric, which does not drop ±inf and so
    # gives a Wasserstein-scored column holding infinities a NaN score (not drifted), while its per-column
    # ValueDrift drops them. We drop them in both places, so our count exceeds Evidently's by those columns.
    with_infinities = [
        name for name in theirs["columns"]
        if pd.api.types.is_numeric_dtype(current[name]) and np.isinf(current[name]).any()
        or pd.api.types.is_numeric_dtype(reference[name]) and np.isinf(reference[name]).any()
    ]
    inconsistent = sum(1 for name in with_infinities if ours[name]["drifted"] and ours[name]["method"] == "wasserstein")
    assert theirs["dataset_drift"]["count"] == drifted - inconsistent
    if inconsistent == 0:
        assert math.isclose(report["share_of_drifted_columns"], theirs["dataset_drift"]["share"])
    assert process.returncode == (1 if report["dataset_drift"] else 0)
