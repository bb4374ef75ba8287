#!/usr/bin/env bash
# Runs a command with the services the tests need, and exports PACKAGES_TEST_* for them:
# - PostgreSQL and RabbitMQ: installed from Debian's packages when missing and this runs
#   as root, started when not running; or servers elsewhere, named by
#   PACKAGES_TEST_POSTGRES_URL / PACKAGES_TEST_AMQP_URL;
# - an S3 server (s3s-fs, built once into .tools/, started on a free port for this run);
# - the PyPI client cloudfoundry-client (installed once into .tools/venv).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
s3s="$tools/bin/s3s-fs"

log() { printf '==> %s\n' "$*" >&2; }

# Debian packages, installed only as root with apt-get; otherwise the message says what
# to install. Servers elsewhere: set PACKAGES_TEST_POSTGRES_URL / PACKAGES_TEST_AMQP_URL.
can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  log "installing $* (Debian packages, once)"
  if [ -z "${apt_updated:-}" ]; then apt-get update -qq >&2; apt_updated=1; fi
  # Nothing asks questions, and no init system starts services here: this script does.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

missing() {
  printf '%s is not installed and this script cannot install it (it needs root and apt-get).
' "$1" >&2
  printf 'Install it (Debian/Ubuntu: apt-get install %s), or point %s at a running server.
' "$2" "$3" >&2
  exit 1
}

ensure_postgres() {
  if [ -n "${PACKAGES_TEST_POSTGRES_URL:-}" ]; then
    log "PostgreSQL: using PACKAGES_TEST_POSTGRES_URL"
    return
  fi
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then return; fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    can_install || missing PostgreSQL postgresql PACKAGES_TEST_POSTGRES_URL
    apt_install postgresql
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    # The tests connect as postgres over TCP without a password, as on a developer box.
    sed -i '1i host all postgres 127.0.0.1/32 trust' "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 1; done
  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1
}

ensure_rabbitmq() {
  if [ -n "${PACKAGES_TEST_AMQP_URL:-}" ]; then
    log "RabbitMQ: using PACKAGES_TEST_AMQP_URL"
    return
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    can_install || missing RabbitMQ rabbitmq-server PACKAGES_TEST_AMQP_URL
    apt_install rabbitmq-server
  fi
  if rabbitmq-diagnostics -q ping >/dev/null 2>&1; then return; fi
  log "starting RabbitMQ"
  rabbitmq-server -detached >&2 || true
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
