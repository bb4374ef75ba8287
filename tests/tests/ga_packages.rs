//! The GA package routes over HTTP: `POST /v3/packages` (create and `?source_guid=` copy)
//! and `PATCH /v3/packages/:guid`, with Cloud Controller's validation texts and order of
//! checks, labels and annotations with their rules and limits, and Docker registry
//! credentials that are sealed at rest and never shown.
#![allow(clippy::unwrap_used)]

use packages_tests::service::quoted;
use packages_tests::{Ctx, Options, Reply, Service, mode, zips};
use serde_json::{Value, json};

const APP_INVALID: &str = "App is invalid. Ensure it exists and you have access to it.";
const SOURCE_INVALID: &str =
    "Source package is invalid. Ensure it exists and you have access to it.";

fn bits_body(app: &str) -> Value {
    json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}})
}

fn docker_body(app: &str, data: Value) -> Value {
    json!({"type": "docker", "relationships": {"app": {"data": {"guid": app}}}, "data": data})
}

/// `body` with `metadata` added.
fn with_metadata(mut body: Value, metadata: Value) -> Value {
    body["metadata"] = metadata;
    body
}

async fn patch(svc: &Service, guid: &str, token: &str, body: &Value) -> Reply {
    svc.send(
        svc.http
            .patch(format!("{}/v3/packages/{guid}", svc.base))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

async fn patch_raw(svc: &Service, guid: &str, token: &str, body: &str) -> Reply {
    svc.send(
        svc.http
            .patch(format!("{}/v3/packages/{guid}", svc.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn create(svc: &Service, token: &str, body: &Value) -> Reply {
    svc.post("/v3/packages", token, body).await
}

async fn create_ok(svc: &Service, body: &Value) -> Value {
    let r = create(svc, &svc.admin(), body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn unprocessable(r: &Reply, detail: &str) {
    r.assert_error(422, 10008, "UnprocessableEntity", detail);
}

fn parse_error(r: &Reply) {
    r.assert_error(
        400,
        1001,
        "MessageParseError",
        "Request invalid due to parse error: invalid request body",
    );
}

/// Number of packages the admin sees.
async fn package_count(svc: &Service) -> u64 {
    let r = svc.get("/v3/packages?per_page=1", &svc.admin()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["pagination"]["total_results"].as_u64().unwrap()
}

/// The sealed password stored for a package, read from the service's database.
fn stored_password(svc: &Service, guid: &str) -> Option<String> {
    svc.query_texts(&format!(
        "SELECT docker_password AS value FROM packages WHERE guid = {}",
        quoted(guid)
    ))
    .into_iter()
    .next()
    .flatten()
}

/// A user holding `role` in the context's space (or organization).
async fn user_with(svc: &Service, ctx: &Ctx, role: &str) -> String {
    let user = format!("{role}-{}", uuid::Uuid::new_v4().simple());
    let target = if role.starts_with("organization_") {
        &ctx.org
    } else {
        &ctx.space
    };
    svc.grant(&user, role, target).await;
    svc.token(&user, packages_tests::READ_WRITE)
}

#[tokio::test]
async fn ga_create_answers_with_the_same_package_body() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;

    let bits = create_ok(
        &svc,
        &with_metadata(
            bits_body(&ctx.app),
            json!({"labels": {"env": "prod", "example.com/team": "web"}, "annotations": {"note": "first"}}),
        ),
    )
    .await;
    let keys: Vec<&str> = bits
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "guid",
            "type",
            "data",
            "url",
            "state",
            "created_at",
            "updated_at",
            "relationships",
            "metadata",
            "links"
        ]
    );
    assert_eq!(bits["state"], "AWAITING_UPLOAD");
    assert_eq!(bits["updated_at"], Value::Null);
    assert_eq!(
        bits["data"],
        json!({"hash": {"type": "sha1", "value": null}, "checksum": {"type": "sha256", "value": null}, "error": null}),
        "bits packages get no docker keys"
    );
    assert_eq!(
        bits["relationships"],
        json!({"app": {"data": {"guid": ctx.app}}})
    );
    assert_eq!(
        bits["metadata"],
        json!({"labels": {"env": "prod", "example.com/team": "web"}, "annotations": {"note": "first"}})
    );
    let guid = bits["guid"].as_str().unwrap();
    assert_eq!(
        bits["links"]["upload"],
        json!({"href": format!("{}/v3/packages/{guid}/upload", svc.base), "method": "POST"})
    );
    // The show route and the 2015 route's list give the same body.
    assert_eq!(svc.package(guid).await, bits);
    let listed = svc
        .get(&format!("/v3/apps/{}/packages", ctx.app), &svc.admin())
        .await
        .json();
    assert_eq!(listed["resources"][0], bits);

    // `data` null or `{}` is no data for bits.
    for data in [Value::Null, json!({})] {
        let mut body = bits_body(&ctx.app);
        body["data"] = data;
        assert_eq!(create_ok(&svc, &body).await["state"], "AWAITING_UPLOAD");
    }

    // The bits package takes an upload like any other.
    let r = svc
        .upload(guid, &svc.admin(), zips::small_app("ga create"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ready = svc.wait_final(guid).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(
        ready["metadata"], bits["metadata"],
        "metadata outlives processing"
    );
}

#[tokio::test]
async fn docker_credentials_are_sealed_and_never_shown() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let image = "registry.example.org/team/web:1.4";

    let docker = create_ok(
        &svc,
        &docker_body(
            &ctx.app,
            json!({"image": image, "username": "deployer", "password": "s3cret-pa55"}),
        ),
    )
    .await;
    assert_eq!(docker["state"], "READY");
    assert_eq!(docker["url"], image);
    assert_eq!(
        docker["data"],
        json!({
            "hash": {"type": "sha1", "value": null},
            "checksum": {"type": "sha256", "value": null},
            "error": null,
            "image": image,
            "username": "deployer",
            "password": "***"
        })
    );
    let guid = docker["guid"].as_str().unwrap();
    let link_keys: Vec<&str> = docker["links"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(link_keys, ["self", "app"]);

    // Every route that shows the package hides the password.
    let shown = [
        svc.get(&format!("/v3/packages/{guid}"), &admin).await,
        svc.get("/v3/packages", &admin).await,
        svc.get(&format!("/v3/apps/{}/packages", ctx.app), &admin)
            .await,
        patch(&svc, guid, &admin, &json!({})).await,
    ];
    for r in &shown {
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let package = if v["resources"].is_array() {
            v["resources"][0].clone()
        } else {
            v
        };
        assert_eq!(package["guid"], guid);
        assert_eq!(package["data"]["username"], "deployer");
        assert_eq!(package["data"]["password"], "***");
        assert!(!r.text().contains("s3cret-pa55"), "{}", r.text());
    }
    assert!(
        !svc.logs().contains("s3cret-pa55"),
        "the password reached a log"
    );

    // At rest: sealed for this package under the service's key, never the plaintext.
    let sealed = stored_password(&svc, guid).unwrap();
    assert!(!sealed.contains("s3cret-pa55"), "{sealed}");
    let key =
        packages_service::credentials::CredentialKey::from_material(&svc.encryption_key().unwrap());
    assert_eq!(key.open(guid, &sealed).unwrap(), "s3cret-pa55");
    assert!(
        key.open("another-package", &sealed).is_err(),
        "a sealed password is bound to its package"
    );
    // A fresh nonce per value: the same password sealed twice differs.
    let twin = create_ok(
        &svc,
        &docker_body(
            &ctx.app,
            json!({"image": image, "username": "deployer", "password": "s3cret-pa55"}),
        ),
    )
    .await;
    assert_ne!(
        stored_password(&svc, twin["guid"].as_str().unwrap()).unwrap(),
        sealed
    );

    // A password without a user name shows null, as in Cloud Controller.
    let no_user = create_ok(
        &svc,
        &docker_body(&ctx.app, json!({"image": image, "password": "p"})),
    )
    .await;
    assert_eq!(no_user["data"]["username"], Value::Null);
    assert_eq!(no_user["data"]["password"], Value::Null);
    // As in Cloud Controller, `***` says a user name is stored, not that a password is.
    let user_only = create_ok(
        &svc,
        &docker_body(&ctx.app, json!({"image": image, "username": "u"})),
    )
    .await;
    assert_eq!(user_only["data"]["username"], "u");
    assert_eq!(user_only["data"]["password"], "***");
    assert_eq!(
        stored_password(&svc, user_only["guid"].as_str().unwrap()),
        None
    );

    // A 2015-created docker package shows its url as the image, and no credentials.
    let old = svc
        .post(
            &format!("/v3/apps/{}/packages", ctx.app),
            &admin,
            &json!({"type": "docker", "url": "docker://redis"}),
        )
        .await
        .json();
    assert_eq!(old["data"]["image"], "docker://redis");
    assert_eq!(old["data"]["username"], Value::Null);
    assert_eq!(old["data"]["password"], Value::Null);

    // Passwords are bounded.
    let long = "p".repeat(5001);
    unprocessable(
        &create(
            &svc,
            &admin,
            &docker_body(
                &ctx.app,
                json!({"image": image, "username": "u", "password": long}),
            ),
        )
        .await,
        "docker_password can be up to 5,000 characters",
    );
    unprocessable(
        &patch(&svc, guid, &admin, &json!({"password": "p".repeat(5001)})).await,
        "docker_password can be up to 5,000 characters",
    );
    let at_limit = create_ok(
        &svc,
        &docker_body(
            &ctx.app,
            json!({"image": image, "username": "u", "password": "p".repeat(5000)}),
        ),
    )
    .await;
    assert_eq!(at_limit["data"]["password"], "***");
}

#[tokio::test]
async fn create_validation_texts_in_cloud_controllers_order() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let app = ctx.app.as_str();
    let structured = r#"Relationships App must be structured like this: "app: {"data": {"guid": "valid-guid"}}""#;
    let cases = [
        (
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}, "foo": 1, "bar": 2}),
            "Unknown field(s): 'foo', 'bar'".to_owned(),
        ),
        (
            docker_body(app, json!({})),
            "Data Image must be a string, Data Image required".to_owned(),
        ),
        (docker_body(app, json!({"image": ""})), "Data Image required".to_owned()),
        (
            docker_body(app, json!({"image": 5})),
            "Data Image must be a string".to_owned(),
        ),
        (
            docker_body(app, json!({"image": "redis", "birthday": "today"})),
            "Data Unknown field(s): 'birthday'".to_owned(),
        ),
        (
            docker_body(app, json!({"image": "redis", "username": 5})),
            "Data Username must be a string".to_owned(),
        ),
        (
            docker_body(app, json!({"image": "redis", "password": true})),
            "Data Password must be a string".to_owned(),
        ),
        (
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}, "data": {"a": 1}}),
            "Data Data must be empty if provided for bits packages".to_owned(),
        ),
        (
            json!({"type": "bits"}),
            "Relationships 'relationships' is not an object".to_owned(),
        ),
        (
            json!({"type": "bits", "relationships": "app"}),
            "Relationships 'relationships' is not an object".to_owned(),
        ),
        (
            json!({"type": "bits", "relationships": {}}),
            "Relationships 'relationships' must include one or more valid relationships"
                .to_owned(),
        ),
        (
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}, "space": {}}}),
            "Relationships Unknown field(s): 'space'".to_owned(),
        ),
        (
            json!({"type": "bits", "relationships": {"app": {"guid": app}}}),
            structured.to_owned(),
        ),
        (
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": app, "name": "x"}}}}),
            structured.to_owned(),
        ),
        (
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": 5}}}}),
            "Relationships App guid must be a string, Relationships App guid must be between 1 and 200 characters".to_owned(),
        ),
        (
            json!({"type": "bits", "relationships": {"app": {"data": {"guid": ""}}}}),
            "Relationships App guid must be between 1 and 200 characters".to_owned(),
        ),
        (
            json!({"relationships": {"app": {"data": {"guid": app}}}}),
            "Type must be one of 'bits, docker'".to_owned(),
        ),
        (
            json!({"type": "zip", "relationships": {"app": {"data": {"guid": app}}}}),
            "Type must be one of 'bits, docker'".to_owned(),
        ),
        // Every failing rule, joined in Cloud Controller's order.
        (
            json!({"metadata": {"labels": {"b@d": "ok"}}, "foo": 1}),
            "Metadata label key error: 'b@d' contains invalid characters, Unknown field(s): 'foo', Relationships 'relationships' is not an object, Type must be one of 'bits, docker'".to_owned(),
        ),
    ];
    let before = package_count(&svc).await;
    for (body, detail) in &cases {
        let r = create(&svc, &admin, body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        unprocessable(&r, detail);
    }
    for raw in ["not json", "[1]", "\"bits\"", "", "null"] {
        let r = svc
            .post_raw("/v3/packages", &admin, "application/json", raw.into())
            .await;
        parse_error(&r);
    }
    assert_eq!(
        package_count(&svc).await,
        before,
        "a refused create stored something"
    );

    // Validation comes before the lookup: an unknown app with a bad body is a body error.
    unprocessable(
        &create(
            &svc,
            &admin,
            &json!({"type": "zip", "relationships": {"app": {"data": {"guid": "nope"}}}}),
        )
        .await,
        "Type must be one of 'bits, docker'",
    );
    // Then the lookup: 422, not 404, for an app that is missing or has no guid.
    for relationships in [
        json!({"app": {"data": {"guid": "nope"}}}),
        json!({"app": {"data": null}}),
    ] {
        unprocessable(
            &create(
                &svc,
                &admin,
                &json!({"type": "bits", "relationships": relationships}),
            )
            .await,
            APP_INVALID,
        );
    }
}

