#!/usr/bin/env python3
"""Holds every response the black-box suite received against proto/openapi.yaml.

    check-openapi.py DIR [--spec proto/openapi.yaml]

DIR holds the `responses-<pid>.jsonl` files the test harness writes when
PACKAGES_TEST_RESPONSES names it (tests/src/client.rs): one JSON line per response, with
the request's method and URL, which process answered it (`api`, `worker`, `other`), the
status, the content type and the body (as text when it is JSON or text, else its length).

Each response of the API is matched to an operation of the document (path template and
method). Its status must be documented for that operation, its content type must be one
the document gives for that status, and its body must validate against that schema. A
path or method the API does not serve must have answered the document's
`x-unknown-request` (Cloud Controller's 404 NotFound). Worker responses are held against
the operator endpoints; anything else a worker answered must be its plain 404. Responses
of other servers (presigned S3 URLs) are counted and left out.

Exits 1 listing every mismatch (operation, status, JSON path, reason); prints how many
responses and operations were checked. Run with the python of scripts/openapi-tools.sh.
"""

import argparse
import collections
import json
import pathlib
import re
import sys
import urllib.parse

import jsonschema
import referencing
import referencing.jsonschema
import yaml
from openapi_spec_validator import validate as validate_openapi

ROOT = pathlib.Path(__file__).resolve().parent.parent
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
OPERATOR_PATHS = ("/healthz", "/readyz", "/metrics")
SPEC_URI = "urn:packages:openapi"


class Spec:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        validate_openapi(self.doc)
        resource = referencing.Resource.from_contents(
            self.doc, default_specification=referencing.jsonschema.DRAFT202012
        )
        self.registry = referencing.Registry().with_resource(SPEC_URI, resource)
        self.validators = {}
        self.routes = []
        for template, item in self.doc["paths"].items():
            literal = sum(1 for s in template.split("/") if s and not s.startswith("{"))
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            self.routes.append((literal, template, re.compile(pattern), item))
        # Literal segments win over templated ones, as in the router.
        self.routes.sort(key=lambda r: -r[0])

    def pointer(self, ref):
        assert ref.startswith("#/"), ref
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
        return node

    def validator(self, where):
        """A validator for the schema at JSON pointer `where` of the document."""
        if where not in self.validators:
            schema = {"$ref": SPEC_URI + where}
            self.validators[where] = jsonschema.Draft202012Validator(
                schema, registry=self.registry
            )
        return self.validators[where]

    def match(self, path):
        for _, template, pattern, item in self.routes:
            if pattern.match(path):
                return template, item
        return None, None


def schema_pointer(spec, response_ref, media_type):
    """JSON pointer of the schema of `media_type` in a response (following $refs)."""
    where = response_ref
    node = spec.pointer(where)
    while isinstance(node, dict) and "$ref" in node:
        where = node["$ref"]
        node = spec.pointer(where)
    key = media_type.replace("~", "~0").replace("/", "~1")
    return f"{where}/content/{key}/schema"


def escape(part):
    return str(part).replace("~", "~0").replace("/", "~1")


def flatten(errors, branch_note=""):
    """(JSON path, reason) of each error; for a oneOf/anyOf that no branch matched, the
    errors of the branch that came closest (fewest errors), said as such."""
    found = []
    for error in errors:
        if error.context and error.validator in ("oneOf", "anyOf"):
            branches = collections.defaultdict(list)
            for sub in error.context:
                branches[sub.relative_schema_path[0]].append(sub)
            index, closest = min(branches.items(), key=lambda b: (len(b[1]), b[0]))
            note = f"no {error.validator} branch matched; in the closest (#{index}): "
            found.extend(flatten(closest, note))
        else:
            found.append((error.json_path, branch_note + error.message[:300]))
    return found


def reasons(validator, instance):
    """Every schema violation as (JSON path, reason)."""
    return flatten(validator.iter_errors(instance))


def media_type_of(content_type):
    return (content_type or "").split(";")[0].strip().lower()


def check_body(spec, record, response_ref, response, problems):
    """Content type and body of a documented response."""
    content = response.get("content")
    status = record["status"]
    if not content:
        if record.get("body_length", 0) != 0:
            problems.append(("$", f"a {status} has no body here, got {record['body_length']} bytes"))
        return
    received = media_type_of(record.get("content_type"))
    documented = {m.lower(): m for m in content}
    if received not in documented:
        problems.append(
            ("$", f"content type {record.get('content_type')!r} is not one of {sorted(content)}")
        )
        return
    media = documented[received]
    if received == "application/json" and "charset=utf-8" not in (
        record.get("content_type") or ""
    ).lower().replace(" ", ""):
        problems.append(("$", f"JSON without charset=utf-8: {record.get('content_type')!r}"))
    if "schema" not in content[media]:
        return
    validator = spec.validator(schema_pointer(spec, response_ref, media))
    if received == "application/json":
        if "body" not in record:
            problems.append(("$", "no body recorded for a JSON response"))
            return
        try:
            instance = json.loads(record["body"])
        except ValueError as e:
            problems.append(("$", f"not JSON: {e}"))
            return
    elif received.startswith("text/"):
        instance = record.get("body", "")
    else:
        if record.get("body_length", 0) == 0:
            problems.append(("$", f"empty {received} body"))
        return
    problems.extend(reasons(validator, instance))


