#!/usr/bin/env bash
# Runs a command with the services the tests need: PostgreSQL and RabbitMQ (started if
# they are installed but not running) and an S3 server (s3s-fs, built once into .tools/
# and started on a free port for this run only), and the PyPI client cloudfoundry-client
# (installed once into .tools/venv by python-client.sh). Exports PACKAGES_TEST_* for the tests.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
s3s="$tools/bin/s3s-fs"

log() { printf '==> %s\n' "$*" >&2; }

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 1; done
  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1
}

ensure_rabbitmq() {
  if rabbitmq-diagnostics -q ping >/dev/null 2>&1; then return; fi
  log "starting RabbitMQ"
  rabbitmq-server -detached
  for _ in $(seq 1 60); do rabbitmq-diagnostics -q ping >/dev/null 2>&1 && return; sleep 1; done
  echo "RabbitMQ did not come up on 127.0.0.1:5672" >&2; exit 1
}

ensure_s3s() {
  if [ -x "$s3s" ]; then return; fi
  log "building the S3 test server (s3s-fs, once)"
  cargo install --quiet --locked --root "$tools" s3s-fs@0.14.1 --features binary
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ensure_postgres
ensure_rabbitmq
ensure_s3s
PACKAGES_TEST_PYTHON="${PACKAGES_TEST_PYTHON:-$("$root/scripts/python-client.sh")}"
export PACKAGES_TEST_PYTHON

data=$(mktemp -d "${TMPDIR:-/tmp}/packages-s3.XXXXXX")
port=$(free_port)
"$s3s" --host 127.0.0.1 --port "$port" --access-key packages-test --secret-key packages-test-secret "$data" \
  >"$data.log" 2>&1 &
s3s_pid=$!
cleanup() { kill "$s3s_pid" 2>/dev/null || true; wait "$s3s_pid" 2>/dev/null || true; rm -rf "$data" "$data.log"; }
trap cleanup EXIT
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

export PACKAGES_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
export PACKAGES_TEST_S3_ACCESS_KEY=packages-test
export PACKAGES_TEST_S3_SECRET_KEY=packages-test-secret
export PACKAGES_TEST_POSTGRES_URL="${PACKAGES_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export PACKAGES_TEST_AMQP_URL="${PACKAGES_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
log "S3 test server on 127.0.0.1:$port"
"$@"
