//! Organizations, spaces, roles and apps: the GA v3 shapes, their validation texts, who
//! sees and changes what, and what deleting them takes along.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use packages_tests::zips;
use packages_tests::{READ_WRITE, Reply, Service};
use serde_json::{Value, json};

const NOT_AUTHORIZED: &str = "You are not authorized to perform the requested action";
const INVALID_ORG: &str =
    "Invalid organization. Ensure the organization exists and you have access to it.";
const INVALID_SPACE: &str =
    "Invalid space. Ensure that the space exists and you have access to it.";

fn new_user() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn guids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["guid"].as_str().unwrap().to_owned())
        .collect()
}

fn strs(guids: &[&String]) -> Vec<String> {
    guids.iter().map(|g| (*g).clone()).collect()
}

fn assert_timestamp(v: &Value) {
    let t = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    assert_eq!(t.len(), 20, "second precision with Z: {t}");
    assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
}

fn unprocessable(r: &Reply, detail: &str) {
    r.assert_error(422, 10008, "UnprocessableEntity", detail);
}

fn not_authorized(r: &Reply) {
    r.assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
}

fn not_found(r: &Reply, what: &str) {
    r.assert_error(404, 10010, "ResourceNotFound", &format!("{what} not found"));
}

fn space_body(org: &str, name: &str) -> Value {
    json!({"name": name, "relationships": {"organization": {"data": {"guid": org}}}})
}

fn app_body(space: &str, name: &str) -> Value {
    json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}})
}

fn role_body(role: &str, user: &str, target_kind: &str, target: &str) -> Value {
    json!({
        "type": role,
        "relationships": {"user": {"data": {"guid": user}}, target_kind: {"data": {"guid": target}}}
    })
}

