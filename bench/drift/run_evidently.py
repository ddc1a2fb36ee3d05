"""Runs Evidently's DataDriftPreset on two Parquet files and prints the per-column verdicts as JSON.

usage: python run_evidently.py REFERENCE CURRENT [--html OUT]
"""

import argparse
import json

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset


def drift_verdicts(reference: pd.DataFrame, current: pd.DataFrame, html: str | None = None) -> dict:
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    if html:
        snapshot.save_html(html)
    result = {"columns": {}, "dataset_drift": None}
    for metric in snapshot.dict()["metrics"]:
        name = metric.get("metric_name", "")
        config = metric.get("config", {})
        value = metric.get("value")
        if name.startswith("ValueDrift"):
            column = config.get("column")
            method = config.get("method")
            threshold = config.get("threshold")
            result["columns"][column] = {"method": method, "value": value, "threshold": threshold}
        elif name.startswith("DriftedColumnsCount"):
            result["dataset_drift"] = value
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reference")
    parser.add_argument("current")
    parser.add_argument("--html")
    args = parser.parse_args()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    print(json.dumps(drift_verdicts(reference, current, args.html), default=str))


if __name__ == "__main__":
    main()
