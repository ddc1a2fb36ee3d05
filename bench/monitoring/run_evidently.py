"""Evidently on the benchmark day: for each hour, a report with DataDriftPreset and ClassificationPreset against
the reference, as a team running Evidently per window would. Prints the drifted-column count per hour.

usage: python run_evidently.py REFERENCE ANALYSIS
"""

import sys

import pandas as pd
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.presets import ClassificationPreset, DataDriftPreset


def main() -> None:
    reference = pd.read_parquet(sys.argv[1])
    analysis = pd.read_parquet(sys.argv[2])
    numeric = [c for c in reference.columns if c.startswith("num_")]
    categorical = [c for c in reference.columns if c.startswith("cat_")]
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=categorical,
        classification=[BinaryClassification(target="label", prediction_labels="prediction", prediction_probas="probability")],
    )
    reference_set = Dataset.from_pandas(reference, data_definition=definition)
    hours = analysis.timestamp.dt.floor("h")
    for hour, frame in analysis.groupby(hours):
        current = Dataset.from_pandas(frame.drop(columns=["timestamp"]), data_definition=definition)
        snapshot = Report([DataDriftPreset(columns=numeric + categorical), ClassificationPreset()]).run(
            current_data=current, reference_data=reference_set)
        drifted = next((m["value"] for m in snapshot.dict()["metrics"] if m.get("metric_name", "").startswith("DriftedColumnsCount")), None)
        print(hour, drifted, flush=True)


if __name__ == "__main__":
    main()
