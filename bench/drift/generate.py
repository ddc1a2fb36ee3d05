"""Writes the drift benchmark's data: a reference and a current table with 15 numeric and 5 categorical columns.

Columns num_00..num_14 mix normal, log-normal, uniform, integer and heavy-tailed shapes; cat_0..cat_4 hold
labels with skewed frequencies. In the current table a third of the columns are shifted (mean, scale or label
mix) so the drift verdicts have something to find; the rest come from the same distributions.

usage: python generate.py OUT_DIR [--reference-rows N] [--current-rows N] [--seed S]
"""

import argparse
import pathlib

import numpy as np
import pandas as pd


def make_table(rows: int, drifted: bool, rng: np.random.Generator) -> pd.DataFrame:
    columns = {}
    for i in range(15):
        shift = drifted and i % 3 == 0
        shape = i % 5
        if shape == 0:
            values = rng.normal(10.0 * i, 1.0 + i, rows) + (0.5 * (1.0 + i) if shift else 0.0)
        elif shape == 1:
            values = rng.lognormal(0.0, 0.6 * (1.3 if shift else 1.0), rows)
        elif shape == 2:
            values = rng.uniform(0.0, 100.0 + (30.0 if shift else 0.0), rows)
        elif shape == 3:
            values = rng.poisson(4.0 + (2.0 if shift else 0.0), rows).astype("int64")
        else:
            values = rng.standard_t(3, rows) * (1.6 if shift else 1.0)
        columns[f"num_{i:02d}"] = values
    for j in range(5):
        labels = np.array([f"c{j}_{k}" for k in range(4 + 3 * j)])
        weights = np.linspace(1.0, 3.0, len(labels))
        if drifted and j % 2 == 0:
            weights = weights[::-1]
        columns[f"cat_{j}"] = rng.choice(labels, rows, p=weights / weights.sum())
    return pd.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--reference-rows", type=int, default=200_000)
    parser.add_argument("--current-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    make_table(args.reference_rows, False, rng).to_parquet(args.out / "reference.parquet", index=False)
    make_table(args.current_rows, True, rng).to_parquet(args.out / "current.parquet", index=False)


if __name__ == "__main__":
    main()
