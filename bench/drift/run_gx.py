"""Validates a Parquet file with Great Expectations against a suite file (GX JSON) and prints the verdicts.

usage: python run_gx.py DATA SUITE
"""

import argparse
import json

import pandas as pd

import great_expectations as gx
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("suite")
    args = parser.parse_args()
    with open(args.suite) as handle:
        suite_json = json.load(handle)
    frame = pd.read_parquet(args.data)
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("pandas")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(
        name=suite_json["name"],
        expectations=[
            ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"]).to_domain_obj()
            for e in suite_json["expectations"]
        ],
    )
    result = batch.validate(suite, result_format="SUMMARY")
    print(json.dumps({"success": result.success, "statistics": result.statistics}, default=str))


if __name__ == "__main__":
    main()
