#!/usr/bin/env bash
# Drives the service with requests generated from proto/openapi.yaml (schemathesis, pinned
# in scripts/openapi-tools.sh) and fails on any answer the document does not allow:
#
#   not_a_server_error            no 5xx
#   status_code_conformance       every status is documented for its operation
#   content_type_conformance      every content type is documented for its status
#   response_schema_conformance   every body validates against its schema
#   response_headers_conformance  documented headers (Location of a 302, …) are there
#   ignored_auth                  an operation that needs a token refuses a request without one
#
# Left out on purpose: `unsupported_method` expects 405 for a method a path does not take;
# this service answers Cloud Controller's 404 NotFound (`Unknown request`) there, as Cloud
# Controller itself does (the document's `x-unknown-request`); scripts/check-openapi.py
# holds those answers to that document instead.
#
# Starts target/debug/packages (the embedded default; built by `make test`) on a free port
# with a temporary data directory, mints an admin token, creates an organization, space,
# app, roles and packages in each state, and points each operation's path parameters at
# them (a schemathesis.toml), so generated bodies and queries reach real resources; the
# stateful phase then follows the document's links (create an app, then its packages, …).
#
#   scripts/schemathesis.sh [MAX_EXAMPLES]    (default 50 per operation: about 30 s after the
#                                             build; SCHEMATHESIS_SEED to explore other cases)
set -euo pipefail

max_examples=${1:-50}
seed=${SCHEMATHESIS_SEED:-20261105}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${PACKAGES_BIN:-$root/target/debug/packages}
spec=${PACKAGES_OPENAPI:-$root/proto/openapi.yaml}
[ -x "$bin" ] || { echo "schemathesis: $bin is missing: build it first (cargo build)" >&2; exit 1; }
python=$("$root/scripts/openapi-tools.sh")
st="$(dirname "$python")/st"

