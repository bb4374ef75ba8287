//! GA package lists over HTTP (GA spec sections 7 and 8, and the list rows of 2.1): every
//! filter on both list routes, label selectors, ordering, timestamp filters, pagination
//! links, the parameter error texts and their order, visibility whatever the filters, and
//! the always-empty droplet list of a package.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use packages_tests::{READ_WRITE, Reply, Service, zips};
use serde_json::{Value, json};

const VALID: &str = "Valid parameters are: 'page', 'per_page', 'order_by', 'created_ats', 'updated_ats', 'guids', 'states', 'types', 'app_guids', 'app_guid', 'space_guids', 'organization_guids', 'label_selector'";
const DROPLET_VALID: &str = "Valid parameters are: 'page', 'per_page', 'order_by', 'created_ats', 'updated_ats', 'guids', 'app_guid', 'app_guids', 'current', 'organization_guids', 'package_guid', 'space_guids', 'states', 'label_selector'";
const ORDER_BY: &str = "Order by can only be: 'created_at', 'updated_at'";
const CREATED_FORMAT: &str = "Created ats has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'";
const UPDATED_FORMAT: &str = "Updated ats has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'";
const NOT_AUTHORIZED: &str = "You are not authorized to perform the requested action";
const LONG_AGO: &str = "2000-01-01T00:00:00Z";

/// Percent-encodes everything but unreserved characters, as a client builds a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `path` with `query` appended (nothing when `query` is empty).
fn with(path: &str, query: &str) -> String {
    match (query.is_empty(), path.contains('?')) {
        (true, _) => path.to_owned(),
        (false, true) => format!("{path}&{query}"),
        (false, false) => format!("{path}?{query}"),
    }
}

fn guids(r: &Reply) -> Vec<String> {
    r.json()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["guid"].as_str().unwrap().to_owned())
        .collect()
}

/// The guids a list answers, in order, asserting a 200 whose total counts them all.
async fn listed(svc: &Service, path: &str, token: &str) -> Vec<String> {
    let r = svc.get(path, token).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    let found = guids(&r);
    assert_eq!(
        r.json()["pagination"]["total_results"],
        found.len(),
        "{path}"
    );
    found
}

/// Asserts a 400 `BadQueryParameter` with `text` after the usual prefix.
fn refused(r: &Reply, text: &str) {
    r.assert_error(
        400,
        10005,
        "BadQueryParameter",
        &format!("The query parameter is invalid: {text}"),
    );
}

async fn patch(svc: &Service, guid: &str, token: &str, body: &Value) -> Reply {
    let r = svc
        .send(
            svc.http
                .patch(format!("{}/v3/packages/{guid}", svc.base))
                .bearer_auth(token)
                .json(body),
        )
        .await;
    assert_eq!(r.status, 200, "PATCH {guid} {body}: {}", r.text());
    r
}

