"""Checks of deploy/ that no off-the-shelf tool makes; run by scripts/check-deploy.sh.

  check-deploy.py k8s FILE     FILE is `kubectl kustomize deploy/k8s`: every pod meets
                               the restricted Pod Security Standard, and what an
                               operator's first `kubectl apply -k` relies on is there.
  check-deploy.py alert-tests  deploy/prometheus/alerts.test.yml makes every alert of
                               alerts.yml fire, from series the service really exports.

Prints one line per finding and exits 1 when there is any.
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod", "CronJob"}
# Volume types the restricted profile allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}

findings = []


def finding(where, what):
    findings.append(f"{where}: {what}")


def pod_spec(obj):
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        return spec
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {})


def pod_template(obj):
    return (obj.get("spec") or {}).get("template", {})


def restricted(where, pod):
    """The restricted Pod Security Standard (baseline included), field by field."""
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            finding(where, f"{host} is set")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            finding(where, f"volume {volume.get('name')} is of a type the restricted profile forbids: {sorted(kinds)}")
    pod_sc = pod.get("securityContext") or {}
    if pod_sc.get("runAsUser") == 0:
        finding(where, "the pod runs as user 0")
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        finding(where, "the pod's seccompProfile is Unconfined")
    containers = [
        (kind, c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for c in pod.get(kind, [])
    ]
    if not pod.get("containers"):
        finding(where, "no containers")
    for kind, c in containers:
        at = f"{where} {kind[:-1]} {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            finding(at, "privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            finding(at, "allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            finding(at, "capabilities.drop must contain ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            finding(at, f"adds capabilities {sorted(extra)}")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            finding(at, "runAsNonRoot must be true (on the pod or the container)")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            finding(at, "runs as user 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            finding(at, "seccompProfile.type must be RuntimeDefault or Localhost (on the pod or the container)")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                finding(at, f"hostPort {port['hostPort']}")
        # Beyond the standard: what these images need and are built for.
        if sc.get("readOnlyRootFilesystem") is not True:
            finding(at, "readOnlyRootFilesystem must be true")
        resources = c.get("resources") or {}
        if "memory" not in (resources.get("limits") or {}) or not resources.get("requests"):
            finding(at, "needs resource requests and a memory limit")
        if kind == "containers":
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in c:
                    finding(at, f"has no {probe}")
        # Every container, init containers included, runs the image kustomize renamed:
        # one that still reads `packages:…` names no registry and cannot be pulled.
        image = c.get("image", "")
        first = image.split("/")[0]
        if "/" not in image or not ("." in first or ":" in first or first == "localhost"):
            finding(at, f"image {image!r} names no registry (kustomization.yaml `images:`)")


def selects(selector, labels):
    match = (selector or {}).get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def k8s(path):
    objects = [o for o in yaml.safe_load_all(Path(path).read_text()) if o]
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    for o in objects:
        if o["kind"] in WORKLOADS:
            restricted(f"{o['kind']} {o['metadata']['name']}", pod_spec(o))

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    if not deployments:
        finding("deploy/k8s", "no Deployment")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    services = by_kind.get("Service", [])
    for name, d in deployments.items():
        labels = pod_template(d).get("metadata", {}).get("labels", {})
        if not any(selects(p["spec"].get("selector"), labels) for p in pdbs):
            finding(f"Deployment {name}", "no PodDisruptionBudget selects its pods")
        # Prometheus scrapes the port the probes use (the operator port), and no Service
        # exposes that port: /metrics stays inside the cluster's scrape path.
        annotations = pod_template(d).get("metadata", {}).get("annotations", {})
        scrape_port = annotations.get("prometheus.io/port")
        pod = pod_spec(d)
        ports = {p.get("name"): p["containerPort"] for c in pod.get("containers", []) for p in c.get("ports", [])}
        probe_ports = {
            c[probe]["httpGet"]["port"]
            for c in pod.get("containers", [])
            for probe in ("startupProbe", "livenessProbe", "readinessProbe")
            if "httpGet" in c.get(probe, {})
        }
        probe_numbers = {ports.get(p, p) for p in probe_ports}
        if scrape_port is None:
            finding(f"Deployment {name}", "no prometheus.io/port annotation")
        elif int(scrape_port) not in probe_numbers:
            finding(f"Deployment {name}", f"Prometheus scrapes port {scrape_port}, the probes use {sorted(probe_numbers)}")
        for svc in services:
            if not selects({"matchLabels": svc["spec"].get("selector")}, labels):
                continue
            for port in svc["spec"].get("ports", []):
                target = ports.get(port.get("targetPort"), port.get("targetPort"))
                if target in probe_numbers:
                    finding(f"Service {svc['metadata']['name']}", f"exposes the operator port {target} (/metrics, /readyz)")

    adapter = yaml.safe_load((DEPLOY / "k8s/prometheus-adapter-rules.yaml").read_text())
    external_rules = {}
    for rule in (adapter.get("rules") or {}).get("external") or []:
        external_rules[(rule.get("name") or {}).get("as")] = rule
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        at = f"HorizontalPodAutoscaler {hpa['metadata']['name']}"
        target = deployments.get(hpa["spec"]["scaleTargetRef"]["name"])
        if target is None:
            finding(at, "scales a Deployment that does not exist")
        elif "replicas" in target["spec"]:
            finding(at, f"Deployment {target['metadata']['name']} sets replicas; every apply would fight the autoscaler")
        for metric in hpa["spec"].get("metrics", []):
            if metric["type"] != "External":
                continue
            metric_name = metric["external"]["metric"]["name"]
            rule = external_rules.get(metric_name)
            if rule is None:
                finding(at, f"external metric {metric_name} has no rule in prometheus-adapter-rules.yaml")
            elif not rule["metricsQuery"].replace(" ", "").startswith("max(") or " by " in rule["metricsQuery"]:
                # Every worker reports the same queue: a sum counts it once per replica,
                # and series by label would be summed by the HPA all the same.
                finding(at, f"the adapter rule for {metric_name} must be one max(...) over the workers")


def exported_metrics():
    """Metric names the service registers (crates/telemetry), histograms' series included."""
    names = set()
    for source in (ROOT / "crates/telemetry/src").rglob("*.rs"):
        names.update(re.findall(r'"([a-z_][a-z0-9_]*)"', source.read_text()))
    return names


def alert_tests():
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((DEPLOY / "prometheus/alerts.test.yml").read_text())
    exported = exported_metrics()
    fired, silent = set(), set()
    for test in tests.get("tests", []):
        unknown = set()
        for series in test.get("input_series", []):
            name = series["series"].split("{")[0].strip()
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in exported and base not in exported and not name.startswith("process_"):
                unknown.add(name)
        for name in sorted(unknown):
            finding(f"alerts.test.yml, {test.get('name')}", f"series {name} is not a metric the service exports")
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    for alert in sorted(alerts - fired):
        finding("alerts.test.yml", f"no test makes {alert} fire")
    for alert in sorted((fired | silent) - alerts):
        finding("alerts.test.yml", f"tests {alert}, which alerts.yml does not define")
    if not findings:
        print(f"{len(alerts)} alerts, each fired by a test; {len(silent & alerts)} also shown silent")


def main():
    if sys.argv[1:2] == ["k8s"] and len(sys.argv) == 3:
        k8s(sys.argv[2])
    elif sys.argv[1:] == ["alert-tests"]:
        alert_tests()
    else:
        sys.exit(__doc__)
    for f in findings:
        print(f"  {f}")
    if findings:
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
