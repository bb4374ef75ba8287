#!/usr/bin/env bash
# Runs a command with a second S3 server for the benchmark: garage, a distributed S3
# store from crates.io (AGPL-3.0, built once into .tools/garage, about ten minutes on two
# cores; never linked into the service). One node on free ports in a scratch directory,
# with a key that may create buckets; exports PACKAGES_BENCH_GARAGE_* for the command.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/garage/bin/garage"
log() { printf '==> %s\n' "$*" >&2; }

if [ ! -x "$bin" ]; then
  log "building the second S3 server (garage 2.5.0, once; about ten minutes)"
  cargo install --quiet --locked --root "$root/.tools/garage" garage@2.5.0
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
dir=$(mktemp -d "${TMPDIR:-/tmp}/packages-garage.XXXXXX")
s3_port=$(free_port)
rpc_port=$(free_port)
admin_port=$(free_port)
cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML
garage() { "$bin" -c "$dir/garage.toml" "$@"; }
# The binary itself in the background (not the shell function): $! must be its pid.
"$bin" -c "$dir/garage.toml" server >"$dir/server.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
# A signal (Ctrl-C on make bench) ends the script through its EXIT trap too.
trap 'exit 130' INT TERM HUP
for _ in $(seq 1 100); do
  if garage status >/dev/null 2>&1; then break; fi
  sleep 0.1
done
node=$(garage node id -q 2>/dev/null | cut -d@ -f1)
garage layout assign -z dc1 -c 1G "$node" >/dev/null
garage layout apply --version 1 >/dev/null
access_key="GK$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
secret_key=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
garage key import --yes -n bench "$access_key" "$secret_key" >/dev/null
garage key allow --create-bucket bench >/dev/null

export PACKAGES_BENCH_GARAGE_ENDPOINT="http://127.0.0.1:$s3_port"
export PACKAGES_BENCH_GARAGE_REGION=garage
export PACKAGES_BENCH_GARAGE_ACCESS_KEY="$access_key"
export PACKAGES_BENCH_GARAGE_SECRET_KEY="$secret_key"
log "garage on 127.0.0.1:$s3_port"
"$@"
