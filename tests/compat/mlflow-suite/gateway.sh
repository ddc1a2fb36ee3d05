#!/usr/bin/env bash
# Runs MLflow's own AI-gateway store tests against `loopline server` through the stock client's REST store.
# A measurement, not part of CI: see README.md ("MLflow's gateway store tests").
#
# usage: gateway.sh MLFLOW_SOURCES [OUT_DIR] [-- PYTEST_ARGS...]
#   MLFLOW_SOURCES  an MLflow git directory or work tree (tests/store/tracking/test_gateway_sql_store.py is taken
#                   from it, at MLFLOW_REF for a git directory, default HEAD)
#   OUT_DIR         where gateway.log goes (default /tmp/mlflow-suite)
# environment: LOOPLINE_BIN (default target/release/loopline, else target/debug/loopline), LOOPLINE_SUITE_VENV
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
SRC="${1:?usage: gateway.sh MLFLOW_SOURCES [OUT_DIR] [-- PYTEST_ARGS...]}"
shift
OUT=/tmp/mlflow-suite
if [[ $# -gt 0 && "$1" != "--" ]]; then OUT="$1"; shift; fi
[[ "${1:-}" != "--" ]] || shift
mkdir -p "$OUT"
VENV="${LOOPLINE_SUITE_VENV:-$REPO/.venv}"
if [[ -z "${LOOPLINE_BIN:-}" ]]; then
  LOOPLINE_BIN="$REPO/target/release/loopline"
  [[ -x "$LOOPLINE_BIN" ]] || LOOPLINE_BIN="$REPO/target/debug/loopline"
fi
export LOOPLINE_BIN
FILE=tests/store/tracking/test_gateway_sql_store.py
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlflow-gateway-suite.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1 && git -C "$SRC" cat-file -e "${MLFLOW_REF:-HEAD}:$FILE" 2>/dev/null; then
  git -C "$SRC" show "${MLFLOW_REF:-HEAD}:$FILE" > "$WORK/test_gateway_sql_store.py"
else
  cp "$SRC/$FILE" "$WORK/test_gateway_sql_store.py"
fi
cp "$HERE/gateway_store.py" "$WORK/test_gateway_against_loopline.py"
echo "client: mlflow $("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)'), server: $LOOPLINE_BIN"
status=0
(cd "$WORK" && MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 MLFLOW_HTTP_REQUEST_TIMEOUT=30 PYTHONDONTWRITEBYTECODE=1 \
  "$VENV/bin/python" -m pytest test_gateway_against_loopline.py -p no:cacheprovider -q -rA --color=no "$@" \
  > "$OUT/gateway.log" 2>&1) || status=$?
[[ $status -le 1 ]] || { tail -n 30 "$OUT/gateway.log"; exit 1; }
tail -n 1 "$OUT/gateway.log"
echo "details: $OUT/gateway.log"
