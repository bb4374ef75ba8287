#!/usr/bin/env bash
# `make bench` / `make bench-quick`: builds the release binaries, starts what the
# benchmarks need (PostgreSQL, RabbitMQ, the S3 server, wrk) and runs the bench driver,
# which prints its figures and writes BENCHMARKS.md (quick: target/BENCHMARKS-quick.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk" >&2
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi
cargo build --release --bins
cargo build --release -p packages-tests --bin bench
PACKAGES_TEST_BIN_DIR="$PWD/target/release" ./scripts/test-services.sh ./target/release/bench "$@"