#[tokio::test]
async fn metadata_rules_and_limits() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let long_prefix = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(63),
    ]
    .join(".");
    let cases: Vec<(Value, String)> = vec![
        (json!("x"), "Metadata must be an object".into()),
        (
            json!({"foo": {}, "bar": {}}),
            "Metadata has unexpected field(s): 'foo' 'bar'".into(),
        ),
        (json!({"labels": []}), "Metadata 'labels' is not an object".into()),
        (
            json!({"annotations": "x"}),
            "Metadata 'annotations' is not an object".into(),
        ),
        (
            json!({"labels": {"": "v"}}),
            "Metadata label key error: key cannot be empty string".into(),
        ),
        (
            json!({"labels": {"a/b/c": "v"}}),
            "Metadata label key error: key has more than one '/'".into(),
        ),
        (
            json!({"labels": {"onlycom/x": "v"}}),
            "Metadata label key error: prefix 'onlycom' must be in valid dns format".into(),
        ),
        (
            json!({"labels": {"-bad.com/x": "v"}}),
            "Metadata label key error: prefix '-bad.com' must be in valid dns format".into(),
        ),
        (
            json!({"labels": {format!("{long_prefix}/x"): "v"}}),
            "Metadata label key error: prefix 'aaaaaaaa...' is greater than 253 characters".into(),
        ),
        (
            json!({"labels": {"cloudfoundry.org/x": "v"}}),
            "Metadata label key error: prefix 'cloudfoundry.org' is reserved".into(),
        ),
        (
            json!({"labels": {"example.com/": "v"}}),
            "Metadata label key error: key cannot be empty string".into(),
        ),
        (
            json!({"labels": {"a b": "v"}}),
            "Metadata label key error: 'a b' contains invalid characters".into(),
        ),
        (
            json!({"labels": {"-ab": "v"}}),
            "Metadata label key error: '-ab' starts or ends with invalid characters".into(),
        ),
        (
            json!({"labels": {"k".repeat(64): "v"}}),
            "Metadata label key error: 'kkkkkkkk...' is greater than 63 characters".into(),
        ),
        (
            json!({"labels": {"k": "a b"}}),
            "Metadata label value error: 'a b' contains invalid characters".into(),
        ),
        (
            json!({"labels": {"k": "x-"}}),
            "Metadata label value error: 'x-' starts or ends with invalid characters".into(),
        ),
        (
            json!({"labels": {"k": "v".repeat(64)}}),
            "Metadata label value error: 'vvvvvvvv...' is greater than 63 characters".into(),
        ),
        (
            json!({"annotations": {"b@d": "x"}}),
            "Metadata annotation key error: 'b@d' contains invalid characters".into(),
        ),
        (
            json!({"annotations": {"note": "n".repeat(5001)}}),
            "Metadata annotation value error: 'nnnnnnnn...' is greater than 5000 characters"
                .into(),
        ),
        // Several failures: each adds its message.
        (
            json!({"labels": {"a b": "v"}, "annotations": {"c d": "x"}}),
            "Metadata label key error: 'a b' contains invalid characters, Metadata annotation key error: 'c d' contains invalid characters".into(),
        ),
    ];
    let before = package_count(&svc).await;
    for (metadata, detail) in &cases {
        let r = create(
            &svc,
            &admin,
            &with_metadata(bits_body(&ctx.app), metadata.clone()),
        )
        .await;
        assert_eq!(r.status, 422, "{metadata}: {}", r.text());
        unprocessable(&r, detail);
    }
    assert_eq!(package_count(&svc).await, before);

    // What the rules allow: empty label values, annotation keys with empty values unchecked,
    // non-string values taken as their JSON text, mixed-case keys kept as they are.
    let p = create_ok(
        &svc,
        &with_metadata(
            bits_body(&ctx.app),
            json!({
                "labels": {"empty": "", "n": 5, "flag": true, "Example.COM/Team": "Web_1.x"},
                "annotations": {"b@d": "", "long": "n".repeat(5000)}
            }),
        ),
    )
    .await;
    assert_eq!(
        p["metadata"]["labels"],
        json!({"empty": "", "n": "5", "flag": "true", "Example.COM/Team": "Web_1.x"})
    );
    assert_eq!(p["metadata"]["annotations"]["b@d"], "");

    // Limits: 50 labels and 200 annotations a package, counted on what it would hold.
    let labels = |n: usize, tag: &str| -> Value {
        (0..n)
            .map(|i| (format!("{tag}{i}"), json!("v")))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let r = create(
        &svc,
        &admin,
        &with_metadata(bits_body(&ctx.app), json!({"labels": labels(51, "l")})),
    )
    .await;
    r.assert_error(
        422,
        390020,
        "LabelLimitExceeded",
        "Failed to add 51 labels because it would exceed maximum of 50",
    );
    let r = create(
        &svc,
        &admin,
        &with_metadata(
            bits_body(&ctx.app),
            json!({"annotations": labels(201, "a")}),
        ),
    )
    .await;
    r.assert_error(
        422,
        390023,
        "AnnotationLimitExceeded",
        "Failed to add 201 annotations because it would exceed maximum of 200",
    );
    assert_eq!(
        package_count(&svc).await,
        before + 1,
        "a refused create stored something"
    );

    let full = create_ok(
        &svc,
        &with_metadata(bits_body(&ctx.app), json!({"labels": labels(50, "l")})),
    )
    .await;
    let guid = full["guid"].as_str().unwrap();
    // Replacing existing keys adds nothing; a new key would be the 51st.
    let r = patch(
        &svc,
        guid,
        &admin,
        &json!({"metadata": {"labels": {"l0": "w", "l1": "w"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = patch(
        &svc,
        guid,
        &admin,
        &json!({"metadata": {"labels": {"l2": "changed", "new": "v"}}}),
    )
    .await;
    r.assert_error(
        422,
        390020,
        "LabelLimitExceeded",
        "Failed to add 2 labels because it would exceed maximum of 50",
    );
    let now = svc.package(guid).await;
    assert_eq!(
        now["metadata"]["labels"]["l2"], "v",
        "a refused PATCH changed a label"
    );
    assert_eq!(now["metadata"]["labels"].as_object().unwrap().len(), 50);
    // Deleting one makes room in the same request.
    let r = patch(
        &svc,
        guid,
        &admin,
        &json!({"metadata": {"labels": {"l3": null, "new": "v"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Deleting the package deletes its labels and annotations.
    assert_eq!(
        svc.delete(&format!("/v3/packages/{guid}"), &admin)
            .await
            .status,
        204
    );
    for table in ["package_labels", "package_annotations"] {
        let left = svc.query_texts(&format!(
            "SELECT key_name AS value FROM {table} WHERE package_guid = {}",
            quoted(guid)
        ));
        assert!(left.is_empty(), "{table} kept {left:?}");
    }
}

#[tokio::test]
async fn patch_merges_metadata_and_replaces_credentials() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let p = create_ok(
        &svc,
        &with_metadata(
            bits_body(&ctx.app),
            json!({"labels": {"env": "dev", "old": "x", "keep": "k"}, "annotations": {"note": "a"}}),
        ),
    )
    .await;
    let guid = p["guid"].as_str().unwrap();

    let r = patch(
        &svc,
        guid,
        &admin,
        &json!({"metadata": {"labels": {"env": "prod", "old": null, "new": "n"}, "annotations": {"note": null, "why": "rolled out"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let patched = r.json();
    assert_eq!(
        patched["metadata"],
        json!({"labels": {"env": "prod", "keep": "k", "new": "n"}, "annotations": {"why": "rolled out"}})
    );
    assert_eq!(
        patched["updated_at"],
        Value::Null,
        "a metadata-only PATCH leaves updated_at as it was"
    );
    assert_eq!(svc.package(guid).await, patched);
    // Deleting a key that is not there is no error; an empty object changes nothing.
    let r = patch(
        &svc,
        guid,
        &admin,
        &json!({"metadata": {"labels": {"absent": null}}}),
    )
    .await;
    assert_eq!(r.json()["metadata"], patched["metadata"]);
    let r = patch(&svc, guid, &admin, &json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), patched);

    // Credentials: a bits package refuses them, even from a reader (checked before roles).
    let reader = user_with(&svc, &ctx, "space_auditor").await;
    for token in [&admin, &reader] {
        unprocessable(
            &patch(&svc, guid, token, &json!({"username": "u"})).await,
            "Cannot update Docker credentials for a buildpack app.",
        );
    }
    // Null credentials on a bits package are no credentials.
    assert_eq!(
        patch(
            &svc,
            guid,
            &admin,
            &json!({"username": null, "password": null})
        )
        .await
        .status,
        200
    );

    let docker = create_ok(&svc, &docker_body(&ctx.app, json!({"image": "redis"}))).await;
    let dguid = docker["guid"].as_str().unwrap();
    let r = patch(
        &svc,
        dguid,
        &admin,
        &json!({"username": "deployer", "password": "first"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let with_credentials = r.json();
    assert_eq!(with_credentials["data"]["username"], "deployer");
    assert_eq!(with_credentials["data"]["password"], "***");
    assert!(
        with_credentials["updated_at"].is_string(),
        "a credentials change updates the row"
    );
    let first = stored_password(&svc, dguid).unwrap();
    // Null or absent leaves them; a new password replaces the sealed one.
    let r = patch(
        &svc,
        dguid,
        &admin,
        &json!({"username": null, "password": null}),
    )
    .await;
    assert_eq!(r.json()["data"]["username"], "deployer");
    assert_eq!(stored_password(&svc, dguid).unwrap(), first);
    let r = patch(&svc, dguid, &admin, &json!({"password": "second"})).await;
    assert_eq!(r.json()["data"]["password"], "***");
    let second = stored_password(&svc, dguid).unwrap();
    assert_ne!(second, first);
    if let Some(key) = svc.encryption_key() {
        let key = packages_service::credentials::CredentialKey::from_material(&key);
        assert_eq!(key.open(dguid, &second).unwrap(), "second");
    }

    // Validation texts, in order, before the lookup.
    for (body, detail) in [
        (json!({"foo": 1}), "Unknown field(s): 'foo'"),
        (json!({"username": 5}), "Username must be a string"),
        (json!({"password": []}), "Password must be a string"),
        (
            json!({"metadata": {"labels": {"b@d": "x"}}, "foo": 1, "username": 1}),
            "Metadata label key error: 'b@d' contains invalid characters, Unknown field(s): 'foo', Username must be a string",
        ),
    ] {
        unprocessable(&patch(&svc, "no-such-package", &admin, &body).await, detail);
    }
    for raw in ["not json", "[]", "5", ""] {
        parse_error(&patch_raw(&svc, guid, &admin, raw).await);
    }
    patch(&svc, "no-such-package", &admin, &json!({}))
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    // Nothing above changed the package.
    assert_eq!(svc.package(guid).await["metadata"], patched["metadata"]);
}

#[tokio::test]
async fn roles_decide_create_copy_and_patch() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let other_app = svc.create_app(&ctx.space, "worker").await;
    let source = svc
        .upload_and_wait(&ctx.app, zips::small_app("roles"))
        .await;
    let source = source["guid"].as_str().unwrap().to_owned();
    let copy_path = format!("/v3/packages?source_guid={source}");
    let copy_body = json!({"relationships": {"app": {"data": {"guid": other_app}}}});

    let nobody = svc.token("no-role-user", packages_tests::READ_WRITE);
    unprocessable(
        &create(&svc, &nobody, &bits_body(&ctx.app)).await,
        APP_INVALID,
    );
    unprocessable(
        &svc.post(&copy_path, &nobody, &copy_body).await,
        APP_INVALID,
    );
    patch(&svc, &source, &nobody, &json!({}))
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");

    for role in ["space_manager", "space_auditor", "organization_manager"] {
        let token = user_with(&svc, &ctx, role).await;
        for r in [
            create(&svc, &token, &bits_body(&ctx.app)).await,
            svc.post(&copy_path, &token, &copy_body).await,
            patch(
                &svc,
                &source,
                &token,
                &json!({"metadata": {"labels": {"x": "y"}}}),
            )
            .await,
        ] {
            r.assert_error(
                403,
                10003,
                "NotAuthorized",
                "You are not authorized to perform the requested action",
            );
        }
    }
    assert_eq!(svc.package(&source).await["metadata"]["labels"], json!({}));

    let developer = user_with(&svc, &ctx, "space_developer").await;
    assert_eq!(
        create(&svc, &developer, &bits_body(&ctx.app)).await.status,
        201
    );
    let r = svc.post(&copy_path, &developer, &copy_body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = patch(
        &svc,
        &source,
        &developer,
        &json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Scopes: a read-only token cannot write, whatever its roles.
    let read_only = svc.token("admin-reader", &["cloud_controller.read"]);
    create(&svc, &read_only, &bits_body(&ctx.app))
        .await
        .assert_error(
            403,
            10003,
            "NotAuthorized",
            "You are not authorized to perform the requested action",
        );
    let r = svc
        .send(
            svc.http
                .post(format!("{}/v3/packages", svc.base))
                .json(&bits_body(&ctx.app)),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
}

#[tokio::test]
async fn ga_copy_checks_in_order_and_copies_bits_not_metadata() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let other_app = svc.create_app(&ctx.space, "worker").await;
    let zip = zips::small_app("ga copy");
    let source = create_ok(
        &svc,
        &with_metadata(
            bits_body(&ctx.app),
            json!({"labels": {"env": "prod"}, "annotations": {"a": "b"}}),
        ),
    )
    .await;
    let source_guid = source["guid"].as_str().unwrap();
    assert_eq!(
        svc.upload(source_guid, &admin, zip.clone()).await.status,
        200
    );
    let source = svc.wait_final(source_guid).await;
    assert_eq!(source["state"], "READY", "{source}");
    let to =
        |app: &str| json!({"relationships": {"app": {"data": {"guid": app}}}, "ignored": true});

    let r = svc
        .post(
            &format!("/v3/packages?source_guid={source_guid}"),
            &admin,
            &to(&other_app),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let copy = r.json();
    assert_eq!(copy["state"], "COPYING");
    assert_eq!(
        copy["relationships"]["app"]["data"]["guid"],
        other_app.as_str()
    );
    assert_eq!(copy["metadata"], json!({"labels": {}, "annotations": {}}));
    let copy_guid = copy["guid"].as_str().unwrap();
    let done = svc.wait_final(copy_guid).await;
    assert_eq!(done["state"], "READY", "{done}");
    assert_eq!(done["data"]["hash"], source["data"]["hash"]);
    assert_eq!(done["data"]["checksum"], source["data"]["checksum"]);
    assert_eq!(done["metadata"], json!({"labels": {}, "annotations": {}}));
    let (_, bytes) = svc.download(copy_guid, &admin).await;
    assert_eq!(bytes.as_deref(), Some(zip.as_slice()));

    // Order: destination, its role, source, its role, same app.
    let outsider_space = svc.create_space(&ctx.org, "elsewhere").await;
    let outsider_app = svc.create_app(&outsider_space, "far").await;
    let developer_user = format!("dev-{}", uuid::Uuid::new_v4().simple());
    svc.grant(&developer_user, "space_developer", &outsider_space)
        .await;
    let developer = svc.token(&developer_user, packages_tests::READ_WRITE);
    let cases = [
        (source_guid, "admin", to("nope"), APP_INVALID),
        (source_guid, "admin", json!({}), APP_INVALID),
        ("nope", "admin", to(&other_app), SOURCE_INVALID),
        // A developer of the destination only: the source is not theirs to read.
        (source_guid, "developer", to(&outsider_app), SOURCE_INVALID),
        // The destination is not theirs to read: refused before the source is looked at.
        ("nope", "developer", to(&other_app), APP_INVALID),
        (
            source_guid,
            "admin",
            to(&ctx.app),
            "Source and destination app cannot be the same",
        ),
    ];
    for (source, who, body, detail) in &cases {
        let token = if *who == "admin" { &admin } else { &developer };
        let r = svc
            .post(&format!("/v3/packages?source_guid={source}"), token, body)
            .await;
        unprocessable(&r, detail);
    }
    // A reader of the destination space who develops nowhere: 403 after the lookup.
    let auditor = user_with(&svc, &ctx, "space_auditor").await;
    svc.post(
        &format!("/v3/packages?source_guid={source_guid}"),
        &auditor,
        &to(&other_app),
    )
    .await
    .assert_error(
        403,
        10003,
        "NotAuthorized",
        "You are not authorized to perform the requested action",
    );
    for raw in ["not json", "[]", ""] {
        parse_error(
            &svc.post_raw(
                &format!("/v3/packages?source_guid={source_guid}"),
                &admin,
                "application/json",
                raw.into(),
            )
            .await,
        );
    }

    // A docker copy is READY at once, with the image and without the credentials.
    let docker = create_ok(
        &svc,
        &with_metadata(
            docker_body(&ctx.app, json!({"image": "registry.example.org/web:1", "username": "deployer", "password": "pw"})),
            json!({"labels": {"env": "prod"}}),
        ),
    )
    .await;
    let docker_guid = docker["guid"].as_str().unwrap();
    let r = svc
        .post(
            &format!("/v3/packages?source_guid={docker_guid}"),
            &admin,
            &to(&other_app),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let docker_copy = r.json();
    assert_eq!(docker_copy["state"], "READY");
    assert_eq!(docker_copy["url"], "registry.example.org/web:1");
    assert_eq!(docker_copy["data"]["image"], "registry.example.org/web:1");
    assert_eq!(docker_copy["data"]["username"], Value::Null);
    assert_eq!(docker_copy["data"]["password"], Value::Null);
    assert_eq!(docker_copy["metadata"]["labels"], json!({}));
    assert_eq!(
        stored_password(&svc, docker_copy["guid"].as_str().unwrap()),
        None,
        "a copy carried the sealed password"
    );
}

/// `packages-api` without an encryption key refuses passwords; `packages` generates a key
/// into its data directory at first start and keeps it.
#[tokio::test]
async fn passwords_need_an_encryption_key() {
    let svc = Service::start_with(Options::default().without("packages.encryption_key")).await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let body = docker_body(
        &ctx.app,
        json!({"image": "redis", "username": "u", "password": "pw"}),
    );
    match mode() {
        packages_tests::Mode::Stack => {
            assert_eq!(svc.encryption_key(), None);
            let text =
                "Docker credentials cannot be stored: packages.encryption_key is not configured";
            unprocessable(&create(&svc, &admin, &body).await, text);
            // A user name alone is no secret.
            let user_only = create_ok(
                &svc,
                &docker_body(
                    &ctx.app,
                    json!({"image": "redis", "username": "u", "password": null}),
                ),
            )
            .await;
            assert_eq!(user_only["data"]["username"], "u");
            let guid = user_only["guid"].as_str().unwrap();
            unprocessable(
                &patch(&svc, guid, &admin, &json!({"password": "pw"})).await,
                text,
            );
            assert_eq!(stored_password(&svc, guid), None);
        }
        packages_tests::Mode::Embedded => {
            let path = svc.dir.path().join("data/encryption-key");
            let key = std::fs::read_to_string(&path).unwrap();
            assert_eq!(key.trim().len(), 64, "32 random bytes, hex");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert!(svc.logs().contains("encryption-key"), "{}", svc.logs());
            let p = create_ok(&svc, &body).await;
            assert_eq!(p["data"]["password"], "***");
        }
    }
}
