#!/usr/bin/env bash
# The build `make run` makes (`packages` without default features: no libpq, no RabbitMQ
# or S3 client), run for real: it serves the embedded default until SIGTERM and exits 0,
# and refuses each production backend as a configuration error (exit 2, one line).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet -p packages --no-default-features --bins --target-dir "$root/target/lean"
bin="$root/target/lean/debug/packages"
work=$(mktemp -d "${TMPDIR:-/tmp}/packages-lean.XXXXXX")
trap 'rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fail() { echo "lean build: $*" >&2; exit 1; }

(cd "$work" && PACKAGES__SERVER__BIND="127.0.0.1:$port" exec "$bin" >"$work/serve.log" 2>&1) &
pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || fail "packages died: $(tail -n 3 "$work/serve.log")"
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null || fail "no /healthz on 127.0.0.1:$port"
kill -TERM "$pid"
wait "$pid" || fail "packages exited $? after SIGTERM"
echo "lean build: serves the embedded default and stops cleanly"

refuses() {
  local setting=$1 expected=$2 code=0
  (cd "$work" && env "$setting" PACKAGES__SERVER__BIND="127.0.0.1:$port" "$bin" >"$work/out" 2>&1) || code=$?
  [ "$code" = 2 ] || fail "$setting: exit $code, expected 2: $(tail -n 1 "$work/out")"
  tail -n 1 "$work/out" | grep -qF "$expected" || fail "$setting: $(tail -n 1 "$work/out")"
  echo "lean build: refuses $setting (exit 2)"
}
refuses PACKAGES__DATABASE__URL=postgres://postgres@127.0.0.1:5432/postgres "database.url: this build has no PostgreSQL support"
refuses PACKAGES__QUEUE__URL=amqp://guest:guest@127.0.0.1:5672/%2f "queue.url amqp://: this build has no AMQP support"
refuses PACKAGES__BLOBSTORE__KIND=s3 "blobstore.kind = s3: this build has no S3 support"
