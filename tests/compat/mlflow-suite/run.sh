#!/usr/bin/env bash
# Runs five of MLflow's own server test files against `mlflow server` (baseline) and `loopline server`,
# then compares the two. A measurement, not part of CI: see README.md.
#
# usage: run.sh MLFLOW_SOURCES [OUT_DIR] [-- PYTEST_ARGS...]
#   MLFLOW_SOURCES  an MLflow git directory (a bare mirror or a clone) or a checkout's work tree
#   OUT_DIR         where the logs, junit XML, server logs and failures.md go (default /tmp/mlflow-suite)
#   PYTEST_ARGS     extra pytest arguments for both runs, e.g. -- -k "registered_model or alias"
# environment:
#   LOOPLINE_BIN            the binary to test (default: target/release/loopline, else target/debug/loopline)
#   MLFLOW_REF              the commit whose tests are taken from a git directory (default HEAD)
#   LOOPLINE_SUITE_VENV     the virtualenv with requirements.txt (default .venv-mlflow-suite at the repo root)
#   LOOPLINE_SUITE_TARGETS  which runs to do (default "mlflow loopline"; also "mlflow-inprocess",
#                           MLflow's fixtures untouched, see loopline_plugin.py)
#   PYTEST_TIMEOUT          seconds one test may take (default 300)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
SRC="${1:?usage: run.sh MLFLOW_SOURCES [OUT_DIR] [-- PYTEST_ARGS...]}"
shift
OUT=/tmp/mlflow-suite
if [[ $# -gt 0 && "$1" != "--" ]]; then OUT="$1"; shift; fi
[[ "${1:-}" != "--" ]] || shift
OUT="$(mkdir -p "$OUT" && cd "$OUT" && pwd)"
VENV="${LOOPLINE_SUITE_VENV:-$REPO/.venv-mlflow-suite}"
TARGETS="${LOOPLINE_SUITE_TARGETS:-mlflow loopline}"
if [[ -z "${LOOPLINE_BIN:-}" ]]; then
  LOOPLINE_BIN="$REPO/target/release/loopline"
  [[ -x "$LOOPLINE_BIN" ]] || LOOPLINE_BIN="$REPO/target/debug/loopline"
fi
FILES=(
  tests/tracking/test_rest_tracking.py
  tests/tracking/test_model_registry.py
  tests/tracking/test_mlflow_artifacts.py
  tests/tracing/test_otel_logging.py
  tests/tracing/test_otel_loading.py
)

# MLflow's tests (and its pytest configuration) only: the mlflow package under test is the installed one.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlflow-suite-src.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1 && git -C "$SRC" cat-file -e "${MLFLOW_REF:-HEAD}:tests" 2>/dev/null; then
  git -C "$SRC" archive "${MLFLOW_REF:-HEAD}" -- tests pyproject.toml | tar -x -C "$WORK"
  echo "MLflow tests from $SRC at $(git -C "$SRC" rev-parse --short "${MLFLOW_REF:-HEAD}")"
else
  cp -r "$SRC/tests" "$SRC/pyproject.toml" "$WORK/"
  echo "MLflow tests from the work tree $SRC"
fi
[[ ! -e "$WORK/mlflow" ]] || { echo "refusing: $WORK/mlflow would shadow the installed mlflow" >&2; exit 1; }

# The virtualenv, (re)installed when requirements.txt changes.
if ! cmp -s "$HERE/requirements.txt" "$VENV/.suite-requirements" 2>/dev/null; then
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements.txt"
  cp "$HERE/requirements.txt" "$VENV/.suite-requirements"
fi
echo "client: mlflow $("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)')"

export PATH="$VENV/bin:$PATH" PYTHONPATH="$HERE" PYTHONDONTWRITEBYTECODE=1
unset MLFLOW_TRACKING_URI MLFLOW_REGISTRY_URI
# The same client settings for both targets: one immediate retry, so a 5xx costs no minutes of backoff.
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=1 MLFLOW_HTTP_REQUEST_BACKOFF_JITTER=0 MLFLOW_HTTP_REQUEST_TIMEOUT=60
export LOOPLINE_BIN

for target in $TARGETS; do
  echo "== $target: ${#FILES[@]} files (log: $OUT/$target.log)"
  rm -rf "$OUT/$target-servers"
  status=0
  (cd "$WORK" && LOOPLINE_SUITE_TARGET="$target" LOOPLINE_SUITE_LOG_DIR="$OUT/$target-servers" \
    "$VENV/bin/python" -m pytest "${FILES[@]}" -p loopline_plugin -p no:cacheprovider \
      -q -rA --color=no --timeout "${PYTEST_TIMEOUT:-300}" \
      --junitxml "$OUT/$target.xml" -o junit_family=xunit1 "$@" \
      >"$OUT/$target.log" 2>&1) || status=$?
  # 0: all passed, 1: some failed, 5: nothing selected; anything else means the run itself broke.
  [[ $status -le 1 || $status -eq 5 ]] || { tail -n 30 "$OUT/$target.log"; echo "pytest exited $status" >&2; exit 1; }
  grep -E '^=+ .* in [0-9.]+s' "$OUT/$target.log" | tail -n 1
done

if [[ -f "$OUT/mlflow.xml" && -f "$OUT/loopline.xml" ]]; then
  "$VENV/bin/python" "$HERE/summarize.py" "$OUT/mlflow.xml" "$OUT/loopline.xml" "$OUT/failures.md"
  echo "Every test passing on MLflow and not on Loopline: $OUT/failures.md"
fi
