//! `deploy/` checked offline: the metric names the dashboard and the alert rules use all
//! appear on a live scrape of the running service, and the compose file and Kubernetes
//! manifests reference only images, ports, files and settings that exist.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use packages_tests::Service;
use serde_yaml::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

/// Metric names in a PromQL expression: identifiers that are not functions, keywords,
/// label names or grouping labels.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 10] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
    ];
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut braces, mut grouping) = (0, 0, false);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => braces += 1,
            '}' => braces -= 1,
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += 1;
                }
            }
            ')' => grouping = false,
            c if c.is_ascii_digit() => {
                // A number or a duration (0.99, 1e-9, 5m): never a name.
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '.')
                {
                    i += 1;
                }
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric()
                        || chars[i + 1] == '_'
                        || chars[i + 1] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace()).copied();
                if KEYWORDS.contains(&word.as_str()) {
                    grouping =
                        word == "by" || word == "without" || word == "on" || word == "ignoring";
                } else if braces == 0
                    && !grouping
                    && next != Some('(')
                    && !AGGREGATIONS.contains(&word.as_str())
                {
                    names.insert(word);
                }
            }
            _ => {}
        }
        i += 1;
    }
    names
}

#[test]
fn promql_names_are_found() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{status=~\"5..\"}[5m]))) / clamp_min(max(jobs_queue_depth), 1e-9)",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["http_request_duration_seconds_bucket", "jobs_queue_depth"]
    );
}

/// Every expression of the dashboard and the alert rules.
fn expressions() -> Vec<String> {
    let mut exprs = Vec::new();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/dashboards/packages.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for doc in yaml(&deploy().join("prometheus/alerts.yml")) {
        for group in doc["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                exprs.push(rule["expr"].as_str().unwrap().to_owned());
            }
        }
    }
    exprs
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_on_a_live_scrape() {
    let svc = Service::start().await;
    // Some traffic, so every route-labelled series exists too.
    let ctx = svc.ctx().await;
    let _ = svc
        .upload_and_wait(&ctx.app, packages_tests::zips::small_app("scrape"))
        .await;
    let scrape = svc.metrics().await;
    let scraped: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let used: BTreeSet<String> = expressions().iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() >= 12, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !scraped.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "used by deploy/ but not exported: {missing:?}"
    );
}

fn known_keys() -> BTreeSet<String> {
    packages_config::KEYS
        .iter()
        .map(|(k, _, _)| format!("PACKAGES__{}", k.replace('.', "__").to_uppercase()))
        .collect()
}

fn string_map(v: &Value) -> HashMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.as_str()?.to_owned(), value))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_compose_stack_references_what_exists() {
    let docs = yaml(&deploy().join("docker-compose.yml"));
    let compose = &docs[0];
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for needed in [
        "postgres",
        "rabbitmq",
        "minio",
        "api",
        "worker",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(needed), "compose lacks {needed}");
    }
    let keys = known_keys();
    let mut built_image = None;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        if let Some(build) = service.get("build") {
            let dockerfile = build["dockerfile"].as_str().unwrap();
            let context = deploy().join(build["context"].as_str().unwrap());
            assert!(
                context.join(dockerfile).is_file(),
                "{name}: {dockerfile} missing"
            );
            built_image = Some(image.to_owned());
        } else {
            let (_, tag) = image
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{name}: {image} has no tag"));
            assert!(tag != "latest", "{name}: pin {image} to a version");
        }
        let env = string_map(&service["environment"]);
        for key in env.keys().filter(|k| k.starts_with("PACKAGES__")) {
            assert!(
                keys.contains(key),
                "{name}: {key} is not a configuration key"
            );
        }
        if name == "api" || name == "worker" {
            // The settings the service gets must load as a configuration.
            let loaded = packages_config::load_from(None, env.clone());
            assert!(loaded.is_ok(), "{name}: {:?}", loaded.err());
        }
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(deploy().join(source).exists(), "{name}: {source} missing");
            }
        }
    }
    let built = built_image.expect("the packages image is built by compose");
    for service in ["api", "worker"] {
        assert_eq!(services[service]["image"].as_str(), Some(built.as_str()));
    }
    assert_eq!(services["api"]["command"][0].as_str(), Some("packages-api"));
    assert_eq!(
        services["worker"]["command"][0].as_str(),
        Some("packages-worker")
    );
    // The API's published port is the one its image listens on; Prometheus scrapes the
    // API and the workers where they listen.
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("PACKAGES__SERVER__BIND=0.0.0.0:8080"));
    assert!(dockerfile.contains("PACKAGES__WORKER__BIND=0.0.0.0:8081"));
    assert!(
        services["api"]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p.as_str() == Some("8080:8080"))
    );
    let prometheus = &yaml(&deploy().join("prometheus/prometheus.yml"))[0];
    let text = serde_yaml::to_string(prometheus).unwrap();
    assert!(text.contains("api:8080"), "{text}");
    assert!(
        text.contains("worker") && text.contains("port: 8081"),
        "{text}"
    );
    for binary in ["packages", "packages-api", "packages-worker"] {
        assert!(
            dockerfile.contains(&format!("target/production/{binary}")),
            "Dockerfile does not install {binary}"
        );
    }
}