work=$(mktemp -d "${TMPDIR:-/tmp}/packages-schemathesis.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api="http://127.0.0.1:$port"
export PACKAGES__DATABASE__URL="sqlite://$work/packages.db"
export PACKAGES__BLOBSTORE__LOCAL__ROOT="$work/blobs"
export PACKAGES__SERVER__BIND="127.0.0.1:$port"
export PACKAGES__AUTH__JWT_SECRET="schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export NO_COLOR=1

(cd "$work" && exec "$bin") >"$work/packages.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  if curl -fsS -o /dev/null "$api/readyz" 2>/dev/null; then break; fi
  kill -0 "$pid" 2>/dev/null || { echo "schemathesis: packages exited:" >&2; cat "$work/packages.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS -o /dev/null "$api/readyz" || { echo "schemathesis: packages not ready after 60 s" >&2; cat "$work/packages.log" >&2; exit 1; }

token=$(cd "$work" && "$bin" token --user 2b1e6c8e-7a51-4f0e-9d0c-5b3a8e1f7c42 --scopes cloud_controller.admin)

# Fixtures, and a configuration that points each operation's path parameters at them.
"$python" - "$api" "$token" "$work/schemathesis.toml" <<'EOF'
import io, json, sys, time, urllib.error, urllib.request, uuid, zipfile

api, token, target = sys.argv[1:]

def call(method, path, body=None, content_type="application/json", expect=(200, 201)):
    data = json.dumps(body).encode() if body is not None and content_type == "application/json" else body
    req = urllib.request.Request(api + path, data=data, method=method)
    req.add_header("Authorization", "bearer " + token)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req) as res:
            status, text = res.status, res.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    if status not in expect:
        sys.exit(f"schemathesis fixtures: {method} {path} answered {status}: {text[:500]!r}")
    return json.loads(text) if text else None

def rel(name, guid):
    return {name: {"data": {"guid": guid}}}

org = call("POST", "/v3/organizations", {"name": "schemathesis"})["guid"]
doomed_org = call("POST", "/v3/organizations", {"name": "schemathesis-doomed"})["guid"]
space = call("POST", "/v3/spaces", {"name": "dev", "relationships": rel("organization", org)})["guid"]
doomed_space = call("POST", "/v3/spaces", {"name": "doomed", "relationships": rel("organization", org)})["guid"]
app = call("POST", "/v3/apps", {"name": "web", "relationships": rel("space", space)})["guid"]
doomed_app = call("POST", "/v3/apps", {"name": "doomed", "relationships": rel("space", space)})["guid"]
user = str(uuid.uuid4())
role = call("POST", "/v3/roles", {"type": "space_auditor", "relationships": {**rel("user", user), **rel("space", space)}})["guid"]
doomed_role = call("POST", "/v3/roles", {"type": "organization_manager", "relationships": {**rel("user", user), **rel("organization", org)}})["guid"]

def package(kind="bits"):
    body = {"type": kind} if kind == "bits" else {"type": "docker", "url": "docker://cloudfoundry/runtime-ci"}
    return call("POST", f"/v3/apps/{app}/packages", body)["guid"]

awaiting = package()
direct = package()
doomed_package = package()
package("docker")
ready = package()
zipped = io.BytesIO()
with zipfile.ZipFile(zipped, "w") as z:
    z.writestr("index.html", "<h1>schemathesis</h1>\n")
boundary = "schemathesis-" + uuid.uuid4().hex
form = (
    f"--{boundary}\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"package.zip\"\r\n"
    f"Content-Type: application/zip\r\n\r\n"
).encode() + zipped.getvalue() + f"\r\n--{boundary}--\r\n".encode()
call("POST", f"/v3/packages/{ready}/upload", form, f"multipart/form-data; boundary={boundary}")
deadline = time.time() + 60
while call("GET", f"/v3/packages/{ready}")["state"] != "READY":
    if time.time() > deadline:
        sys.exit("schemathesis fixtures: the uploaded package did not become READY in 60 s")
    time.sleep(0.1)
call("PATCH", f"/v3/packages/{ready}", {"metadata": {"labels": {"env": "test"}, "annotations": {"note": "fixture"}}})
link = call("POST", f"/v3/packages/{direct}/direct_uploads")
upload_href = link["links"]["upload"]["href"]
query = dict(p.split("=", 1) for p in upload_href.split("?", 1)[1].split("&"))

# Each operation's path parameters name a fixture (DELETEs their own doomed one, so the
# fixtures stay for the other operations); bodies and queries are generated.
fixtures = {
    "getApp": {"path.guid": app},
    "deleteApp": {"path.guid": doomed_app},
    "listPackagesOfApp": {"path.guid": app},
    "createOrCopyPackageForApp": {"path.guid": app},
    "getPackage": {"path.guid": ready},
    "updatePackage": {"path.guid": ready},
    "deletePackage": {"path.guid": doomed_package},
    "uploadBits": {"path.guid": awaiting},
    "issueDirectUpload": {"path.guid": direct},
    "putDirectUploadBits": {"path.guid": direct, "path.id": link["guid"],
                            "query.expires": int(query["expires"]), "query.signature": query["signature"]},
    "completeDirectUpload": {"path.guid": direct, "path.id": link["guid"]},
    "downloadBits": {"path.guid": ready},
    "listDropletsOfPackage": {"path.guid": ready},
    "stagePackage": {"path.guid": ready},
    "getOrganization": {"path.guid": org},
    "deleteOrganization": {"path.guid": doomed_org},
    "getSpace": {"path.guid": space},
    "deleteSpace": {"path.guid": doomed_space},
    "getRole": {"path.guid": role},
    "deleteRole": {"path.guid": doomed_role},
}
with open(target, "w", encoding="utf-8") as f:
    for operation_id, parameters in fixtures.items():
        f.write("[[operations]]\n")
        f.write(f"include-operation-id = {json.dumps(operation_id)}\n")
        f.write("parameters = { " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in parameters.items()) + " }\n\n")
print(f"schemathesis: fixtures ready (org {org}, app {app}, packages {ready} READY, {awaiting} AWAITING_UPLOAD)")
EOF

status=0
# From the scratch directory: schemathesis keeps its cache in the working directory. One
# worker: with two, hypothesis parses sources from two threads at once, which CPython 3.11.7
# (this machine's python3) fails with "AST constructor recursion depth mismatch".
(cd "$work" && timeout 240 "$st" --config-file "$work/schemathesis.toml" run "$spec" \
  --url "$api" \
  --header "Authorization: bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,ignored_auth \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$max_examples" \
  --workers 1 \
  --seed "$seed" \
  --request-timeout 30 \
  --suppress-health-check all \
  --no-color) || status=$?

# What the service answered, per operation that succeeded at least once: evidence that the
# requests reached real resources, not only 404s.
echo "schemathesis: answers per operation (status×count):"
sed -nE 's/.*method=([A-Z]+) route=([^ ]+).* status=([0-9]+) .*/\1 \2 \3/p' "$work/packages.log" \
  | sed -E 's/\}: / /' | sort | uniq -c \
  | awk '{k = $2 " " $3; a[k] = a[k] " " $4 "x" $1; if ($4 ~ /^2/) ok[k] = 1}
         END {for (k in ok) print "  " k ":" a[k]}' | sort -k2

if grep -n "panicked" "$work/packages.log" >&2; then
  echo "schemathesis: the service panicked (above)" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis: FAILED (exit $status); the service's log:" >&2
  tail -n 40 "$work/packages.log" >&2
fi
exit "$status"
