"""Validates a Parquet file with Great Expectations against a suite file (GX JSON) and prints the verdicts.

usage: python run_gx.py DATA SUITE
"""

import argparse
import json

import pandas as pd

import great_expectations as gx
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration


def gx_validate(frame: pd.DataFrame, name: str, expectations: list[tuple[str, dict]]) -> tuple[dict, dict]:
    """Runs the expectations on the frame with GX's pandas engine: the suite as GX writes it, and the result
    (SUMMARY format) as a JSON dictionary."""
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("pandas")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(
        name=name,
        expectations=[ExpectationConfiguration(type=kind, kwargs=kwargs).to_domain_obj() for kind, kwargs in expectations],
    )
    suite_json = suite.to_json_dict()
    return suite_json, batch.validate(suite, result_format="SUMMARY").to_json_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("suite")
    args = parser.parse_args()
    with open(args.suite) as handle:
        suite_json = json.load(handle)
    frame = pd.read_parquet(args.data)
    expectations = [(e["type"], e["kwargs"]) for e in suite_json["expectations"]]
    _, result = gx_validate(frame, suite_json["name"], expectations)
    print(json.dumps({"success": result["success"], "statistics": result["statistics"]}, default=str))


if __name__ == "__main__":
    main()
