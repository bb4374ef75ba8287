#!/usr/bin/env bash
# Installs the PyPI client `cloudfoundry-client` (pinned) into a virtualenv under .tools/
# once, for the black-box test that drives the service with it (tests/tests/cf_python_client.rs).
# Prints the virtualenv's python on stdout.
set -euo pipefail

version=1.40.4
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/venv"
python="$venv/bin/python"

installed() {
  "$python" -c 'import importlib.metadata as m; print(m.version("cloudfoundry-client"))' 2>/dev/null
}

if [ "$(installed || true)" != "$version" ]; then
  printf '==> installing cloudfoundry-client %s into .tools/venv (once)\n' "$version" >&2
  [ -x "$python" ] || python3 -m venv "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "cloudfoundry-client==$version" >&2
  [ "$(installed)" = "$version" ] || { echo "cloudfoundry-client $version did not install" >&2; exit 1; }
fi
echo "$python"
