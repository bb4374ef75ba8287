#!/usr/bin/env bash
# `make bench` / `make bench-quick`: builds the release binaries, starts what the
# benchmarks need (PostgreSQL, RabbitMQ, the S3 servers, wrk) and runs the bench driver,
# which prints its figures and writes BENCHMARKS.md (quick: target/BENCHMARKS-quick.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk" >&2
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi
# The service as production builds it (the `production` profile, optimised across
# crates); the driver in the plain release profile.
cargo build --profile production -p packages -p packages-api -p packages-worker --bins
cargo build --release -p packages-tests --bin bench
# The full run (and --uploads-only) also measures uploads on a second S3 server
# (garage); the other runs and PACKAGES_BENCH_GARAGE=0 skip it.
second_s3=(./scripts/garage.sh)
case " $* " in
  *" --quick "* | *" --scale-out-only "* | *" --embedded-reads-only "* | *" --stack-reads-only "* | *" --embedded-uploads-only "*) second_s3=() ;;
esac
if [ "${PACKAGES_BENCH_GARAGE:-1}" = 0 ]; then second_s3=(); fi
PACKAGES_TEST_BIN_DIR="$PWD/target/production" ./scripts/test-services.sh "${second_s3[@]}" ./target/release/bench "$@"
