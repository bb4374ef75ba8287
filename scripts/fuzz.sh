#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (first argument, default 300): the zip check, the
# upload form reader and the JSON bodies. Seeds in fuzz/seeds/ (crashes found once stay
# there as regression inputs); what the fuzzer learns goes to the git-ignored fuzz/corpus/.
# Prints executions per target; fails on the first crash.
set -euo pipefail

seconds=${1:-300}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo_fuzz="$root/.tools/bin/cargo-fuzz"
targets=(zip_check multipart_form json_bodies)

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "SKIPPED fuzzing: it needs a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 0
fi
if [ ! -x "$cargo_fuzz" ]; then
  echo "==> building cargo-fuzz (once, into .tools/)" >&2
  cargo install --quiet --locked --root "$root/.tools" cargo-fuzz@0.13.2
fi
export RUSTUP_TOOLCHAIN=nightly
cd "$root"
"$cargo_fuzz" build --fuzz-dir fuzz >/dev/null
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log=$(mktemp)
  if ! "$cargo_fuzz" run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
      -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
    rm -f "$log"
    exit 1
  fi
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -n 1 || true)
  echo "fuzz $target: ${runs:-no summary}, no crash"
  rm -f "$log"
done
