#!/usr/bin/env bash
# Installs the PyPI packages that hold the service to proto/openapi.yaml (pinned) into the
# virtualenv under .tools/ that scripts/python-client.sh also uses, once:
#   jsonschema + PyYAML        scripts/check-openapi.py (recorded responses against the document)
#   openapi-spec-validator     the document itself is valid OpenAPI 3.1
#   schemathesis               scripts/schemathesis.sh (generated requests against the service)
# Prints the virtualenv's python on stdout.
set -euo pipefail

packages=(jsonschema==4.26.0 PyYAML==6.0.3 openapi-spec-validator==0.9.0 schemathesis==4.32.5)
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/venv"
python="$venv/bin/python"

installed() {
  "$python" - "${packages[@]}" <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
for spec in sys.argv[1:]:
    name, version = spec.split("==")
    if m.version(name) != version:
        sys.exit(1)
EOF
}

if ! installed; then
  printf '==> installing %s into .tools/venv (once)\n' "${packages[*]}" >&2
  [ -x "$python" ] || python3 -m venv "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
  installed || { echo "${packages[*]} did not install" >&2; exit 1; }
fi
echo "$python"