async fn docker(svc: &Service, app: &str) -> Value {
    let r = svc
        .post(
            &format!("/v3/apps/{app}/packages"),
            &svc.admin(),
            &json!({"type": "docker", "url": "registry.example.org/team/web:1.4"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// `POST /v3/packages` (GA) with labels.
async fn labelled(svc: &Service, app: &str, kind: &str, labels: &Value) -> String {
    let mut body = json!({
        "type": kind,
        "relationships": {"app": {"data": {"guid": app}}},
        "metadata": {"labels": labels},
    });
    if kind == "docker" {
        body["data"] = json!({"image": "registry.example.org/team/web:1.4"});
    }
    let r = svc.post("/v3/packages", &svc.admin(), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["metadata"]["labels"], *labels);
    r.json()["guid"].as_str().unwrap().to_owned()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap().to_owned()
}

fn new_user() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `Tue, 05 Jan 2026 10:00:00 GMT` → `2026-01-05T10:00:00Z`.
fn http_date_to_timestamp(date: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = date.split_whitespace().collect();
    let month = MONTHS.iter().position(|m| *m == parts[2]).unwrap() + 1;
    format!("{}-{month:02}-{}T{}Z", parts[3], parts[1], parts[4])
}

/// Polls the service's clock (its `Date` header, which never runs ahead of the clock that
/// stamps packages) until it shows a second later than `second`: whatever is created
/// afterwards has a later `created_at`.
async fn until_after(svc: &Service, second: &str) {
    let started = Instant::now();
    loop {
        let r = svc.get_anonymous("/readyz").await;
        let now = http_date_to_timestamp(r.header("date").expect("Date header"));
        if now.as_str() > second {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the service clock stays at {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A package as the filters see it.
#[derive(Debug, Clone)]
struct Pkg {
    guid: String,
    app: String,
    space: String,
    org: String,
    kind: String,
    state: String,
}

fn pick(pkgs: &[Pkg], keep: impl Fn(&Pkg) -> bool) -> Vec<String> {
    pkgs.iter()
        .filter(|p| keep(p))
        .map(|p| p.guid.clone())
        .collect()
}

#[tokio::test]
async fn every_filter_narrows_both_list_routes() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let one = svc.ctx().await;
    let worker = svc.create_app(&one.space, "worker").await;
    let staging = svc.create_space(&one.org, "staging").await;
    let staged = svc.create_app(&staging, "web").await;
    let two = svc.ctx().await;

    // Creation order is the default order.
    let mut pkgs = Vec::new();
    let homes = [
        (&one.app, &one.space, &one.org),
        (&worker, &one.space, &one.org),
        (&staged, &staging, &one.org),
        (&two.app, &two.space, &two.org),
    ];
    let plan: [(usize, &str); 8] = [
        (0, "awaiting"),
        (0, "ready"),
        (0, "failed"),
        (0, "docker"),
        (1, "awaiting"),
        (1, "docker"),
        (2, "awaiting"),
        (3, "docker"),
    ];
    for (home, what) in plan {
        let (app, space, org) = homes[home];
        let p = match what {
            "awaiting" => svc.create_package(app, &admin).await,
            "ready" => svc.upload_and_wait(app, zips::small_app("ready")).await,
            "failed" => svc.upload_and_wait(app, b"not a zip".to_vec()).await,
            _ => docker(&svc, app).await,
        };
        pkgs.push(Pkg {
            guid: s(&p["guid"]),
            app: app.clone(),
            space: space.clone(),
            org: org.clone(),
            kind: s(&p["type"]),
            state: s(&p["state"]),
        });
    }
    pkgs.push(Pkg {
        state: "AWAITING_UPLOAD".into(),
        kind: "bits".into(),
        guid: svc.new_package(&two.app).await,
        app: two.app.clone(),
        space: two.space.clone(),
        org: two.org.clone(),
    });
    let states: Vec<&str> = pkgs.iter().map(|p| p.state.as_str()).collect();
    assert_eq!(
        states,
        [
            "AWAITING_UPLOAD",
            "READY",
            "FAILED",
            "READY",
            "AWAITING_UPLOAD",
            "READY",
            "AWAITING_UPLOAD",
            "READY",
            "AWAITING_UPLOAD"
        ]
    );
    let g = |i: usize| pkgs[i].guid.clone();
    let all = pick(&pkgs, |_| true);
    let (org1, org2, space1, space3) = (&one.org, &two.org, &one.space, &two.space);

    let cases: Vec<(String, Vec<String>)> = vec![
        (String::new(), all.clone()),
        (format!("guids={}", g(3)), vec![g(3)]),
        (format!("guids={},{}", g(7), g(0)), vec![g(0), g(7)]),
        // Spaces after a comma are dropped; an encoded comma separates too.
        (format!("guids={},%20{}", g(0), g(7)), vec![g(0), g(7)]),
        (format!("guids={},%20%20{}", g(0), g(7)), vec![g(0), g(7)]),
        (format!("guids={}%2C{}", g(0), g(7)), vec![g(0), g(7)]),
        ("guids=no-such-package".into(), vec![]),
        ("states=READY".into(), pick(&pkgs, |p| p.state == "READY")),
        (
            "states=READY,FAILED".into(),
            pick(&pkgs, |p| p.state == "READY" || p.state == "FAILED"),
        ),
        (
            "states=AWAITING_UPLOAD,%20FAILED".into(),
            pick(&pkgs, |p| {
                p.state == "AWAITING_UPLOAD" || p.state == "FAILED"
            }),
        ),
        // Values are not checked against the enums: they match nothing.
        ("states=ready".into(), vec![]),
        ("states=STAGED".into(), vec![]),
        ("types=docker".into(), pick(&pkgs, |p| p.kind == "docker")),
        ("types=bits".into(), pick(&pkgs, |p| p.kind == "bits")),
        ("types=bits,docker".into(), all.clone()),
        ("types=zip".into(), vec![]),
        (
            format!("app_guids={}", one.app),
            pick(&pkgs, |p| p.app == one.app),
        ),
        (
            format!("app_guids={},{}", worker, two.app),
            pick(&pkgs, |p| p.app == worker || p.app == two.app),
        ),
        (
            format!("space_guids={space1}"),
            pick(&pkgs, |p| &p.space == space1),
        ),
        (
            format!("space_guids={staging},%20{space3}"),
            pick(&pkgs, |p| p.space == staging || &p.space == space3),
        ),
        (
            format!("organization_guids={org1}"),
            pick(&pkgs, |p| &p.org == org1),
        ),
        (format!("organization_guids={org1},{org2}"), all.clone()),
        ("organization_guids=no-such-org".into(), vec![]),
        // Filters combine with AND.
        (
            format!("types=docker&organization_guids={org1}"),
            pick(&pkgs, |p| p.kind == "docker" && &p.org == org1),
        ),
        (
            format!("states=READY&types=bits&app_guids={},{}", one.app, two.app),
            vec![g(1)],
        ),
        (
            format!("guids={},{}&space_guids={space1}", g(3), g(7)),
            vec![g(3)],
        ),
        (
            format!("app_guids={}&space_guids={space3}", one.app),
            vec![],
        ),
        (
            format!("guids={},{},{}&states=READY", g(0), g(1), g(5)),
            vec![g(1), g(5)],
        ),
        // An empty value matches nothing.
        ("guids=".into(), vec![]),
        ("states=".into(), vec![]),
        ("types=".into(), vec![]),
        ("app_guids=".into(), vec![]),
        ("space_guids=".into(), vec![]),
        ("organization_guids=".into(), vec![]),
        ("guids=&types=docker".into(), vec![]),
    ];
    for (query, expected) in &cases {
        let path = with("/v3/packages", query);
        assert_eq!(listed(&svc, &path, &admin).await, *expected, "{path}");
    }

    // The nested route and `app_guid` take the same filters, within one app.
    let nestable = cases.iter().filter(|(q, _)| {
        !q.contains("app_guids") && !q.contains("space_guids") && !q.contains("organization_guids")
    });
    let mut nested_checked = 0;
    for (query, expected) in nestable {
        for app in [&one.app, &two.app] {
            let within: Vec<String> = expected
                .iter()
                .filter(|guid| pkgs.iter().any(|p| &p.guid == *guid && &p.app == app))
                .cloned()
                .collect();
            let path = with(&format!("/v3/apps/{app}/packages"), query);
            let nested = svc.get(&path, &admin).await;
            assert_eq!(nested.status, 200, "{path}: {}", nested.text());
            assert_eq!(guids(&nested), within, "{path}");
            assert_eq!(
                nested.json()["pagination"]["total_results"],
                within.len(),
                "{path}"
            );
            let singular = with(&format!("/v3/packages?app_guid={app}"), query);
            let r = svc.get(&singular, &admin).await;
            assert_eq!(r.status, 200, "{singular}: {}", r.text());
            assert_eq!(
                r.json()["resources"],
                nested.json()["resources"],
                "{singular}"
            );
            assert_eq!(
                r.json()["pagination"]["total_results"],
                within.len(),
                "{singular}"
            );
            nested_checked += 1;
        }
    }
    assert!(nested_checked >= 40, "{nested_checked}");

    // `app_guid` names an app as the nested path does: unknown is 404.
    svc.get("/v3/packages?app_guid=no-such-app", &admin)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "App not found");
    svc.get("/v3/packages?app_guid=no-such-app&types=docker", &admin)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "App not found");
    svc.get("/v3/apps/no-such-app/packages?states=READY", &admin)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "App not found");
}

#[tokio::test]
async fn label_selectors_match_every_requirement_form_on_both_routes() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    let other = svc.create_app(&ctx.space, "other").await;

    let l1 = labelled(
        &svc,
        &ctx.app,
        "bits",
        &json!({"env": "prod", "tier": "web", "example.com/team": "web"}),
    )
    .await;
    let l2 = labelled(
        &svc,
        &ctx.app,
        "docker",
        &json!({"env": "staging", "tier": "worker"}),
    )
    .await;
    let l3 = svc.new_package(&ctx.app).await;
    patch(
        &svc,
        &l3,
        &admin,
        &json!({"metadata": {"labels": {"env": "dev"}}}),
    )
    .await;
    let l4 = svc.new_package(&ctx.app).await;
    let l5 = svc.new_package(&other).await;
    patch(
        &svc,
        &l5,
        &admin,
        &json!({"metadata": {"labels": {"env": "prod", "example.com/team": "data", "Tier": "web"}}}),
    )
    .await;
    let l6 = svc.new_package(&ctx.app).await;
    patch(
        &svc,
        &l6,
        &admin,
        &json!({"metadata": {"labels": {"env": "prod", "old": "x"}}}),
    )
    .await;
    // A deleted label no longer matches.
    let r = patch(
        &svc,
        &l6,
        &admin,
        &json!({"metadata": {"labels": {"old": null}}}),
    )
    .await;
    assert_eq!(r.json()["metadata"]["labels"], json!({"env": "prod"}));

    let all = [&l1, &l2, &l3, &l4, &l5, &l6];
    let cases: Vec<(&str, Vec<&String>)> = vec![
        ("env=prod", vec![&l1, &l5, &l6]),
        ("env==prod", vec![&l1, &l5, &l6]),
        ("env!=prod", vec![&l2, &l3, &l4]),
        ("env in (prod,staging)", vec![&l1, &l2, &l5, &l6]),
        ("env in (dev)", vec![&l3]),
        ("env notin (prod,staging)", vec![&l3, &l4]),
        ("env notin (dev)", vec![&l1, &l2, &l4, &l5, &l6]),
        ("tier", vec![&l1, &l2]),
        ("!tier", vec![&l3, &l4, &l5, &l6]),
        // Keys and values are case-sensitive.
        ("Tier", vec![&l5]),
        ("env=PROD", vec![]),
        ("example.com/team=web", vec![&l1]),
        ("example.com/team==data", vec![&l5]),
        ("example.com/team", vec![&l1, &l5]),
        ("example.com/team!=web", vec![&l2, &l3, &l4, &l5, &l6]),
        ("example.com/team in (web,data)", vec![&l1, &l5]),
        (
            "example.com/team notin (web)",
            vec![&l2, &l3, &l4, &l5, &l6],
        ),
        ("!example.com/team", vec![&l2, &l3, &l4, &l6]),
        // The prefix is part of the key.
        ("team=web", vec![]),
        ("team", vec![]),
        ("old", vec![]),
        ("!old", all.to_vec()),
        // Requirements combine with AND.
        ("env=prod,tier=web", vec![&l1]),
        ("env=prod,!tier", vec![&l5, &l6]),
        ("env in (prod,staging),tier!=web", vec![&l2, &l5, &l6]),
        ("env notin (dev),!example.com/team,tier", vec![&l2]),
        ("tier,env!=staging", vec![&l1]),
        (
            "env in (prod,staging),example.com/team in (data)",
            vec![&l5],
        ),
        ("env=prod,env=staging", vec![]),
    ];
    let fifty = vec!["env"; 50].join(",");
    let mut cases: Vec<(String, Vec<&String>)> = cases
        .into_iter()
        .map(|(selector, expected)| (format!("label_selector={}", enc(selector)), expected))
        .collect();
    cases.extend([
        // Fifty requirements are allowed.
        (
            format!("label_selector={}", enc(&fifty)),
            vec![&l1, &l2, &l3, &l5, &l6],
        ),
        // As a client may write it, unencoded.
        ("label_selector=env=prod,tier=web".into(), vec![&l1]),
        // With the other filters, AND.
        (
            format!("label_selector={}&types=docker", enc("env=prod")),
            vec![],
        ),
        (
            format!(
                "label_selector={}&types=docker",
                enc("env in (prod,staging)")
            ),
            vec![&l2],
        ),
        (format!("label_selector=tier&guids={l1},{l3}"), vec![&l1]),
        (format!("label_selector=env&app_guids={other}"), vec![&l5]),
    ]);
    for (query, expected) in &cases {
        let expected: Vec<String> = expected.iter().map(|g| (*g).clone()).collect();
        let path = format!("/v3/packages?{query}");
        assert_eq!(listed(&svc, &path, &admin).await, expected, "{path}");
        if query.contains("app_guids") {
            continue;
        }
        for app in [&ctx.app, &other] {
            let mine: Vec<String> = expected
                .iter()
                .filter(|g| (*g == &l5) == (app == &other))
                .cloned()
                .collect();
            let path = format!("/v3/apps/{app}/packages?{query}");
            assert_eq!(listed(&svc, &path, &admin).await, mine, "{path}");
            let path = format!("/v3/packages?app_guid={app}&{query}");
            assert_eq!(listed(&svc, &path, &admin).await, mine, "{path}");
        }
    }
}

#[tokio::test]
async fn parameter_errors_have_exact_texts_in_order_on_both_routes() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    svc.new_package(&ctx.app).await;

    let long_prefix = vec!["a".repeat(63); 4].join(".");
    let fifty_one = vec!["env"; 51].join(",");
    let selector_cases: Vec<(String, &str)> = vec![
        (String::new(), "Missing label_selector value"),
        (
            fifty_one,
            "Too many label_selector requirements (maximum is 50)",
        ),
        ("env in prod".into(), "Invalid label_selector value"),
        ("!!env".into(), "Invalid label_selector value"),
        ("=x".into(), "Invalid label_selector value"),
        ("a b".into(), "Invalid label_selector value"),
        ("a/b/c=x".into(), "key has more than one '/'"),
        (
            "example/team=x".into(),
            "prefix 'example' must be in valid dns format",
        ),
        (
            "cloudfoundry.org/team".into(),
            "prefix 'cloudfoundry.org' is reserved",
        ),
        (
            "CloudFoundry.ORG/team".into(),
            "prefix 'cloudfoundry.org' is reserved",
        ),
        (
            format!("{long_prefix}/team=x"),
            "prefix 'aaaaaaaa...' is greater than 253 characters",
        ),
        ("example.com/=x".into(), "key cannot be empty string"),
        ("a@b in (x)".into(), "'a@b' contains invalid characters"),
        (
            "-env=x".into(),
            "'-env' starts or ends with invalid characters",
        ),
        (
            "!env-".into(),
            "'env-' starts or ends with invalid characters",
        ),
        (
            format!("{}=x", "k".repeat(64)),
            "'kkkkkkkk...' is greater than 63 characters",
        ),
        ("env=a b".into(), "'a b' contains invalid characters"),
        ("env!=b@d".into(), "'b@d' contains invalid characters"),
        (
            "env in (ok,-bad)".into(),
            "'-bad' starts or ends with invalid characters",
        ),
        (
            format!("env notin ({})", "v".repeat(64)),
            "'vvvvvvvv...' is greater than 63 characters",
        ),
    ];
    let mut cases: Vec<(String, String)> = selector_cases
        .into_iter()
        .map(|(selector, text)| {
            (
                format!("label_selector={}", enc(&selector)),
                text.to_owned(),
            )
        })
        .collect();
    let t1 = "2020-01-01T00:00:00Z";
    let t2 = "2020-01-02T00:00:00Z";
    for (name, attribute, format) in [
        ("created_ats", "Created ats", CREATED_FORMAT),
        ("updated_ats", "Updated ats", UPDATED_FORMAT),
    ] {
        for value in [
            "yesterday",
            "2020-01-01",
            "2020-01-01T00:00:00",
            "2020-01-01T00:00:00.5Z",
            "2020-01-01%2000:00:00Z",
        ] {
            cases.push((format!("{name}={value}"), format.to_owned()));
            cases.push((format!("{name}[lt]={value}"), format.to_owned()));
        }
        cases.push((
            format!("{name}[foo]={t1}"),
            format!("{attribute} Invalid relational operator: 'foo'"),
        ));
        cases.push((
            format!("{name}%5Beq%5D={t1}"),
            format!("{attribute} Invalid relational operator: 'eq'"),
        ));
        cases.push((
            format!("{name}[gt]={t1},{t2}"),
            format!("{attribute} only accepts one value when using a relational operator"),
        ));
    }
    for value in [
        "name",
        "id",
        "guid",
        "created",
        "-",
        "--created_at",
        "+created_at",
    ] {
        // A literal `+` decodes to a space: invalid.
        cases.push((format!("order_by={value}"), ORDER_BY.to_owned()));
    }
    cases.extend([
        (
            "foo=1".into(),
            format!("Unknown query parameter(s): 'foo'. {VALID}"),
        ),
        (
            "foo=1&page=1&bar=2&foo=3".into(),
            format!("Unknown query parameter(s): 'foo', 'bar'. {VALID}"),
        ),
        (
            "per_page=5001".into(),
            "Per page must be between 1 and 5000".into(),
        ),
        (
            "per_page=0".into(),
            "Per page must be greater than 0".into(),
        ),
        ("page=abc".into(), "Page is not a number".into()),
    ]);
    for (query, text) in &cases {
        for path in [
            format!("/v3/packages?{query}"),
            format!("/v3/apps/{}/packages?{query}", ctx.app),
            format!("/v3/packages?app_guid={}&{query}", ctx.app),
            // The query is validated before the app is looked up.
            format!("/v3/apps/no-such-app/packages?{query}"),
            format!("/v3/packages?app_guid=no-such-app&{query}"),
        ] {
            let r = svc.get(&path, &admin).await;
            assert_eq!(r.status, 400, "{path}: {}", r.text());
            refused(&r, text);
        }
    }

    // The nested route refuses the filters naming other owners, in CC's order, without
    // the list of valid parameters; `app_guid` nests /v3/packages likewise.
    let nested_cases = [
        ("app_guids=x", "'app_guids'"),
        ("app_guids=", "'app_guids'"),
        ("space_guids=x", "'space_guids'"),
        ("organization_guids=x", "'organization_guids'"),
        (
            "space_guids=s&organization_guids=o&app_guids=a",
            "'app_guids', 'organization_guids', 'space_guids'",
        ),
        ("space_guids=s&app_guids=a", "'app_guids', 'space_guids'"),
    ];
    for (query, names) in nested_cases {
        for path in [
            format!("/v3/apps/{}/packages?{query}", ctx.app),
            format!("/v3/apps/no-such-app/packages?{query}"),
            format!("/v3/packages?app_guid={}&{query}", ctx.app),
        ] {
            refused(
                &svc.get(&path, &admin).await,
                &format!("Unknown query parameter(s): {names}"),
            );
        }
        // Without `app_guid` the same filters are fine on /v3/packages.
        let path = format!("/v3/packages?{query}");
        assert_eq!(svc.get(&path, &admin).await.status, 200, "{path}");
    }

    // Several errors are joined in a fixed order, whatever the order in the query.
    let messy =
        "app_guids=a&zzz=1&label_selector=&updated_ats=u&created_ats=c&order_by=id&per_page=0";
    let joined = [
        "Per page must be greater than 0",
        ORDER_BY,
        CREATED_FORMAT,
        UPDATED_FORMAT,
        "Missing label_selector value",
        &format!("Unknown query parameter(s): 'zzz'. {VALID}"),
        "Unknown query parameter(s): 'app_guids'",
    ]
    .join(", ");
    refused(
        &svc.get(&format!("/v3/apps/{}/packages?{messy}", ctx.app), &admin)
            .await,
        &joined,
    );
    refused(
        &svc.get(
            &format!("/v3/packages?app_guid={}&{messy}", ctx.app),
            &admin,
        )
        .await,
        &joined,
    );
    // On /v3/packages `app_guids` is valid, so the last message is not there.
    let global = [
        "Per page must be between 1 and 5000",
        ORDER_BY,
        "Created ats Invalid relational operator: 'foo'",
        "Updated ats only accepts one value when using a relational operator",
        "Invalid label_selector value",
        &format!("Unknown query parameter(s): 'zzz', 'yyy'. {VALID}"),
    ]
    .join(", ");
    refused(
        &svc.get(
            &format!(
                "/v3/packages?zzz=1&label_selector=!!x&updated_ats[gt]={t1},{t2}&yyy=2&created_ats[foo]={t1}&order_by=name&per_page=5001&app_guids=a"
            ),
            &admin,
        )
        .await,
        &global,
    );
}

async fn created_at(svc: &Service, guid: &str) -> String {
    s(&svc.package(guid).await["created_at"])
}

async fn delete_all(svc: &Service, guids: &[&String]) {
    for guid in guids {
        let r = svc
            .delete(&format!("/v3/packages/{guid}"), &svc.admin())
            .await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
}

/// A package's times as the lists see them.
#[derive(Debug, Clone)]
struct Times {
    guid: String,
    app: String,
    created: String,
    updated: Option<String>,
}

impl Times {
    fn created(&self) -> &str {
        &self.created
    }

    /// `updated_at`, or `created_at` for a package never updated (7.5).
    fn changed(&self) -> &str {
        self.updated.as_deref().unwrap_or(&self.created)
    }
}

/// The guids in `order_by` order: by the value, ties by guid, both reversed for `-`.
fn ordered(times: &[Times], key: fn(&Times) -> &str, descending: bool) -> Vec<String> {
    let mut sorted: Vec<&Times> = times.iter().collect();
    sorted.sort_by(|a, b| (key(a), &a.guid).cmp(&(key(b), &b.guid)));
    if descending {
        sorted.reverse();
    }
    sorted.into_iter().map(|t| t.guid.clone()).collect()
}

fn matching(times: &[Times], keep: impl Fn(&Times) -> bool) -> Vec<String> {
    times
        .iter()
        .filter(|t| keep(t))
        .map(|t| t.guid.clone())
        .collect()
}

fn compare(op: &str, value: &str, bound: &str) -> bool {
    match op {
        "lt" => value < bound,
        "lte" => value <= bound,
        "gt" => value > bound,
        "gte" => value >= bound,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn ordering_and_timestamp_filters_treat_a_null_updated_at_as_created_at() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    let elsewhere = svc.ctx().await;

    // Three seconds: x1 and x2 in the first; in the second y1, then packages until one
    // (y2) has a smaller guid, so that the guid breaks their tie against creation order,
    // then y3 in another app; in the third z1 is created and x1's credentials change
    // (its updated_at). A group that straddles a second boundary (a slow machine) is
    // deleted and made again.
    let mut attempts = 0;
    let mut retry = |group: &[&String]| {
        attempts += 1;
        assert!(attempts < 8, "no usable group in 8 attempts: {group:?}");
    };
    let (x1, x2) = loop {
        let x1 = s(&docker(&svc, &ctx.app).await["guid"]);
        let x2 = svc.new_package(&elsewhere.app).await;
        if created_at(&svc, &x1).await == created_at(&svc, &x2).await {
            break (x1, x2);
        }
        delete_all(&svc, &[&x1, &x2]).await;
        retry(&[&x1, &x2]);
    };
    let s1 = created_at(&svc, &x1).await;
    let (y1, between, y2, y3) = loop {
        until_after(&svc, &s1).await;
        let y1 = s(&docker(&svc, &ctx.app).await["guid"]);
        let mut between = Vec::new();
        // A small y1 leaves few guids below it: when 40 new ones all fall above it
        // (about one group in 41), the group is made again, as one that straddles a
        // second is.
        let y2 = loop {
            let guid = svc.new_package(&ctx.app).await;
            if guid < y1 {
                break Some(guid);
            }
            between.push(guid);
            if between.len() == 40 {
                break None;
            }
        };
        let Some(y2) = y2 else {
            let mut group = vec![&y1];
            group.extend(&between);
            delete_all(&svc, &group).await;
            retry(&group);
            continue;
        };
        let y3 = svc.new_package(&elsewhere.app).await;
        let mut group = vec![&y1, &y2, &y3];
        group.extend(&between);
        let mut seconds = Vec::new();
        for guid in &group {
            seconds.push(created_at(&svc, guid).await);
        }
        seconds.dedup();
        if seconds.len() == 1 {
            break (y1, between, y2, y3);
        }
        delete_all(&svc, &group).await;
        retry(&group);
    };
    let s2 = created_at(&svc, &y1).await;
    until_after(&svc, &s2).await;
    let z1 = loop {
        let password = format!("s3cret-{}", uuid::Uuid::new_v4());
        let r = patch(
            &svc,
            &x1,
            &admin,
            &json!({"username": "deployer", "password": password}),
        )
        .await;
        let updated = s(&r.json()["updated_at"]);
        let z1 = svc.new_package(&ctx.app).await;
        if created_at(&svc, &z1).await == updated {
            break z1;
        }
        delete_all(&svc, &[&z1]).await;
        retry(&[&x1, &z1]);
    };
    let mut creation = vec![&x1, &x2, &y1];
    creation.extend(&between);
    creation.extend([&y2, &y3, &z1]);

    let mut times = Vec::new();
    for guid in creation {
        let p = svc.package(guid).await;
        times.push(Times {
            guid: guid.clone(),
            app: s(&p["relationships"]["app"]["data"]["guid"]),
            created: s(&p["created_at"]),
            updated: p["updated_at"].as_str().map(str::to_owned),
        });
    }
    // What the scenario needs: three creation seconds, y1 and y2 in the same one, x1
    // updated in the last one, and no other package updated.
    let at = |guid: &str| times.iter().find(|t| t.guid == guid).unwrap().clone();
    let (s1, s2, s3) = (at(&x1).created, at(&y1).created, at(&z1).created);
    assert!(s1 < s2 && s2 < s3, "{times:?}");
    assert_eq!(at(&x2).created, s1);
    assert_eq!(at(&y2).created, s2, "{times:?}");
    assert_eq!(at(&y3).created, s2, "{times:?}");
    assert_eq!(at(&x1).updated.as_deref(), Some(s3.as_str()), "{times:?}");
    assert!(times[1..].iter().all(|t| t.updated.is_none()), "{times:?}");

    let created: fn(&Times) -> &str = Times::created;
    let changed: fn(&Times) -> &str = Times::changed;
    for (route, app) in [
        ("/v3/packages".to_owned(), None),
        (format!("/v3/apps/{}/packages", ctx.app), Some(&ctx.app)),
    ] {
        let mine: Vec<Times> = times
            .iter()
            .filter(|t| app.is_none_or(|a| &t.app == a))
            .cloned()
            .collect();
        let creation: Vec<String> = mine.iter().map(|t| t.guid.clone()).collect();

        // Ordering.
        let orders: Vec<(&str, Vec<String>)> = vec![
            ("", creation.clone()),
            ("order_by=created_at", ordered(&mine, created, false)),
            ("order_by=%2Bcreated_at", ordered(&mine, created, false)),
            ("order_by=-created_at", ordered(&mine, created, true)),
            ("order_by=updated_at", ordered(&mine, changed, false)),
            ("order_by=%2Bupdated_at", ordered(&mine, changed, false)),
            ("order_by=-updated_at", ordered(&mine, changed, true)),
        ];
        for (query, expected) in &orders {
            let path = with(&route, query);
            assert_eq!(listed(&svc, &path, &admin).await, *expected, "{path}");
            // Page by page, following the links, gives the same order.
            let mut walked = Vec::new();
            let paged = if query.is_empty() {
                "per_page=2".to_owned()
            } else {
                format!("{query}&per_page=2")
            };
            let mut next = Some(format!("{}{}", svc.base, with(&route, &paged)));
            while let Some(href) = next {
                let path = href.strip_prefix(&svc.base).unwrap().to_owned();
                let r = svc.get(&path, &admin).await;
                assert_eq!(r.status, 200, "{path}: {}", r.text());
                walked.extend(guids(&r));
                next = r.json()["pagination"]["next"]["href"]
                    .as_str()
                    .map(str::to_owned);
            }
            assert_eq!(walked, *expected, "{route} {query} by pages of 2");
        }
        // x1 was created first but changed last.
        if app.is_some() {
            let by_created = listed(&svc, &with(&route, "order_by=created_at"), &admin).await;
            assert_eq!(by_created[0], x1);
            let position = |list: &[String], guid: &str| list.iter().position(|g| g == guid);
            assert!(position(&by_created, &y2) < position(&by_created, &y1));
            let by_updated = listed(&svc, &with(&route, "order_by=updated_at"), &admin).await;
            assert!(by_updated[by_updated.len() - 2..].contains(&x1));
            assert!(position(&by_updated, &y2) < position(&by_updated, &y1));
        }

        // Timestamps: exact seconds, lists of them, and the relational operators.
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        for t in [&s1, &s2, &s3, &LONG_AGO.to_owned()] {
            filters.push((
                format!("created_ats={t}"),
                matching(&mine, |m| &m.created == t),
            ));
            filters.push((
                format!("updated_ats={t}"),
                matching(&mine, |m| m.changed() == t),
            ));
            for op in ["lt", "lte", "gt", "gte"] {
                filters.push((
                    format!("created_ats[{op}]={t}"),
                    matching(&mine, |m| compare(op, &m.created, t)),
                ));
                filters.push((
                    format!("updated_ats[{op}]={t}"),
                    matching(&mine, |m| compare(op, m.changed(), t)),
                ));
            }
        }
        filters.extend([
            (
                format!("created_ats={s1},{s3}"),
                matching(&mine, |m| m.created == s1 || m.created == s3),
            ),
            (
                format!("created_ats={s1},%20{s3}"),
                matching(&mine, |m| m.created == s1 || m.created == s3),
            ),
            (
                format!("updated_ats={LONG_AGO},{s2}"),
                matching(&mine, |m| m.changed() == s2),
            ),
            (
                format!("created_ats[gt]={s1}&created_ats[lt]={s3}"),
                matching(&mine, |m| m.created == s2),
            ),
            (
                format!("created_ats[gte]={s2}&created_ats[lte]={s2}"),
                matching(&mine, |m| m.created == s2),
            ),
            (format!("created_ats[gt]={s2}&created_ats[lt]={s2}"), vec![]),
            (
                format!("updated_ats[gte]={s1}&updated_ats[lt]={s3}"),
                matching(&mine, |m| m.changed() < s3.as_str()),
            ),
            (
                format!("created_ats={s1}&updated_ats={s3}"),
                matching(&mine, |m| m.guid == x1),
            ),
            (
                format!("created_ats[lt]={s2}&updated_ats[gt]={s2}&order_by=-created_at"),
                matching(&mine, |m| m.guid == x1),
            ),
        ]);
        for (query, expected) in &filters {
            let path = with(&route, query);
            assert_eq!(listed(&svc, &path, &admin).await, *expected, "{path}");
        }
        // The cases above prove what they claim on this data: x1 (created in s1, updated
        // in s3) is found by its update, not its creation.
        let updated_in_s1 = listed(&svc, &with(&route, &format!("updated_ats={s1}")), &admin).await;
        assert!(!updated_in_s1.contains(&x1));
        let updated_in_s3 = listed(&svc, &with(&route, &format!("updated_ats={s3}")), &admin).await;
        assert!(updated_in_s3.contains(&x1) && updated_in_s3.contains(&z1));
        if app.is_none() {
            assert_eq!(updated_in_s1, [x2.as_str()]);
            assert_eq!(
                listed(&svc, &with(&route, &format!("updated_ats={s2}")), &admin).await,
                [
                    std::slice::from_ref(&y1),
                    between.as_slice(),
                    &[y2.clone(), y3.clone()]
                ]
                .concat()
            );
        }
    }
}

#[tokio::test]
async fn pagination_links_echo_filters_and_order_with_sorted_keys() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    let base = svc.base.clone();
    let d1 = labelled(&svc, &ctx.app, "docker", &json!({"env": "prod"})).await;
    let d2 = labelled(&svc, &ctx.app, "docker", &json!({"env": "prod"})).await;
    svc.new_package(&ctx.app).await;

    // Page 1 of 2, then page 2 through the `next` link.
    let r = svc
        .get(
            "/v3/packages?types=docker&per_page=1&order_by=-created_at&label_selector=env%3Dprod",
            &admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let href = |page: u64| json!({"href": format!("{base}/v3/packages?label_selector=env%3Dprod&order_by=-created_at&page={page}&per_page=1&types=docker")});
    assert_eq!(
        r.json()["pagination"],
        json!({
            "total_results": 2,
            "total_pages": 2,
            "first": href(1),
            "last": href(2),
            "next": href(2),
            "previous": null,
        })
    );
    let descending = ordered_pair(&svc, &d1, &d2).await;
    assert_eq!(guids(&r), [descending[0].clone()]);
    let next = s(&r.json()["pagination"]["next"]["href"]);
    let r = svc.get(next.strip_prefix(&base).unwrap(), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(guids(&r), [descending[1].clone()]);
    assert_eq!(r.json()["pagination"]["previous"], href(1));
    assert_eq!(r.json()["pagination"]["next"], Value::Null);

    let t = "2030-01-01T00:00:00Z";
    let cases: Vec<(String, String)> = vec![
        // The spec's example.
        (
            "/v3/packages?states=READY,FAILED&label_selector=fruit=strawberry".into(),
            format!(
                "{base}/v3/packages?label_selector=fruit%3Dstrawberry&page=1&per_page=50&states=READY%2CFAILED"
            ),
        ),
        // `order_by` keeps its direction; an ascending one is spelled with `+`.
        (
            "/v3/packages?order_by=created_at".into(),
            format!("{base}/v3/packages?order_by=%2Bcreated_at&page=1&per_page=50"),
        ),
        (
            "/v3/packages?order_by=%2Bupdated_at".into(),
            format!("{base}/v3/packages?order_by=%2Bupdated_at&page=1&per_page=50"),
        ),
        (
            "/v3/packages?order_by=-updated_at&per_page=7".into(),
            format!("{base}/v3/packages?order_by=-updated_at&page=1&per_page=7"),
        ),
        // Every filter, given in no particular order, comes back sorted by key.
        (
            format!(
                "/v3/packages?updated_ats={t},{t}&types=bits&states=READY&space_guids=s1,s2&per_page=3&organization_guids=o&order_by=-created_at&label_selector={}&guids=g1,g2&created_ats[lt]={t}&app_guids=a",
                enc("env in (prod,staging),!canary")
            ),
            format!(
                "{base}/v3/packages?app_guids=a&created_ats%5Blt%5D=2030-01-01T00%3A00%3A00Z&guids=g1%2Cg2&label_selector=env+in+%28prod%2Cstaging%29%2C%21canary&order_by=-created_at&organization_guids=o&page=1&per_page=3&space_guids=s1%2Cs2&states=READY&types=bits&updated_ats=2030-01-01T00%3A00%3A00Z%2C2030-01-01T00%3A00%3A00Z"
            ),
        ),
        (
            format!("/v3/packages?created_ats={t}&updated_ats[gte]={t}"),
            format!(
                "{base}/v3/packages?created_ats=2030-01-01T00%3A00%3A00Z&page=1&per_page=50&updated_ats%5Bgte%5D=2030-01-01T00%3A00%3A00Z"
            ),
        ),
        // An empty filter is a filter the client gave.
        (
            "/v3/packages?guids=".into(),
            format!("{base}/v3/packages?guids=&page=1&per_page=50"),
        ),
        // The nested route likewise.
        (
            format!(
                "/v3/apps/{}/packages?states=READY&order_by=-updated_at&per_page=1",
                ctx.app
            ),
            format!(
                "{base}/v3/apps/{}/packages?order_by=-updated_at&page=1&per_page=1&states=READY",
                ctx.app
            ),
        ),
        (
            format!(
                "/v3/apps/{}/packages?label_selector=env&guids={d1}",
                ctx.app
            ),
            format!(
                "{base}/v3/apps/{}/packages?guids={d1}&label_selector=env&page=1&per_page=50",
                ctx.app
            ),
        ),
        // Without filters or order_by: today's links.
        (
            "/v3/packages".into(),
            format!("{base}/v3/packages?page=1&per_page=50"),
        ),
        (
            "/v3/packages?per_page=2&page=1".into(),
            format!("{base}/v3/packages?page=1&per_page=2"),
        ),
        (
            format!("/v3/apps/{}/packages?page=1", ctx.app),
            format!("{base}/v3/apps/{}/packages?page=1&per_page=50", ctx.app),
        ),
    ];
    for (path, first) in cases {
        let r = svc.get(&path, &admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let pagination = &r.json()["pagination"];
        assert_eq!(pagination["first"]["href"], first, "{path}");
        let total = pagination["total_pages"].as_u64().unwrap();
        let last = first.replace("page=1&per_page", &format!("page={total}&per_page"));
        assert_eq!(pagination["last"]["href"], last, "{path}");
        assert_eq!(pagination["previous"], Value::Null, "{path}");
    }

    // Page 2 of a filtered list: previous and next echo the filters too.
    let r = svc
        .get("/v3/packages?per_page=1&page=2&types=bits,docker", &admin)
        .await;
    let link = |page: u64| json!({"href": format!("{base}/v3/packages?page={page}&per_page=1&types=bits%2Cdocker")});
    assert_eq!(
        r.json()["pagination"],
        json!({
            "total_results": 3,
            "total_pages": 3,
            "first": link(1),
            "last": link(3),
            "next": link(3),
            "previous": link(1),
        })
    );
}

/// `a` and `b` in `order_by=-created_at` order (ties by guid, descending).
async fn ordered_pair(svc: &Service, a: &str, b: &str) -> [String; 2] {
    let ca = s(&svc.package(a).await["created_at"]);
    let cb = s(&svc.package(b).await["created_at"]);
    if (ca.as_str(), a) > (cb.as_str(), b) {
        [a.to_owned(), b.to_owned()]
    } else {
        [b.to_owned(), a.to_owned()]
    }
}

#[tokio::test]
async fn readers_see_their_spaces_only_whatever_the_filters() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let one = svc.ctx().await;
    let space2 = svc.create_space(&one.org, "second").await;
    let app2 = svc.create_app(&space2, "web").await;
    let two = svc.ctx().await;

    let p1 = labelled(&svc, &one.app, "docker", &json!({"env": "prod"})).await;
    let p2 = svc.new_package(&one.app).await;
    let p3 = labelled(&svc, &app2, "docker", &json!({"env": "prod"})).await;
    let p4 = labelled(&svc, &two.app, "bits", &json!({"env": "prod"})).await;

    let developer = new_user();
    svc.grant(&developer, "space_developer", &one.space).await;
    let manager = new_user();
    svc.grant(&manager, "space_manager", &one.space).await;
    let auditor = new_user();
    svc.grant(&auditor, "space_auditor", &one.space).await;
    let org_manager = new_user();
    svc.grant(&org_manager, "organization_manager", &two.org)
        .await;
    let nobody = new_user();

    // Queries that name, one way or another, every package.
    let queries = [
        String::new(),
        format!("guids={p1},{p2},{p3},{p4}"),
        format!("app_guids={},{app2},{}", one.app, two.app),
        format!("space_guids={},{space2},{}", one.space, two.space),
        format!("organization_guids={},{}", one.org, two.org),
        "label_selector=env%3Dprod".into(),
        "label_selector=env".into(),
        "types=docker,bits".into(),
        "states=READY,AWAITING_UPLOAD".into(),
        format!("created_ats[gt]={LONG_AGO}"),
        format!("updated_ats[gte]={LONG_AGO}&order_by=-created_at"),
    ];
    let all = [&p1, &p2, &p3, &p4];
    // Who sees what, before the query narrows it.
    let readers: [(&str, String, Vec<&String>); 6] = [
        ("admin", admin.clone(), all.to_vec()),
        (
            "space developer",
            svc.token(&developer, READ_WRITE),
            vec![&p1, &p2],
        ),
        (
            "space manager",
            svc.token(&manager, READ_WRITE),
            vec![&p1, &p2],
        ),
        (
            "space auditor",
            svc.token(&auditor, READ_WRITE),
            vec![&p1, &p2],
        ),
        (
            "organization manager",
            svc.token(&org_manager, READ_WRITE),
            vec![&p4],
        ),
        ("no role", svc.token(&nobody, READ_WRITE), vec![]),
    ];
    for (who, token, visible) in &readers {
        for query in &queries {
            let admin_sees = listed(&svc, &with("/v3/packages", query), &admin).await;
            let expected: Vec<String> = admin_sees
                .iter()
                .filter(|g| visible.contains(g))
                .cloned()
                .collect();
            let path = with("/v3/packages", query);
            assert_eq!(listed(&svc, &path, token).await, expected, "{who}: {path}");
        }
    }
    // The filters do narrow what a reader sees.
    let dev = svc.token(&developer, READ_WRITE);
    for (query, expected) in [
        (format!("guids={p2},{p3}"), vec![p2.clone()]),
        ("label_selector=env%3Dprod".into(), vec![p1.clone()]),
        ("types=bits".into(), vec![p2.clone()]),
        (
            format!("organization_guids={}", one.org),
            vec![p1.clone(), p2.clone()],
        ),
        (format!("space_guids={space2}"), vec![]),
        (format!("app_guids={app2}"), vec![]),
    ] {
        let path = with("/v3/packages", &query);
        assert_eq!(listed(&svc, &path, &dev).await, expected, "{path}");
    }

    // The nested route (and `app_guid`): readers of the app's space get 200, others 404.
    let nested_queries = ["", "label_selector=env", "types=docker", "guids="];
    for (who, token, visible) in &readers {
        for app in [&one.app, &app2, &two.app] {
            for query in nested_queries {
                let app_packages: Vec<&String> = match app {
                    a if a == &one.app => vec![&p1, &p2],
                    a if a == &app2 => vec![&p3],
                    _ => vec![&p4],
                };
                let readable = app_packages.iter().any(|p| visible.contains(p));
                for path in [
                    with(&format!("/v3/apps/{app}/packages"), query),
                    with(&format!("/v3/packages?app_guid={app}"), query),
                ] {
                    let r = svc.get(&path, token).await;
                    if readable {
                        let expected = listed(&svc, &path, &admin).await;
                        assert_eq!(r.status, 200, "{who}: {path}: {}", r.text());
                        assert_eq!(guids(&r), expected, "{who}: {path}");
                    } else {
                        r.assert_error(404, 10010, "ResourceNotFound", "App not found");
                    }
                }
            }
        }
    }

    // Lists need the read scope.
    let write_only = svc.token(&developer, &["cloud_controller.write"]);
    for path in [
        "/v3/packages?types=bits".to_owned(),
        format!("/v3/apps/{}/packages?types=bits", one.app),
        "/v3/packages?foo=1".to_owned(),
    ] {
        svc.get(&path, &write_only)
            .await
            .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    }
}

#[tokio::test]
async fn a_packages_droplet_list_is_always_an_empty_page() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    let other = svc.ctx().await;
    let base = svc.base.clone();
    let bits = svc.new_package(&ctx.app).await;
    let ready = s(&svc
        .upload_and_wait(&ctx.app, zips::small_app("droplets"))
        .await["guid"]);
    let image = s(&docker(&svc, &ctx.app).await["guid"]);

    for guid in [&bits, &ready, &image] {
        let r = svc
            .get(&format!("/v3/packages/{guid}/droplets"), &admin)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let href = format!("{base}/v3/packages/{guid}/droplets?page=1&per_page=50");
        assert_eq!(
            r.json(),
            json!({
                "pagination": {
                    "total_results": 0,
                    "total_pages": 1,
                    "first": {"href": href},
                    "last": {"href": href},
                    "next": null,
                    "previous": null,
                },
                "resources": [],
            })
        );
    }

    // Every parameter of CC's droplet list is accepted (and filters nothing).
    let t = "2020-01-01T00:00:00Z";
    let accepted = [
        "page=1&per_page=10".to_owned(),
        "order_by=-created_at".into(),
        "order_by=%2Bupdated_at".into(),
        format!("created_ats={t}"),
        format!("created_ats[lt]={t}&updated_ats[gte]={t}"),
        format!("updated_ats={t},{t}"),
        format!("guids={bits}"),
        format!("app_guid={}", ctx.app),
        format!("app_guids={}", ctx.app),
        format!("organization_guids={}", ctx.org),
        format!("package_guid={bits}"),
        format!("space_guids={}", ctx.space),
        "states=STAGED,FAILED".into(),
        "label_selector=env%3Dprod".into(),
        format!(
            "page=1&per_page=10&order_by=-created_at&created_ats[gt]={t}&updated_ats={t}&guids=g&app_guid=a&app_guids=a&organization_guids=o&package_guid=p&space_guids=s&states=STAGED&label_selector=env"
        ),
    ];
    for query in &accepted {
        let path = format!("/v3/packages/{bits}/droplets?{query}");
        let r = svc.get(&path, &admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["resources"], json!([]), "{path}");
        assert_eq!(r.json()["pagination"]["total_results"], 0, "{path}");
        assert_eq!(r.json()["pagination"]["total_pages"], 1, "{path}");
    }

    // Validated as the package lists are; `current` and anything else are refused.
    let refusals = [
        (
            "current=true",
            "Unknown query parameter(s): 'current'".to_owned(),
        ),
        (
            "current=",
            "Unknown query parameter(s): 'current'".to_owned(),
        ),
        (
            "foo=1",
            format!("Unknown query parameter(s): 'foo'. {DROPLET_VALID}"),
        ),
        (
            "types=bits&foo=1",
            format!("Unknown query parameter(s): 'types', 'foo'. {DROPLET_VALID}"),
        ),
        ("order_by=name", ORDER_BY.to_owned()),
        (
            "per_page=5001",
            "Per page must be between 1 and 5000".to_owned(),
        ),
        ("page=0", "Page must be greater than 0".to_owned()),
        ("created_ats=yesterday", CREATED_FORMAT.to_owned()),
        ("updated_ats[lt]=2020-01-01", UPDATED_FORMAT.to_owned()),
        (
            "created_ats[foo]=2020-01-01T00:00:00Z",
            "Created ats Invalid relational operator: 'foo'".to_owned(),
        ),
        (
            "updated_ats[gt]=2020-01-01T00:00:00Z,2020-01-02T00:00:00Z",
            "Updated ats only accepts one value when using a relational operator".to_owned(),
        ),
        ("label_selector=", "Missing label_selector value".to_owned()),
        (
            "label_selector=%21%21env",
            "Invalid label_selector value".to_owned(),
        ),
        (
            "label_selector=a%2Fb%2Fc",
            "key has more than one '/'".to_owned(),
        ),
    ];
    for (query, text) in &refusals {
        for guid in [bits.as_str(), "no-such-package"] {
            // Query validation comes before the package lookup.
            let path = format!("/v3/packages/{guid}/droplets?{query}");
            refused(&svc.get(&path, &admin).await, text);
        }
    }

    // Missing or unreadable: 404. Every reading role of the space: 200.
    svc.get("/v3/packages/no-such-package/droplets", &admin)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    let outsider = new_user();
    svc.grant(&outsider, "space_developer", &other.space).await;
    let nobody = new_user();
    for user in [&outsider, &nobody] {
        let token = svc.token(user, READ_WRITE);
        for path in [
            format!("/v3/packages/{bits}/droplets"),
            format!("/v3/packages/{image}/droplets?states=STAGED"),
            "/v3/packages/no-such-package/droplets".to_owned(),
        ] {
            svc.get(&path, &token).await.assert_error(
                404,
                10010,
                "ResourceNotFound",
                "Package not found",
            );
        }
    }
    for (role, target) in [
        ("space_developer", &ctx.space),
        ("space_manager", &ctx.space),
        ("space_auditor", &ctx.space),
        ("organization_manager", &ctx.org),
    ] {
        let user = new_user();
        svc.grant(&user, role, target).await;
        let read_only = svc.token(&user, &["cloud_controller.read"]);
        for guid in [&bits, &ready, &image] {
            let r = svc
                .get(&format!("/v3/packages/{guid}/droplets"), &read_only)
                .await;
            assert_eq!(r.status, 200, "{role}: {}", r.text());
            assert_eq!(r.json()["resources"], json!([]));
        }
    }

    // The read scope comes first: before validation and before the lookup.
    let developer = new_user();
    svc.grant(&developer, "space_developer", &ctx.space).await;
    let write_only = svc.token(&developer, &["cloud_controller.write"]);
    for path in [
        format!("/v3/packages/{bits}/droplets"),
        format!("/v3/packages/{bits}/droplets?current=true"),
        "/v3/packages/no-such-package/droplets".to_owned(),
    ] {
        svc.get(&path, &write_only)
            .await
            .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    }
}
