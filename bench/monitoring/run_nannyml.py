"""NannyML's CBPE on the benchmark day: fit on the reference, estimate accuracy and ROC AUC per hour.

usage: python run_nannyml.py REFERENCE ANALYSIS
"""

import sys

import nannyml as nml
import pandas as pd


def main() -> None:
    columns = ["probability", "prediction", "label"]
    reference = pd.read_parquet(sys.argv[1], columns=columns)
    # CBPE chunks by period on both sides: the reference gets the day before, spread evenly.
    reference["timestamp"] = pd.Timestamp("2026-10-31", tz="UTC") + pd.to_timedelta(
        range(len(reference)), unit="ms") * (86_400_000 // max(len(reference), 1))
    analysis = pd.read_parquet(sys.argv[2], columns=["timestamp", "probability", "prediction"])
    estimator = nml.CBPE(y_pred_proba="probability", y_pred="prediction", y_true="label", timestamp_column_name="timestamp",
                         problem_type="classification_binary", metrics=["roc_auc", "accuracy"], chunk_period="h")
    estimator.fit(reference)
    result = estimator.estimate(analysis).filter(period="analysis").to_df()
    print(result[("accuracy", "value")].round(4).tolist())


if __name__ == "__main__":
    main()