#[test]
fn the_kubernetes_manifests_reference_what_exists() {
    let dir = deploy().join("k8s");
    let kustomization = &yaml(&dir.join("kustomization.yaml"))[0];
    let mut objects = Vec::new();
    for file in kustomization["resources"].as_sequence().unwrap() {
        objects.extend(yaml(&dir.join(file.as_str().unwrap())));
    }
    let find = |kind: &str, name: &str| {
        objects.iter().find(|o| {
            o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)
        })
    };
    let keys = known_keys();
    let configmap = find("ConfigMap", "packages").expect("ConfigMap packages");
    let secret = find("Secret", "packages").expect("Secret packages");
    let mut settings = string_map(&configmap["data"]);
    settings.extend(string_map(&secret["stringData"]));
    for key in settings.keys() {
        assert!(keys.contains(key), "{key} is not a configuration key");
    }
    let compose_image = yaml(&deploy().join("docker-compose.yml"))[0]["services"]["api"]["image"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut deployments = 0;
    for deployment in objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("Deployment"))
    {
        deployments += 1;
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let template = &deployment["spec"]["template"];
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"],
            template["metadata"]["labels"]["app.kubernetes.io/name"]
                .clone()
                .into_selector()
        );
        for container in template["spec"]["containers"].as_sequence().unwrap() {
            assert_eq!(
                container["image"].as_str(),
                Some(compose_image.as_str()),
                "{name}"
            );
            let command = container["command"][0].as_str().unwrap();
            assert!(
                ["packages-api", "packages-worker"].contains(&command),
                "{name}: {command}"
            );
            let ports: HashMap<&str, u64> = container["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap(),
                        p["containerPort"].as_u64().unwrap(),
                    )
                })
                .collect();
            for probe in ["livenessProbe", "readinessProbe"] {
                let port = container[probe]["httpGet"]["port"].as_str().unwrap();
                assert!(
                    ports.contains_key(port),
                    "{name}: {probe} uses unknown port {port}"
                );
                let path = container[probe]["httpGet"]["path"].as_str().unwrap();
                assert!(["/healthz", "/readyz"].contains(&path));
            }
            let mut env = settings.clone();
            for var in container["env"].as_sequence().into_iter().flatten() {
                let key = var["name"].as_str().unwrap();
                assert!(
                    keys.contains(key),
                    "{name}: {key} is not a configuration key"
                );
                env.insert(key.to_owned(), var["value"].as_str().unwrap().to_owned());
            }
            for source in container["envFrom"].as_sequence().unwrap() {
                if let Some(cm) = source["configMapRef"]["name"].as_str() {
                    assert!(find("ConfigMap", cm).is_some(), "{name}: no ConfigMap {cm}");
                }
                if let Some(s) = source["secretRef"]["name"].as_str() {
                    assert!(find("Secret", s).is_some(), "{name}: no Secret {s}");
                }
            }
            // What the container listens on is where its probes and port point.
            let loaded =
                packages_config::load_from(None, env).unwrap_or_else(|e| panic!("{name}: {e}"));
            let listens = if command == "packages-api" {
                loaded.server.bind.port()
            } else {
                loaded.worker.bind.port()
            };
            assert!(
                ports.values().any(|p| *p == u64::from(listens)),
                "{name} listens on {listens}, declares {ports:?}"
            );
        }
    }
    assert_eq!(deployments, 2);
    let service = find("Service", "packages-api").expect("Service for the API");
    let target = service["spec"]["ports"][0]["targetPort"].as_str().unwrap();
    let api = find("Deployment", "packages-api").unwrap();
    let api_ports = &api["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        api_ports
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p["name"].as_str() == Some(target))
    );
    let hpa = objects
        .iter()
        .find(|o| o["kind"].as_str() == Some("HorizontalPodAutoscaler"))
        .expect("an HPA");
    let scaled = hpa["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
    assert_eq!(scaled, "packages-worker");
    assert!(find("Deployment", scaled).is_some());
}

trait IntoSelector {
    fn into_selector(self) -> Value;
}

impl IntoSelector for Value {
    /// `{app.kubernetes.io/name: <value>}`, the shape of `matchLabels`.
    fn into_selector(self) -> Value {
        let mut map = serde_yaml::Mapping::new();
        map.insert(Value::String("app.kubernetes.io/name".into()), self);
        Value::Mapping(map)
    }
}
