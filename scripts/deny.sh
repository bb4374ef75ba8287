#!/usr/bin/env bash
# cargo deny (make lint): licences, duplicate versions and sources from deny.toml, then
# the RustSec advisories. cargo-deny is built once into .tools/. The advisory database
# comes from GitHub; where GitHub is out of reach, a database fetched earlier is used and
# its age said, and with none the check fails saying so.
set -euo pipefail

version=0.20.2
root=$(cd "$(dirname "$0")/.." && pwd)
deny="$root/.tools/bin/cargo-deny"
if [ "$("$deny" --version 2>/dev/null)" != "cargo-deny $version" ]; then
  printf '==> building cargo-deny %s into .tools/ (once)\n' "$version" >&2
  cargo install --quiet --locked --root "$root/.tools" "cargo-deny@$version"
fi
cd "$root"
"$deny" check bans licenses sources
if "$deny" check advisories; then exit 0; fi
dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
db=$(ls -d "$dbs"/advisory-db-* 2>/dev/null | head -n1 || true)
if [ -n "$db" ] && [ -d "$db/.git" ]; then
  printf '==> advisories: using the local database in %s, last updated %s\n' \
    "$db" "$(git -C "$db" log -1 --format=%cd --date=short)" >&2
  "$deny" --offline check advisories
else
  echo "advisories: the RustSec database could not be fetched from GitHub and none is stored in $dbs" >&2
  exit 1
fi
