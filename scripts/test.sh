#!/usr/bin/env bash
# Runs every Loopline test:
#   1. Rust unit and integration tests, including the storage conformance suites against SQLite,
#      PostgreSQL, a local directory and an S3-compatible server;
#   2. the MLflow compatibility suite (tests/compat/mlflow) with the real mlflow client from PyPI,
#      once against SQLite + local artifacts and once against PostgreSQL + S3;
#   3. the LLM gateway suite (tests/compat/gateway): the real openai and anthropic SDKs against the gateway in
#      front of fake providers (the loopline-fake-llm example binary): streams, tools, embeddings, fallbacks,
#      errors, tokens; and the stock mlflow client's AI-gateway store making secrets, models and endpoints;
#   3b. the vector suite (tests/compat/vectors): the real qdrant-client against Loopline's Qdrant API, every
#      answer compared with the client's own local mode on the same data; an acknowledged upsert survives kill -9;
#   4. the serving suite (tests/compat/serving): every model of the test set (native XGBoost/LightGBM, ONNX
#      exports, scikit-learn and custom pyfunc models in the Python worker) through tritonclient.http and
#      requests, equal to mlflow.pyfunc / onnxruntime; `loopline serve` and `loopline predict` with models:/;
#   5. the data suite (tests/compat/stats): statistics against scipy, drift verdicts against Evidently,
#      validation results against Great Expectations, and a headless-Chromium look at the HTML report;
#   6. the monitoring suite (tests/compat/monitoring): window performance against scikit-learn, estimated
#      performance against NannyML's CBPE, the shipped Prometheus rules through promtool;
#   7. the pipelines suite (tests/compat/pipelines): a DVC project made by the real dvc package, imported;
#   7b. the feature store suite (tests/compat/features): training sets equal to Feast's own
#      get_historical_features on generated data with every edge of the point-in-time rules, in memory and spilled;
#   8. the loop suite (tests/compat/loop): `loopline quickstart` end to end, versioned data on S3,
#      pipeline steps on a real Ray head node (from the ray package) through its Jobs API, and the web UI in
#      Chromium driven by Playwright (every stock MLflow page and every Loopline page; screenshots are kept in
#      target/browser-screenshots).
# It installs what it needs (a venv in .venv, PostgreSQL and Redis from Debian packages if absent) and starts its
# own servers on loopback, stopping them on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-services.sh

setup_venv
setup_stats_venv
ensure_chromium
ensure_promtool
start_postgres
start_redis
start_s3

# The Python model worker and ONNX Runtime come from the project venv; say so explicitly for every test.
VENV_DIR="$(cd "$(dirname "$PYTHON")/.." && pwd)"
export LOOPLINE_PYTHON="$VENV_DIR/bin/python"
export ORT_DYLIB_PATH="$(ls "$VENV_DIR"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"

echo "==> building"
# A fresh build gains nothing from incremental state, and it cost gigabytes of disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --all-targets --locked

echo "==> Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

export LOOPLINE_BIN="$PWD/target/debug/loopline"

echo "==> MLflow compatibility suite: SQLite + local artifacts"
"$PYTHON" -m pytest tests/compat/mlflow -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> MLflow compatibility suite: PostgreSQL + S3, auth on, as an editor with an API token"
LOOPLINE_COMPAT_BACKEND_STORE_URI="$(create_postgres_database "compat_$RANDOM$RANDOM")" \
LOOPLINE_COMPAT_ARTIFACTS_DESTINATION="s3://$LOOPLINE_TEST_S3_BUCKET/compat" \
LOOPLINE_COMPAT_AUTH=token \
  "$PYTHON" -m pytest tests/compat/mlflow -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> MLflow compatibility suite: SQLite, auth on, as an editor with a user name and password"
LOOPLINE_COMPAT_AUTH=basic "$PYTHON" -m pytest tests/compat/mlflow -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> auth with the real clients: the first admin's one-time code, OIDC ID tokens, loopback without auth"
"$PYTHON" -m pytest tests/compat/auth -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> LLM gateway suite: the openai and anthropic SDKs and MLflow's gateway API against loopline in front of fake providers"
"$PYTHON" -m pytest tests/compat/gateway -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> vector suite: qdrant-client against loopline, compared with qdrant-client's local mode; kill -9"
"$PYTHON" -m pytest tests/compat/vectors -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> serving suite: tritonclient, requests and mlflow.pyfunc against loopline server, serve and predict"
"$PYTHON" -m pytest tests/compat/serving -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> data suite: scipy, Evidently, Great Expectations, report in Chromium"
"$STATS_PYTHON" -m pytest tests/compat/stats -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> monitoring suite: scikit-learn, NannyML, promtool"
"$STATS_PYTHON" -m pytest tests/compat/monitoring -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> pipelines suite: a project made by the real dvc package, imported"
"$STATS_PYTHON" -m pytest tests/compat/pipelines -q -p no:cacheprovider -W ignore::DeprecationWarning

setup_features_venv
echo "==> feature store suite: training sets and online features against Feast itself"
"$FEATURES_PYTHON" -m pytest tests/compat/features -q -p no:cacheprovider -W ignore::DeprecationWarning

setup_ray
echo "==> loop suite: loopline quickstart with scikit-learn and the stock mlflow client; data on S3; a Ray head node; the web UI in Chromium"
"$PYTHON" -m pytest tests/compat/loop -q -p no:cacheprovider -W ignore::DeprecationWarning

echo "==> all tests passed"