def check_headers(response, record, problems):
    recorded = {
        "location": record.get("location"),
        "content-disposition": record.get("content_disposition"),
    }
    for name, header in (response.get("headers") or {}).items():
        value = recorded.get(name.lower(), "not recorded")
        if value == "not recorded":
            continue
        if value is None:
            if header.get("required"):
                problems.append((f"header {name}", "required header missing"))
            continue
        pattern = (header.get("schema") or {}).get("pattern")
        if pattern and not re.search(pattern, value):
            problems.append((f"header {name}", f"{value!r} does not match {pattern!r}"))


def check(spec, record):
    """(operation label, problems) of one API or worker response."""
    url = urllib.parse.urlsplit(record["url"])
    path = url.path or "/"
    method = record["method"].lower()
    status = str(record["status"])
    if record["answered_by"] == "worker" and path not in OPERATOR_PATHS:
        label = f"{record['method']} {path} (worker, unknown path)"
        problems = []
        if status != "404" or record.get("body_length", 0) != 0:
            problems.append(("$", f"a worker answers a path it does not serve with an empty 404, got {status}"))
        return label, None, problems
    template, item = spec.match(path)
    operation = item.get(method) if item else None
    if operation is None:
        label = f"{record['method']} {path} (unknown request)"
        ref = spec.doc["x-unknown-request"]["$ref"]
        problems = []
        if status != "404":
            problems.append(("$", f"an unknown path or method answers 404 NotFound, got {status}"))
        else:
            check_body(spec, record, ref, spec.resolve(spec.doc["x-unknown-request"]), problems)
        return label, "(unknown request)", problems
    label = f"{record['method']} {template} ({operation['operationId']})"
    problems = []
    responses = operation["responses"]
    if status not in responses:
        problems.append(("$", f"status {status} is not documented (documented: {', '.join(sorted(responses))})"))
        return label, operation["operationId"], problems
    node = responses[status]
    ref = node.get("$ref") or (
        "#/paths/" + escape(template) + f"/{method}/responses/{status}"
    )
    response = spec.resolve(node)
    check_body(spec, record, ref, response, problems)
    check_headers(response, record, problems)
    return label, operation["operationId"], problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=pathlib.Path)
    parser.add_argument("--spec", type=pathlib.Path, default=ROOT / "proto" / "openapi.yaml")
    args = parser.parse_args()

    spec = Spec(args.spec)
    files = sorted(args.dir.glob("responses-*.jsonl"))
    if not files:
        print(f"check-openapi: no responses-*.jsonl under {args.dir}: nothing was recorded", file=sys.stderr)
        return 1
    checked = other = 0
    operations = collections.Counter()
    mismatches = collections.OrderedDict()
    for file in files:
        with open(file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    # A test process killed mid-write leaves at most its last line torn.
                    print(f"check-openapi: {file.name}:{number}: unreadable line, skipped", file=sys.stderr)
                    continue
                if record.get("answered_by") == "other":
                    other += 1
                    continue
                checked += 1
                label, operation_id, problems = check(spec, record)
                if operation_id:
                    operations[operation_id] += 1
                for where, reason in problems:
                    key = (label, record["status"], where, reason)
                    entry = mismatches.setdefault(key, {"count": 0, "example": record})
                    entry["count"] += 1

    documented = [
        op["operationId"]
        for item in spec.doc["paths"].values()
        for m, op in item.items()
        if m in METHODS
    ]
    print(
        f"check-openapi: {checked} responses checked against {args.spec.relative_to(ROOT) if args.spec.is_relative_to(ROOT) else args.spec} "
        f"({len([o for o in operations if o in documented])} of {len(documented)} operations exercised, "
        f"{operations.get('(unknown request)', 0)} unknown requests); "
        f"{other} responses of other servers left out"
    )
    unexercised = [o for o in documented if o not in operations]
    if unexercised:
        print(f"check-openapi: not exercised by these tests: {', '.join(unexercised)}")
    if not mismatches:
        print("check-openapi: every response matches the document")
        return 0
    print(f"check-openapi: {sum(e['count'] for e in mismatches.values())} mismatches ({len(mismatches)} distinct):")
    for (label, status, where, reason), entry in mismatches.items():
        example = entry["example"]
        print(f"  {label} -> {status}: at {where}: {reason}")
        print(f"      {entry['count']}x, e.g. {example['method']} {example['url']} in {example.get('test') or '?'}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