/// Polls until the package's bits are gone from the blobstore (30 s at most).
async fn wait_bits_gone(svc: &Service, guid: &str) {
    let started = Instant::now();
    while svc.bits_exist(guid).await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "bits of {guid} still there\n{}",
            svc.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A READY package with bits in the blobstore.
async fn ready_package(svc: &Service, app: &str) -> String {
    let p = svc.upload_and_wait(app, zips::small_app(&new_user())).await;
    assert_eq!(p["state"], "READY", "{p}");
    let guid = p["guid"].as_str().unwrap().to_owned();
    assert!(svc.bits_exist(&guid).await);
    guid
}

#[tokio::test]
async fn organizations_are_created_by_admins() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let r = svc
        .post("/v3/organizations", &admin, &json!({"name": "acme"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    let org = r.json();
    assert_eq!(
        keys(&org),
        [
            "guid",
            "created_at",
            "updated_at",
            "name",
            "suspended",
            "metadata",
            "links"
        ]
    );
    let guid = org["guid"].as_str().unwrap();
    assert_eq!(guid.len(), 36, "{guid}");
    assert_eq!(org["name"], "acme");
    assert_eq!(org["suspended"], false);
    assert_timestamp(&org["created_at"]);
    assert_timestamp(&org["updated_at"]);
    assert_eq!(org["metadata"], json!({"labels": {}, "annotations": {}}));
    assert_eq!(
        org["links"],
        json!({"self": {"href": format!("{}/v3/organizations/{guid}", svc.base)}})
    );
    let r = svc.get(&format!("/v3/organizations/{guid}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), org);

    let r = svc
        .post(
            "/v3/organizations",
            &admin,
            &json!({"name": "cold", "suspended": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["suspended"], true);

    unprocessable(
        &svc.post("/v3/organizations", &admin, &json!({"name": "acme"}))
            .await,
        "Organization 'acme' already exists.",
    );
    let r = svc.post("/v3/organizations", &admin, &json!({})).await;
    unprocessable(&r, "Name can't be blank");
    assert_eq!(
        r.json()["description"],
        "The request is semantically invalid: Name can't be blank"
    );
    unprocessable(
        &svc.post("/v3/organizations", &admin, &json!({"name": "y", "x": 1}))
            .await,
        "Unknown field(s): 'x'",
    );

    // A non-admin, even one who manages an organization, cannot create one.
    let manager = new_user();
    svc.grant(&manager, "organization_manager", guid).await;
    for user in [&manager, &new_user()] {
        not_authorized(
            &svc.post_as(user, "/v3/organizations", &json!({"name": "mine"}))
                .await,
        );
    }
    let all = svc.get("/v3/organizations", &admin).await;
    assert_eq!(all.json()["pagination"]["total_results"], 2);
}

#[tokio::test]
async fn organizations_are_seen_by_members_only() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let a = svc.ctx().await;
    let b = svc.ctx().await;
    let c = svc.ctx().await;
    let auditor = new_user();
    svc.grant(&auditor, "space_auditor", &a.space).await;
    let manager = new_user();
    svc.grant(&manager, "organization_manager", &b.org).await;
    let stranger = new_user();

    for (user, org) in [(&auditor, &a.org), (&manager, &b.org)] {
        let r = svc
            .get(
                &format!("/v3/organizations/{org}"),
                &svc.token(user, READ_WRITE),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["guid"], *org);
    }
    for (user, org) in [(&auditor, &b.org), (&manager, &a.org), (&stranger, &c.org)] {
        not_found(
            &svc.get(
                &format!("/v3/organizations/{org}"),
                &svc.token(user, READ_WRITE),
            )
            .await,
            "Organization",
        );
    }
    not_found(
        &svc.get("/v3/organizations/no-such-org", &admin).await,
        "Organization",
    );

    let r = svc.get("/v3/organizations", &admin).await;
    assert_eq!(guids(&r), strs(&[&a.org, &b.org, &c.org]));
    let page = r.json();
    assert_eq!(
        keys(&page["pagination"]),
        [
            "total_results",
            "total_pages",
            "first",
            "last",
            "next",
            "previous"
        ]
    );
    assert_eq!(page["pagination"]["total_results"], 3);
    assert_eq!(page["pagination"]["total_pages"], 1);
    assert_eq!(
        page["pagination"]["first"]["href"],
        format!("{}/v3/organizations?page=1&per_page=50", svc.base)
    );
    assert_eq!(page["pagination"]["next"], Value::Null);

    let r = svc
        .get("/v3/organizations", &svc.token(&auditor, READ_WRITE))
        .await;
    assert_eq!(guids(&r), strs(&[&a.org]));
    assert_eq!(r.json()["pagination"]["total_results"], 1);
    let r = svc
        .get("/v3/organizations", &svc.token(&manager, READ_WRITE))
        .await;
    assert_eq!(guids(&r), strs(&[&b.org]));
    let r = svc
        .get("/v3/organizations", &svc.token(&stranger, READ_WRITE))
        .await;
    assert_eq!(guids(&r), Vec::<String>::new());
    assert_eq!(r.json()["pagination"]["total_results"], 0);

    let r = svc.get("/v3/organizations?per_page=2&page=2", &admin).await;
    assert_eq!(guids(&r), strs(&[&c.org]));
}

#[tokio::test]
async fn deleting_an_organization_takes_everything_in_it() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    let second_space = svc.create_space(&ctx.org, "prod").await;
    let second_app = svc.create_app(&second_space, "api").await;
    let ready = ready_package(&svc, &ctx.app).await;
    let other_ready = ready_package(&svc, &second_app).await;
    let awaiting = svc.new_package(&ctx.app).await;
    let survivor = svc.ctx().await;
    let kept = ready_package(&svc, &survivor.app).await;

    let manager = new_user();
    svc.grant(&manager, "organization_manager", &ctx.org).await;
    let dev = new_user();
    svc.grant(&dev, "space_developer", &ctx.space).await;
    let roles = svc.get("/v3/roles", &admin).await;
    let role_guids = guids(&roles);
    assert_eq!(role_guids.len(), 2);

    // Members who are not admins may not; strangers do not see it.
    for user in [&manager, &dev] {
        not_authorized(
            &svc.delete(
                &format!("/v3/organizations/{}", ctx.org),
                &svc.token(user, READ_WRITE),
            )
            .await,
        );
    }
    not_found(
        &svc.delete(
            &format!("/v3/organizations/{}", ctx.org),
            &svc.token(&new_user(), READ_WRITE),
        )
        .await,
        "Organization",
    );
    assert_eq!(svc.package(&ready).await["state"], "READY");

    let r = svc
        .delete(&format!("/v3/organizations/{}", ctx.org), &admin)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());

    not_found(
        &svc.get(&format!("/v3/organizations/{}", ctx.org), &admin)
            .await,
        "Organization",
    );
    for space in [&ctx.space, &second_space] {
        not_found(
            &svc.get(&format!("/v3/spaces/{space}"), &admin).await,
            "Space",
        );
    }
    for app in [&ctx.app, &second_app] {
        not_found(&svc.get(&format!("/v3/apps/{app}"), &admin).await, "App");
    }
    for package in [&ready, &other_ready, &awaiting] {
        not_found(
            &svc.get(&format!("/v3/packages/{package}"), &admin).await,
            "Package",
        );
    }
    for role in &role_guids {
        not_found(&svc.get(&format!("/v3/roles/{role}"), &admin).await, "Role");
    }
    assert_eq!(
        guids(&svc.get("/v3/packages", &admin).await),
        strs(&[&kept])
    );
    assert_eq!(
        guids(&svc.get("/v3/organizations", &admin).await),
        strs(&[&survivor.org])
    );
    for package in [&ready, &other_ready] {
        wait_bits_gone(&svc, package).await;
    }
    // Another organization's bits stay.
    assert!(svc.bits_exist(&kept).await);
    not_found(
        &svc.delete(&format!("/v3/organizations/{}", ctx.org), &admin)
            .await,
        "Organization",
    );
}

#[tokio::test]
async fn spaces_are_created_in_an_organization() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let org = svc.create_org("acme").await;
    let other_org = svc.create_org("globex").await;

    let r = svc
        .post("/v3/spaces", &admin, &space_body(&org, "dev"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let space = r.json();
    assert_eq!(
        keys(&space),
        [
            "guid",
            "created_at",
            "updated_at",
            "name",
            "relationships",
            "metadata",
            "links"
        ]
    );
    let guid = space["guid"].as_str().unwrap();
    assert_eq!(space["name"], "dev");
    assert_timestamp(&space["created_at"]);
    assert_timestamp(&space["updated_at"]);
    assert_eq!(
        space["relationships"],
        json!({"organization": {"data": {"guid": org}}})
    );
    assert_eq!(
        space["links"],
        json!({
            "self": {"href": format!("{}/v3/spaces/{guid}", svc.base)},
            "organization": {"href": format!("{}/v3/organizations/{org}", svc.base)},
        })
    );
    let r = svc.get(&format!("/v3/spaces/{guid}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), space);

    unprocessable(
        &svc.post("/v3/spaces", &admin, &space_body(&org, "dev"))
            .await,
        "Name must be unique per organization",
    );
    let r = svc
        .post("/v3/spaces", &admin, &space_body(&other_org, "dev"))
        .await;
    assert_eq!(r.status, 201, "same name, other organization: {}", r.text());

    unprocessable(
        &svc.post("/v3/spaces", &admin, &space_body("no-such-org", "x"))
            .await,
        INVALID_ORG,
    );
    unprocessable(
        &svc.post(
            "/v3/spaces",
            &admin,
            &json!({"name": "x", "relationships": {"organization": {"data": null}}}),
        )
        .await,
        INVALID_ORG,
    );
    unprocessable(
        &svc.post("/v3/spaces", &admin, &json!({"name": "s"})).await,
        "Relationships 'relationships' is not an object",
    );
    unprocessable(
        &svc.post(
            "/v3/spaces",
            &admin,
            &json!({"relationships": {"organization": {"data": {"guid": org}}}}),
        )
        .await,
        "Name can't be blank",
    );

    // Only admins create spaces; an organization manager who is not one gets 403.
    let manager = new_user();
    svc.grant(&manager, "organization_manager", &org).await;
    not_authorized(
        &svc.post_as(&manager, "/v3/spaces", &space_body(&org, "mine"))
            .await,
    );
    // Someone who cannot see the organization: it is invalid for them.
    unprocessable(
        &svc.post_as(&new_user(), "/v3/spaces", &space_body(&org, "mine"))
            .await,
        INVALID_ORG,
    );
    let all = svc.get("/v3/spaces", &admin).await;
    assert_eq!(all.json()["pagination"]["total_results"], 2);
}

#[tokio::test]
async fn spaces_are_seen_through_roles_and_deleted_by_admins() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let org = svc.create_org("acme").await;
    let dev_space = svc.create_space(&org, "dev").await;
    let prod_space = svc.create_space(&org, "prod").await;
    let elsewhere = svc.ctx().await;

    let mut readers = Vec::new();
    for role in ["space_developer", "space_manager", "space_auditor"] {
        let user = new_user();
        svc.grant(&user, role, &dev_space).await;
        readers.push(user);
    }
    let manager = new_user();
    svc.grant(&manager, "organization_manager", &org).await;
    let stranger = new_user();

    for user in &readers {
        let token = svc.token(user, READ_WRITE);
        let r = svc.get(&format!("/v3/spaces/{dev_space}"), &token).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["guid"], dev_space);
        not_found(
            &svc.get(&format!("/v3/spaces/{prod_space}"), &token).await,
            "Space",
        );
        assert_eq!(
            guids(&svc.get("/v3/spaces", &token).await),
            strs(&[&dev_space])
        );
    }
    let token = svc.token(&manager, READ_WRITE);
    for space in [&dev_space, &prod_space] {
        let r = svc.get(&format!("/v3/spaces/{space}"), &token).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    not_found(
        &svc.get(&format!("/v3/spaces/{}", elsewhere.space), &token)
            .await,
        "Space",
    );
    assert_eq!(
        guids(&svc.get("/v3/spaces", &token).await),
        strs(&[&dev_space, &prod_space])
    );
    let token = svc.token(&stranger, READ_WRITE);
    not_found(
        &svc.get(&format!("/v3/spaces/{dev_space}"), &token).await,
        "Space",
    );
    let r = svc.get("/v3/spaces", &token).await;
    assert_eq!(guids(&r), Vec::<String>::new());
    assert_eq!(r.json()["pagination"]["total_results"], 0);
    assert_eq!(
        guids(&svc.get("/v3/spaces", &admin).await),
        strs(&[&dev_space, &prod_space, &elsewhere.space])
    );

    // Deleting: members who are not admins may not, strangers do not see it.
    let app = svc.create_app(&dev_space, "web").await;
    let ready = ready_package(&svc, &app).await;
    for user in [&readers[0], &manager] {
        not_authorized(
            &svc.delete(
                &format!("/v3/spaces/{dev_space}"),
                &svc.token(user, READ_WRITE),
            )
            .await,
        );
    }
    not_found(
        &svc.delete(
            &format!("/v3/spaces/{dev_space}"),
            &svc.token(&stranger, READ_WRITE),
        )
        .await,
        "Space",
    );
    let r = svc.delete(&format!("/v3/spaces/{dev_space}"), &admin).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    not_found(
        &svc.get(&format!("/v3/spaces/{dev_space}"), &admin).await,
        "Space",
    );
    not_found(&svc.get(&format!("/v3/apps/{app}"), &admin).await, "App");
    not_found(
        &svc.get(&format!("/v3/packages/{ready}"), &admin).await,
        "Package",
    );
    wait_bits_gone(&svc, &ready).await;
    // The organization and its other space stay.
    let r = svc.get(&format!("/v3/spaces/{prod_space}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The roles in the deleted space went with it; the organization's stays.
    let roles = svc.get("/v3/roles", &admin).await;
    assert_eq!(
        roles.json()["pagination"]["total_results"],
        1,
        "{}",
        roles.text()
    );
    assert_eq!(roles.json()["resources"][0]["type"], "organization_manager");
    assert_eq!(
        guids(
            &svc.get("/v3/spaces", &svc.token(&readers[0], READ_WRITE))
                .await
        ),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn roles_are_created_by_admins() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    let user = new_user();

    for role in ["space_developer", "space_manager", "space_auditor"] {
        let r = svc
            .post(
                "/v3/roles",
                &admin,
                &role_body(role, &user, "space", &ctx.space),
            )
            .await;
        assert_eq!(r.status, 201, "{role}: {}", r.text());
        let v = r.json();
        assert_eq!(
            keys(&v),
            [
                "guid",
                "created_at",
                "updated_at",
                "type",
                "relationships",
                "links"
            ]
        );
        let guid = v["guid"].as_str().unwrap();
        assert_eq!(v["type"], role);
        assert_timestamp(&v["created_at"]);
        assert_eq!(
            v["relationships"],
            json!({
                "user": {"data": {"guid": user}},
                "space": {"data": {"guid": ctx.space}},
                "organization": {"data": null},
            })
        );
        assert_eq!(
            v["links"],
            json!({
                "self": {"href": format!("{}/v3/roles/{guid}", svc.base)},
                "space": {"href": format!("{}/v3/spaces/{}", svc.base, ctx.space)},
            })
        );
    }
    let r = svc
        .post(
            "/v3/roles",
            &admin,
            &role_body("organization_manager", &user, "organization", &ctx.org),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let guid = v["guid"].as_str().unwrap();
    assert_eq!(v["type"], "organization_manager");
    assert_eq!(
        v["relationships"],
        json!({
            "user": {"data": {"guid": user}},
            "space": {"data": null},
            "organization": {"data": {"guid": ctx.org}},
        })
    );
    assert_eq!(
        v["links"],
        json!({
            "self": {"href": format!("{}/v3/roles/{guid}", svc.base)},
            "organization": {"href": format!("{}/v3/organizations/{}", svc.base, ctx.org)},
        })
    );

    // The space's name is "dev" (see Service::ctx).
    unprocessable(
        &svc.post(
            "/v3/roles",
            &admin,
            &role_body("space_developer", &user, "space", &ctx.space),
        )
        .await,
        &format!("User '{user}' already has 'space_developer' role in space 'dev'."),
    );
    let r = svc
        .post(
            "/v3/roles",
            &admin,
            &role_body("space_admin", &user, "space", &ctx.space),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let v = r.json();
    assert_eq!(v["code"], 10008);
    assert_eq!(v["error_code"], "CF-UnprocessableEntity");
    assert!(
        v["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("Type must be one of the allowed types"),
        "{v}"
    );
    unprocessable(
        &svc.post(
            "/v3/roles",
            &admin,
            &json!({
                "type": "space_auditor",
                "relationships": {
                    "user": {"data": {"guid": user}},
                    "space": {"data": {"guid": ctx.space}},
                    "organization": {"data": {"guid": ctx.org}},
                }
            }),
        )
        .await,
        "Relationships cannot specify both an organization and a space.",
    );
    unprocessable(
        &svc.post(
            "/v3/roles",
            &admin,
            &role_body("space_auditor", &user, "space", "no-such-space"),
        )
        .await,
        INVALID_SPACE,
    );

    // Non-admins, even the space's manager, may not hand out roles.
    let manager = new_user();
    svc.grant(&manager, "space_manager", &ctx.space).await;
    not_authorized(
        &svc.post_as(
            &manager,
            "/v3/roles",
            &role_body("space_developer", &new_user(), "space", &ctx.space),
        )
        .await,
    );
    let all = svc.get("/v3/roles", &admin).await;
    assert_eq!(all.json()["pagination"]["total_results"], 5);
}

#[tokio::test]
async fn roles_are_listed_and_deleting_one_takes_access_away() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    let elsewhere = svc.ctx().await;
    let package = svc.new_package(&ctx.app).await;
    let dev = new_user();
    let r = svc
        .post(
            "/v3/roles",
            &admin,
            &role_body("space_developer", &dev, "space", &ctx.space),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let role = r.json()["guid"].as_str().unwrap().to_owned();
    let foreign = svc
        .post(
            "/v3/roles",
            &admin,
            &role_body("space_auditor", &new_user(), "space", &elsewhere.space),
        )
        .await;
    assert_eq!(foreign.status, 201);
    let foreign = foreign.json()["guid"].as_str().unwrap().to_owned();
    let dev_token = svc.token(&dev, READ_WRITE);

    let r = svc.get(&format!("/v3/roles/{role}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["type"], "space_developer");
    let r = svc.get(&format!("/v3/roles/{role}"), &dev_token).await;
    assert_eq!(r.status, 200, "its user sees it: {}", r.text());
    not_found(
        &svc.get(&format!("/v3/roles/{foreign}"), &dev_token).await,
        "Role",
    );
    not_found(
        &svc.get(
            &format!("/v3/roles/{role}"),
            &svc.token(&new_user(), READ_WRITE),
        )
        .await,
        "Role",
    );
    assert_eq!(
        guids(&svc.get("/v3/roles", &admin).await),
        strs(&[&role, &foreign])
    );
    assert_eq!(
        guids(&svc.get("/v3/roles", &dev_token).await),
        strs(&[&role])
    );

    // While the role exists, the developer works in the space.
    let r = svc
        .get(&format!("/v3/packages/{package}"), &dev_token)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Only an admin removes it.
    not_authorized(&svc.delete(&format!("/v3/roles/{role}"), &dev_token).await);
    let r = svc.delete(&format!("/v3/roles/{role}"), &admin).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    not_found(&svc.get(&format!("/v3/roles/{role}"), &admin).await, "Role");
    not_found(
        &svc.delete(&format!("/v3/roles/{role}"), &admin).await,
        "Role",
    );

    // And with it the access.
    not_found(
        &svc.get(&format!("/v3/packages/{package}"), &dev_token)
            .await,
        "Package",
    );
    not_found(
        &svc.post(
            &format!("/v3/apps/{}/packages", ctx.app),
            &dev_token,
            &json!({"type": "bits"}),
        )
        .await,
        "App",
    );
    assert_eq!(
        guids(&svc.get("/v3/packages", &dev_token).await),
        Vec::<String>::new()
    );
    assert_eq!(
        guids(&svc.get("/v3/roles", &admin).await),
        strs(&[&foreign])
    );
}

#[tokio::test]
async fn apps_are_created_by_admins_and_developers() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let org = svc.create_org("acme").await;
    let space = svc.create_space(&org, "dev").await;
    let other_space = svc.create_space(&org, "prod").await;

    let r = svc.post("/v3/apps", &admin, &app_body(&space, "web")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let app = r.json();
    assert_eq!(
        keys(&app),
        [
            "guid",
            "created_at",
            "updated_at",
            "name",
            "state",
            "lifecycle",
            "relationships",
            "metadata",
            "links"
        ]
    );
    let guid = app["guid"].as_str().unwrap();
    assert_eq!(app["name"], "web");
    assert_eq!(app["state"], "STOPPED");
    assert_eq!(app["lifecycle"]["type"], "buildpack");
    assert_timestamp(&app["created_at"]);
    assert_eq!(
        app["relationships"],
        json!({"space": {"data": {"guid": space}}})
    );
    let base = &svc.base;
    assert_eq!(
        app["links"],
        json!({
            "self": {"href": format!("{base}/v3/apps/{guid}")},
            "space": {"href": format!("{base}/v3/spaces/{space}")},
            "packages": {"href": format!("{base}/v3/apps/{guid}/packages")},
        })
    );
    let r = svc.get(&format!("/v3/apps/{guid}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), app);

    let dev = new_user();
    svc.grant(&dev, "space_developer", &space).await;
    let dev_token = svc.token(&dev, READ_WRITE);
    let r = svc
        .post("/v3/apps", &dev_token, &app_body(&space, "worker"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["state"], "STOPPED");
    assert_eq!(
        r.json()["relationships"]["space"]["data"]["guid"],
        space.as_str()
    );
    // A developer here only: another space of the same organization is out of sight.
    unprocessable(
        &svc.post("/v3/apps", &dev_token, &app_body(&other_space, "api"))
            .await,
        INVALID_SPACE,
    );

    for role in ["space_auditor", "space_manager"] {
        let user = new_user();
        svc.grant(&user, role, &space).await;
        not_authorized(
            &svc.post_as(&user, "/v3/apps", &app_body(&space, "nope"))
                .await,
        );
    }
    unprocessable(
        &svc.post_as(&new_user(), "/v3/apps", &app_body(&space, "nope"))
            .await,
        INVALID_SPACE,
    );
    unprocessable(
        &svc.post("/v3/apps", &admin, &app_body("no-such-space", "nope"))
            .await,
        INVALID_SPACE,
    );

    let r = svc.post("/v3/apps", &admin, &app_body(&space, "web")).await;
    r.assert_error(
        422,
        10016,
        "UniquenessError",
        "App with the name 'web' already exists.",
    );
    let r = svc
        .post("/v3/apps", &dev_token, &app_body(&space, "web"))
        .await;
    r.assert_error(
        422,
        10016,
        "UniquenessError",
        "App with the name 'web' already exists.",
    );
    let r = svc
        .post("/v3/apps", &admin, &app_body(&other_space, "web"))
        .await;
    assert_eq!(r.status, 201, "same name, other space: {}", r.text());
    unprocessable(
        &svc.post(
            "/v3/apps",
            &admin,
            &json!({"relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await,
        "Name must be a string",
    );
    unprocessable(
        &svc.post("/v3/apps", &admin, &json!({"name": "x"})).await,
        "Relationships 'relationships' is not an object",
    );

    let all = svc.get("/v3/apps", &admin).await;
    assert_eq!(all.json()["pagination"]["total_results"], 3);
}

#[tokio::test]
async fn apps_are_seen_by_readers_and_deleted_by_developers() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    let elsewhere = svc.ctx().await;
    let ready = ready_package(&svc, &ctx.app).await;
    let awaiting = svc.new_package(&ctx.app).await;
    let kept = ready_package(&svc, &elsewhere.app).await;

    let auditor = new_user();
    svc.grant(&auditor, "space_auditor", &ctx.space).await;
    let manager = new_user();
    svc.grant(&manager, "organization_manager", &ctx.org).await;
    let dev = new_user();
    svc.grant(&dev, "space_developer", &ctx.space).await;
    let stranger = svc.token(&new_user(), READ_WRITE);

    for user in [&auditor, &manager, &dev] {
        let token = svc.token(user, READ_WRITE);
        let r = svc.get(&format!("/v3/apps/{}", ctx.app), &token).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["guid"], ctx.app);
        not_found(
            &svc.get(&format!("/v3/apps/{}", elsewhere.app), &token)
                .await,
            "App",
        );
        assert_eq!(guids(&svc.get("/v3/apps", &token).await), strs(&[&ctx.app]));
    }
    not_found(
        &svc.get(&format!("/v3/apps/{}", ctx.app), &stranger).await,
        "App",
    );
    let r = svc.get("/v3/apps", &stranger).await;
    assert_eq!(guids(&r), Vec::<String>::new());
    assert_eq!(r.json()["pagination"]["total_results"], 0);
    assert_eq!(
        guids(&svc.get("/v3/apps", &admin).await),
        strs(&[&ctx.app, &elsewhere.app])
    );

    // Readers may not delete; strangers do not see the app.
    for user in [&auditor, &manager] {
        not_authorized(
            &svc.delete(
                &format!("/v3/apps/{}", ctx.app),
                &svc.token(user, READ_WRITE),
            )
            .await,
        );
    }
    not_found(
        &svc.delete(&format!("/v3/apps/{}", ctx.app), &stranger)
            .await,
        "App",
    );
    assert_eq!(svc.package(&ready).await["state"], "READY");

    let dev_token = svc.token(&dev, READ_WRITE);
    let r = svc
        .delete(&format!("/v3/apps/{}", ctx.app), &dev_token)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    not_found(
        &svc.get(&format!("/v3/apps/{}", ctx.app), &admin).await,
        "App",
    );
    for package in [&ready, &awaiting] {
        not_found(
            &svc.get(&format!("/v3/packages/{package}"), &admin).await,
            "Package",
        );
    }
    not_found(
        &svc.get(&format!("/v3/apps/{}/packages", ctx.app), &admin)
            .await,
        "App",
    );
    wait_bits_gone(&svc, &ready).await;
    assert!(svc.bits_exist(&kept).await);
    assert_eq!(
        guids(&svc.get("/v3/packages", &admin).await),
        strs(&[&kept])
    );
    // The space stays, and the name is free again.
    let r = svc
        .post("/v3/apps", &dev_token, &app_body(&ctx.space, "web"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    not_found(
        &svc.delete(&format!("/v3/apps/{}", ctx.app), &dev_token)
            .await,
        "App",
    );
}
