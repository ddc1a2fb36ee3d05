"""Writes the monitoring benchmark's data: a labelled reference table, and one day of logged traffic in the
prediction log's own layout (predictions/model=bench/hour=H/part-<written-ms>-<uuid>.parquet, files of 10,000
rows, with the columns, request keys and (lack of) compression of the files serving writes; feedback/hour=H/...
with every label, received an hour after its prediction), plus the same day as one Parquet table with a timestamp
for the reference tools.

20 features (15 numeric, 5 categorical); a binary classifier that is overconfident (it reports sigmoid(2z) where
the label's probability is sigmoid(z)), so CBPE calibrates. From hour 12 three features drift.

usage: python generate.py OUT_DIR [--rows N] [--reference-rows N] [--seed S]
"""

import argparse
import pathlib
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.parquet as pq

DAY_START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
HOUR_MS = 3_600_000
FILE_ROWS = 10_000


def request_keys(ids: list[str]) -> np.ndarray:
    """The log's request_key column as serving computes it: 64-bit FNV-1a of each id (32 hex digits here), then
    SplitMix64's finaliser."""
    width = 32
    data = np.frombuffer("".join(ids).encode("ascii"), dtype=np.uint8).reshape(len(ids), width)
    keys = np.full(len(ids), 0xCBF29CE484222325, dtype=np.uint64)
    for position in range(width):
        keys ^= data[:, position].astype(np.uint64)
        keys *= np.uint64(0x100000001B3)
    keys ^= keys >> np.uint64(30)
    keys *= np.uint64(0xBF58476D1CE4E5B9)
    keys ^= keys >> np.uint64(27)
    keys *= np.uint64(0x94D049BB133111EB)
    keys ^= keys >> np.uint64(31)
    return keys


def write_log_file(table: pa.Table, path: pathlib.Path) -> None:
    """Written as serving's prediction log writes: no compression, and a dictionary only for columns with few
    distinct values (at most a quarter of the file's first 1,024 rows)."""
    head = table.slice(0, 1024)
    few = [name for name in head.column_names
           if pa.compute.count_distinct(head[name]).as_py() <= head.num_rows // 4]
    pq.write_table(table, path, compression="none", use_dictionary=few)


def features(rows: int, drifted: bool, rng: np.random.Generator) -> pd.DataFrame:
    columns = {}
    for i in range(15):
        shift = drifted and i in (0, 4, 8)
        columns[f"num_{i:02d}"] = rng.normal(0.0, 1.0 + 0.1 * i, rows) + (0.8 if shift else 0.0)
    for j in range(5):
        labels = np.array([f"c{j}_{k}" for k in range(4 + 2 * j)])
        weights = np.linspace(1.0, 3.0, len(labels))
        columns[f"cat_{j}"] = rng.choice(labels, rows, p=weights / weights.sum())
    return pd.DataFrame(columns)


def score(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    z = 0.9 * frame.num_00 - 0.6 * frame.num_01 + 0.4 * frame.num_02 + 0.3 * (frame.cat_0 == "c0_0")
    truth = 1 / (1 + np.exp(-z))
    frame = frame.copy()
    frame["probability"] = 1 / (1 + np.exp(-2 * z))
    frame["prediction"] = (frame.probability >= 0.5).astype(np.int64)
    frame["label"] = (rng.uniform(size=len(frame)) < truth).astype(np.int64)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    score(features(args.reference_rows, False, rng), rng).to_parquet(args.out / "reference.parquet")
    artifacts = args.out / "data" / "artifacts"
    per_hour = args.rows // 24
    written = DAY_START_MS + 24 * HOUR_MS
    analysis = []
    for hour in range(24):
        frame = score(features(per_hour, hour >= 12, rng), rng)
        start = DAY_START_MS + hour * HOUR_MS
        frame["timestamp"] = pd.to_datetime(start + np.sort(rng.integers(0, HOUR_MS, per_hour)), unit="ms", utc=True)
        frame["request_id"] = [uuid.uuid4().hex for _ in range(per_hour)]
        frame["request_key"] = request_keys(list(frame.request_id))
        analysis.append(frame)
        label = pd.Timestamp(start, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H")
        later = pd.Timestamp(start + HOUR_MS, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H")
        for offset in range(0, per_hour, FILE_ROWS):
            part = frame.iloc[offset:offset + FILE_ROWS]
            written += 1
            columns = {
                "request_id": pa.array(part.request_id),
                "request_key": pa.array(part.request_key, type=pa.uint64()),
                "timestamp": pa.array(part.timestamp.astype("int64") // 1_000_000, type=pa.timestamp("ms", tz="UTC")),
                "model_version": pa.array(["1"] * len(part)),
                "role": pa.array(["served"] * len(part)),
                "row": pa.array(np.zeros(len(part), dtype=np.int64)),
                "latency_ms": pa.array(rng.gamma(2.0, 0.2, len(part))),
            }
            for column in [c for c in part.columns if c.startswith(("num_", "cat_"))]:
                columns[f"input.{column}"] = pa.array(part[column])
            columns["output.prediction"] = pa.array(part.prediction.astype(np.float64))
            columns["output.probability"] = pa.array(part.probability)
            directory = artifacts / "predictions" / "model=bench" / f"hour={label}"
            directory.mkdir(parents=True, exist_ok=True)
            write_log_file(pa.table(columns), directory / f"part-{written:013d}-{uuid.uuid4().hex}.parquet")
            feedback = artifacts / "feedback" / f"hour={later}"
            feedback.mkdir(parents=True, exist_ok=True)
            write_log_file(pa.table({
                "request_id": pa.array(part.request_id),
                "timestamp": pa.array(np.full(len(part), start + HOUR_MS, dtype=np.int64), type=pa.timestamp("ms", tz="UTC")),
                "label": pa.array(part.label.astype(str)),
            }), feedback / f"part-{written:013d}-{uuid.uuid4().hex}.parquet")
    pd.concat(analysis, ignore_index=True).drop(columns=["request_id", "request_key"]).to_parquet(args.out / "analysis.parquet")
    (args.out / "meta.txt").write_text(f"rows={per_hour * 24}\nday_start_ms={DAY_START_MS}\n")


if __name__ == "__main__":
    main()
