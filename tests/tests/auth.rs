//! Authentication, scopes and roles over HTTP: every token failure, the scope gates, the
//! permission matrix of the spec (section 4.5), the order of the checks, and suspended
//! organizations.
#![allow(clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use packages_tests::zips;
use packages_tests::{ADMIN, Ctx, Mode, Options, READ_WRITE, Reply, Service};
use serde_json::{Value, json};

const READ: &[&str] = &["cloud_controller.read"];
const WRITE: &[&str] = &["cloud_controller.write"];
const NOT_AUTHORIZED: &str = "You are not authorized to perform the requested action";
// Test-only RSA keys, shared with the auth crate's own tests.
const RSA_PRIVATE: &str = include_str!("../../crates/auth/tests/fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../crates/auth/tests/fixtures/rsa_public.pem");
const OTHER_RSA_PUBLIC: &str = include_str!("../../crates/auth/tests/fixtures/other_public.pem");

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn new_user() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Claims shaped like a UAA password-grant token.
fn uaa_claims(user: &str, scopes: &[&str]) -> Value {
    let iat = now();
    json!({
        "jti": uuid::Uuid::new_v4().simple().to_string(),
        "sub": user,
        "scope": scopes,
        "client_id": "cf",
        "cid": "cf",
        "azp": "cf",
        "grant_type": "password",
        "user_id": user,
        "origin": "uaa",
        "user_name": "someone",
        "email": "someone@example.org",
        "auth_time": iat,
        "rev_sig": "2ee4a5b9",
        "iat": iat,
        "exp": iat + 3600,
        "iss": "https://uaa.example.org/oauth/token",
        "zid": "uaa",
        "aud": ["cloud_controller", "openid", "password", "cf"],
    })
}

fn sign_with(secret: &str, header: &Header, claims: &Value) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn sign(svc: &Service, claims: &Value) -> String {
    sign_with(&svc.secret, &Header::new(Algorithm::HS256), claims)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// The package endpoints the missing/invalid token cases are tried on.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    List,
    Show,
    Create,
    Upload,
}

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint::List,
    Endpoint::Show,
    Endpoint::Create,
    Endpoint::Upload,
];

/// Calls `endpoint` with the given raw `Authorization` header (or none).
async fn call(
    svc: &Service,
    ctx: &Ctx,
    package: &str,
    endpoint: Endpoint,
    authorization: Option<&str>,
) -> Reply {
    let url = |path: String| format!("{}{path}", svc.base);
    let mut req = match endpoint {
        Endpoint::List => svc.http.get(url("/v3/packages".into())),
        Endpoint::Show => svc.http.get(url(format!("/v3/packages/{package}"))),
        Endpoint::Create => svc
            .http
            .post(url(format!("/v3/apps/{}/packages", ctx.app)))
            .json(&json!({"type": "bits"})),
        Endpoint::Upload => {
            let form = reqwest::multipart::Form::new().part(
                "bits",
                reqwest::multipart::Part::bytes(zips::small_app("nope")).file_name("package.zip"),
            );
            svc.http
                .post(url(format!("/v3/packages/{package}/upload")))
                .multipart(form)
        }
    };
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    svc.send(req).await
}

/// Nothing the refused requests asked for happened.
async fn assert_untouched(svc: &Service, ctx: &Ctx, package: &str) {
    let list = svc
        .get(&format!("/v3/apps/{}/packages", ctx.app), &svc.admin())
        .await
        .json();
    assert_eq!(list["pagination"]["total_results"], 1, "{list}");
    assert_eq!(svc.package(package).await["state"], "AWAITING_UPLOAD");
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

async fn assert_downloads(svc: &Service, guid: &str, token: &str, expected: &[u8]) {
    let (r, bytes) = svc.download(guid, token).await;
    match svc.mode {
        Mode::Embedded => assert_eq!(r.status, 200, "{}", r.text()),
        Mode::Stack => assert_eq!(r.status, 302, "{}", r.text()),
    }
    assert_eq!(bytes.as_deref(), Some(expected), "downloaded bits");
}

async fn copy(svc: &Service, app: &str, source: &str, token: &str) -> Reply {
    svc.post(
        &format!("/v3/apps/{app}/packages?source_package_guid={source}"),
        token,
        &json!({}),
    )
    .await
}

#[tokio::test]
async fn missing_authorization_is_not_authenticated() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let package = svc.new_package(&ctx.app).await;
    for endpoint in ENDPOINTS {
        call(&svc, &ctx, &package, endpoint, None)
            .await
            .assert_error(401, 10002, "NotAuthenticated", "Authentication error");
    }
    for path in [
        format!("/v3/apps/{}/packages", ctx.app),
        format!("/v3/packages/{package}/download"),
        "/v3/organizations".to_owned(),
        "/v3/spaces".to_owned(),
        "/v3/apps".to_owned(),
        "/v3/roles".to_owned(),
    ] {
        svc.get_anonymous(&path).await.assert_error(
            401,
            10002,
            "NotAuthenticated",
            "Authentication error",
        );
    }
    let r = svc
        .send(
            svc.http
                .delete(format!("{}/v3/packages/{package}", svc.base)),
        )
        .await;
    r.assert_error(401, 10002, "NotAuthenticated", "Authentication error");
    assert_untouched(&svc, &ctx, &package).await;
}

#[tokio::test]
async fn every_bad_token_is_invalid_auth_token() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let package = svc.new_package(&ctx.app).await;
    // Each would be an admin if it were accepted.
    let good = uaa_claims("intruder", ADMIN);
    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push(("garbage", "bearer garbage".into()));
    cases.push(("three garbage segments", "bearer aaa.bbb.ccc".into()));
    cases.push(("basic scheme", "Basic x".into()));
    cases.push((
        "basic scheme with a valid token",
        format!("Basic {}", sign(&svc, &good)),
    ));
    cases.push(("scheme without token", "bearer".into()));

    let mut expired = good.clone();
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    cases.push(("expired", format!("bearer {}", sign(&svc, &expired))));

    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", format!("bearer {}", sign(&svc, &no_exp))));

    let other_secret = packages_auth::generate_secret();
    cases.push((
        "signed with another secret",
        format!(
            "bearer {}",
            sign_with(&other_secret, &Header::new(Algorithm::HS256), &good)
        ),
    ));

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    cases.push(("alg none", format!("bearer {none}")));

    cases.push((
        "HS512 with the right secret",
        format!(
            "bearer {}",
            sign_with(&svc.secret, &Header::new(Algorithm::HS512), &good)
        ),
    ));

    // A reader's genuine token with its payload swapped for an admin's.
    let reader = svc.token("intruder", READ);
    let parts: Vec<&str> = reader.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(&good), parts[2]);
    cases.push(("payload swapped", format!("bearer {forged}")));

    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!(["uaa", "openid"]);
    cases.push((
        "wrong audience",
        format!("bearer {}", sign(&svc, &wrong_aud)),
    ));

    let mut wrong_aud_string = good.clone();
    wrong_aud_string["aud"] = json!("cloud_controller_service_permissions");
    cases.push((
        "wrong audience (string)",
        format!("bearer {}", sign(&svc, &wrong_aud_string)),
    ));

    let mut no_aud = good.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    cases.push(("no audience", format!("bearer {}", sign(&svc, &no_aud))));

    let mut nobody = good.clone();
    for claim in ["user_id", "client_id"] {
        nobody.as_object_mut().unwrap().remove(claim);
    }
    cases.push((
        "no user_id or client_id",
        format!("bearer {}", sign(&svc, &nobody)),
    ));

    for (label, authorization) in &cases {
        for endpoint in ENDPOINTS {
            let r = call(&svc, &ctx, &package, endpoint, Some(authorization)).await;
            assert_eq!(r.status, 401, "{label} on {endpoint:?}: {}", r.text());
            r.assert_error(401, 1000, "InvalidAuthToken", "Invalid Auth Token");
        }
    }
    assert_untouched(&svc, &ctx, &package).await;

    // The control: the same claims, properly signed, are an admin.
    let r = call(
        &svc,
        &ctx,
        &package,
        Endpoint::Show,
        Some(&format!("bearer {}", sign(&svc, &good))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

#[tokio::test]
async fn rs256_tokens_need_the_configured_public_key() {
    let claims = uaa_claims("rsa-admin", ADMIN);

    // Only the HS256 secret configured: an RS256 token is refused.
    let svc = Service::start().await;
    svc.get("/v3/packages", &rs256(&claims)).await.assert_error(
        401,
        1000,
        "InvalidAuthToken",
        "Invalid Auth Token",
    );

    // With the public key: accepted, next to HS256 tokens.
    let svc = Service::start_with(Options::default().with("auth.jwt_public_key", RSA_PUBLIC)).await;
    let r = svc.get("/v3/packages", &rs256(&claims)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = svc.get("/v3/packages", &svc.admin()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The public key is no HMAC secret: an HS256 token signed with it is refused.
    let confused = sign_with(RSA_PUBLIC, &Header::new(Algorithm::HS256), &claims);
    svc.get("/v3/packages", &confused).await.assert_error(
        401,
        1000,
        "InvalidAuthToken",
        "Invalid Auth Token",
    );
    let confused = sign_with(RSA_PUBLIC.trim(), &Header::new(Algorithm::HS256), &claims);
    svc.get("/v3/packages", &confused).await.assert_error(
        401,
        1000,
        "InvalidAuthToken",
        "Invalid Auth Token",
    );
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 3600);
    svc.get("/v3/packages", &rs256(&expired))
        .await
        .assert_error(401, 1000, "InvalidAuthToken", "Invalid Auth Token");

    // Another key pair's public key: the signature does not verify.
    let svc =
        Service::start_with(Options::default().with("auth.jwt_public_key", OTHER_RSA_PUBLIC)).await;
    svc.get("/v3/packages", &rs256(&claims)).await.assert_error(
        401,
        1000,
        "InvalidAuthToken",
        "Invalid Auth Token",
    );
}

#[tokio::test]
async fn uaa_shaped_tokens_are_accepted() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let package = svc.new_package(&ctx.app).await;
    let admin = svc.admin();

    // The scheme is matched case-insensitively.
    for scheme in ["bearer", "Bearer", "BEARER", "bEaReR"] {
        let r = call(
            &svc,
            &ctx,
            &package,
            Endpoint::Show,
            Some(&format!("{scheme} {admin}")),
        )
        .await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
        assert_eq!(r.json()["guid"], package);
    }

    // A UAA token of a user who reads the space: a `kid` header, `aud` with several
    // entries, and claims this service does not use. The user is `user_id`, not the
    // `client_id` that rides along.
    let auditor = new_user();
    svc.grant(&auditor, "space_auditor", &ctx.space).await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("key-1".into());
    let token = sign_with(&svc.secret, &header, &uaa_claims(&auditor, READ_WRITE));
    let r = svc.get(&format!("/v3/packages/{package}"), &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        guids(&svc.get("/v3/packages", &token).await),
        [package.as_str()]
    );
    // Scopes count, the role decides: an auditor does not write.
    svc.post(
        &format!("/v3/apps/{}/packages", ctx.app),
        &token,
        &json!({"type": "bits"}),
    )
    .await
    .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);

    // `aud` as a plain string.
    let mut single = uaa_claims(&auditor, READ);
    single["aud"] = json!("cloud_controller");
    let r = svc
        .get(&format!("/v3/packages/{package}"), &sign(&svc, &single))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Someone whose client_id is "cf" has no role: the identity really is user_id.
    let stranger = uaa_claims(&new_user(), READ_WRITE);
    svc.get(&format!("/v3/packages/{package}"), &sign(&svc, &stranger))
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");

    // A client-credentials token: no user_id, the client is the caller.
    let client = format!("client-{}", &new_user()[..8]);
    svc.grant(&client, "space_developer", &ctx.space).await;
    let mut claims = uaa_claims("unused", READ_WRITE);
    let object = claims.as_object_mut().unwrap();
    for claim in ["user_id", "user_name", "email", "origin"] {
        object.remove(claim);
    }
    object.insert("sub".into(), json!(client));
    object.insert("client_id".into(), json!(client));
    object.insert("cid".into(), json!(client));
    object.insert("grant_type".into(), json!("client_credentials"));
    let token = sign(&svc, &claims);
    let r = svc.get(&format!("/v3/packages/{package}"), &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let created = svc.create_package(&ctx.app, &token).await;
    assert_eq!(created["state"], "AWAITING_UPLOAD");
}

#[tokio::test]
async fn scopes_gate_reads_and_writes() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let other_app = svc.create_app(&ctx.space, "other").await;
    let zip = zips::small_app("scopes");
    let ready = svc.upload_and_wait(&ctx.app, zip.clone()).await;
    let ready = ready["guid"].as_str().unwrap().to_owned();
    let awaiting = svc.new_package(&ctx.app).await;
    // A space developer: only the scopes can stop it.
    let dev = new_user();
    svc.grant(&dev, "space_developer", &ctx.space).await;

    let create = format!("/v3/apps/{}/packages", ctx.app);
    let bits = json!({"type": "bits"});
    for scopes in [READ, &["openid", "cloud_controller.reader"][..], &[][..]] {
        let token = svc.token(&dev, scopes);
        let denied = |r: Reply| r.assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
        denied(svc.post(&create, &token, &bits).await);
        denied(svc.upload(&awaiting, &token, zip.clone()).await);
        denied(svc.delete(&format!("/v3/packages/{ready}"), &token).await);
        denied(copy(&svc, &other_app, &ready, &token).await);
    }
    for scopes in [WRITE, &["openid"][..], &[][..]] {
        let token = svc.token(&dev, scopes);
        let denied = |r: Reply| r.assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
        denied(svc.get(&format!("/v3/packages/{ready}"), &token).await);
        denied(svc.get("/v3/packages", &token).await);
        denied(svc.get(&create, &token).await);
        denied(svc.download(&ready, &token).await.0);
        denied(svc.get(&format!("/v3/apps/{}", ctx.app), &token).await);
    }
    // Nothing changed.
    assert_eq!(svc.package(&awaiting).await["state"], "AWAITING_UPLOAD");
    assert_eq!(svc.package(&ready).await["state"], "READY");
    let list = svc.get("/v3/packages", &svc.admin()).await;
    assert_eq!(guids(&list), [ready.as_str(), awaiting.as_str()]);

    // Each scope alone does its half.
    let reader = svc.token(&dev, READ);
    assert_eq!(
        svc.get(&format!("/v3/packages/{ready}"), &reader)
            .await
            .status,
        200
    );
    assert_downloads(&svc, &ready, &reader, &zip).await;
    let writer = svc.token(&dev, WRITE);
    let r = svc.post(&create, &writer, &bits).await;
    assert_eq!(r.status, 201, "{}", r.text());

    // The admin scope bypasses roles: a user with no role at all.
    let admin = svc.token(&new_user(), ADMIN);
    assert_eq!(
        svc.get(&format!("/v3/packages/{ready}"), &admin)
            .await
            .status,
        200
    );
    assert_downloads(&svc, &ready, &admin, &zip).await;
    let made = svc.create_package(&ctx.app, &admin).await;
    let made = made["guid"].as_str().unwrap();
    let r = svc.upload(made, &admin, zips::small_app("admin")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "PROCESSING_UPLOAD");
    let r = copy(&svc, &other_app, &ready, &admin).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = svc.delete(&format!("/v3/packages/{ready}"), &admin).await;
    assert_eq!(r.status, 204, "{}", r.text());
}

#[tokio::test]
async fn without_a_role_everything_is_missing() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let zip = zips::small_app("hidden");
    let ready = svc.upload_and_wait(&ctx.app, zip).await;
    let ready = ready["guid"].as_str().unwrap().to_owned();
    let awaiting = svc.new_package(&ctx.app).await;
    // A role somewhere else does not help here.
    let elsewhere = svc.ctx().await;
    let user = new_user();
    svc.grant(&user, "space_developer", &elsewhere.space).await;
    svc.grant(&user, "organization_manager", &elsewhere.org)
        .await;
    let token = svc.token(&user, READ_WRITE);

    let package_missing =
        |r: Reply| r.assert_error(404, 10010, "ResourceNotFound", "Package not found");
    let app_missing = |r: Reply| r.assert_error(404, 10010, "ResourceNotFound", "App not found");
    package_missing(svc.get(&format!("/v3/packages/{ready}"), &token).await);
    package_missing(svc.download(&ready, &token).await.0);
    package_missing(svc.delete(&format!("/v3/packages/{ready}"), &token).await);
    package_missing(svc.upload(&awaiting, &token, zips::small_app("x")).await);
    app_missing(
        svc.get(&format!("/v3/apps/{}/packages", ctx.app), &token)
            .await,
    );
    app_missing(
        svc.post(
            &format!("/v3/apps/{}/packages", ctx.app),
            &token,
            &json!({"type": "bits"}),
        )
        .await,
    );
    app_missing(svc.get(&format!("/v3/apps/{}", ctx.app), &token).await);
    // Copying into the hidden app, or out of it into an app the user develops.
    app_missing(copy(&svc, &ctx.app, &ready, &token).await);
    package_missing(copy(&svc, &elsewhere.app, &ready, &token).await);

    let r = svc.get("/v3/packages", &token).await;
    assert_eq!(guids(&r), Vec::<String>::new());
    assert_eq!(r.json()["pagination"]["total_results"], 0);

    // Nothing happened.
    assert_eq!(svc.package(&ready).await["state"], "READY");
    assert_eq!(svc.package(&awaiting).await["state"], "AWAITING_UPLOAD");
    let admin_list = svc.get("/v3/packages", &svc.admin()).await;
    assert_eq!(guids(&admin_list), [ready.as_str(), awaiting.as_str()]);
}

#[tokio::test]
async fn readers_read_but_do_not_write() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let other_app = svc.create_app(&ctx.space, "other").await;
    let zip = zips::small_app("readers");
    let ready = svc.upload_and_wait(&ctx.app, zip.clone()).await;
    let ready = ready["guid"].as_str().unwrap().to_owned();
    let awaiting = svc.new_package(&ctx.app).await;

    for role in ["space_auditor", "space_manager", "organization_manager"] {
        let user = new_user();
        let target = if role == "organization_manager" {
            &ctx.org
        } else {
            &ctx.space
        };
        svc.grant(&user, role, target).await;
        let token = svc.token(&user, READ_WRITE);

        let r = svc.get(&format!("/v3/packages/{ready}"), &token).await;
        assert_eq!(r.status, 200, "{role}: {}", r.text());
        assert_eq!(r.json()["guid"], ready);
        let app_list = svc
            .get(&format!("/v3/apps/{}/packages", ctx.app), &token)
            .await;
        assert_eq!(
            guids(&app_list),
            [ready.as_str(), awaiting.as_str()],
            "{role}"
        );
        assert_eq!(
            guids(&svc.get("/v3/packages", &token).await),
            [ready.as_str(), awaiting.as_str()],
            "{role}"
        );
        let r = svc.get(&format!("/v3/apps/{}", ctx.app), &token).await;
        assert_eq!(r.status, 200, "{role}: {}", r.text());
        assert_downloads(&svc, &ready, &token, &zip).await;

        let denied = |r: Reply| {
            assert_eq!(r.status, 403, "{role}: {}", r.text());
            r.assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
        };
        denied(
            svc.post(
                &format!("/v3/apps/{}/packages", ctx.app),
                &token,
                &json!({"type": "bits"}),
            )
            .await,
        );
        denied(svc.upload(&awaiting, &token, zips::small_app("x")).await);
        denied(svc.delete(&format!("/v3/packages/{ready}"), &token).await);
        denied(copy(&svc, &other_app, &ready, &token).await);
    }
    // Nothing was written.
    assert_eq!(svc.package(&ready).await["state"], "READY");
    assert_eq!(svc.package(&awaiting).await["state"], "AWAITING_UPLOAD");
    let admin_list = svc.get("/v3/packages", &svc.admin()).await;
    assert_eq!(guids(&admin_list), [ready.as_str(), awaiting.as_str()]);
}

#[tokio::test]
async fn space_developers_do_everything() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let other_app = svc.create_app(&ctx.space, "other").await;
    let dev = new_user();
    svc.grant(&dev, "space_developer", &ctx.space).await;
    let token = svc.token(&dev, READ_WRITE);

    let created = svc.create_package(&ctx.app, &token).await;
    let guid = created["guid"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "AWAITING_UPLOAD");
    let zip = zips::small_app("developer");
    let r = svc.upload(&guid, &token, zip.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "PROCESSING_UPLOAD");
    assert_eq!(svc.wait_final(&guid).await["state"], "READY");

    let r = svc.get(&format!("/v3/packages/{guid}"), &token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "READY");
    assert_downloads(&svc, &guid, &token, &zip).await;

    let r = copy(&svc, &other_app, &guid, &token).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let copied = r.json();
    assert_eq!(copied["state"], "COPYING");
    let copied = copied["guid"].as_str().unwrap().to_owned();
    assert_eq!(svc.wait_final(&copied).await["state"], "READY");
    assert_downloads(&svc, &copied, &token, &zip).await;
    assert_eq!(
        guids(&svc.get("/v3/packages", &token).await),
        [guid.as_str(), copied.as_str()]
    );

    let r = svc.delete(&format!("/v3/packages/{guid}"), &token).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    svc.get(&format!("/v3/packages/{guid}"), &svc.admin())
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
}

#[tokio::test]
async fn copy_needs_developer_rights_in_both_spaces() {
    let svc = Service::start().await;
    let source = svc.ctx().await;
    let destination = svc.ctx().await;
    let ready = svc
        .upload_and_wait(&source.app, zips::small_app("both"))
        .await;
    let ready = ready["guid"].as_str().unwrap().to_owned();
    let dev = new_user();
    svc.grant(&dev, "space_developer", &destination.space).await;
    let token = svc.token(&dev, READ_WRITE);

    // The source is out of sight: missing.
    copy(&svc, &destination.app, &ready, &token)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    // Readable, but no developer there: not authorized.
    svc.grant(&dev, "space_auditor", &source.space).await;
    copy(&svc, &destination.app, &ready, &token)
        .await
        .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    // Developer on both sides.
    svc.grant(&dev, "space_developer", &source.space).await;
    let r = copy(&svc, &destination.app, &ready, &token).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["relationships"]["app"]["data"]["guid"],
        destination.app
    );
    // Developer only at the source: the destination decides first.
    let other = new_user();
    svc.grant(&other, "space_developer", &source.space).await;
    svc.grant(&other, "space_auditor", &destination.space).await;
    copy(
        &svc,
        &destination.app,
        &ready,
        &svc.token(&other, READ_WRITE),
    )
    .await
    .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
}

#[tokio::test]
async fn checks_run_in_cloud_controllers_order() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let package = svc.new_package(&ctx.app).await;
    let stranger = svc.token(&new_user(), READ_WRITE);
    let auditor = new_user();
    svc.grant(&auditor, "space_auditor", &ctx.space).await;
    let auditor = svc.token(&auditor, READ_WRITE);
    let zip_type = json!({"type": "zip"});
    let invalid_type = "Type must be one of 'bits, docker'";

    // Lookup (404) before the write role (403): a stranger never sees 403.
    svc.delete(&format!("/v3/packages/{package}"), &stranger)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    svc.delete(&format!("/v3/packages/{package}"), &auditor)
        .await
        .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    svc.delete("/v3/packages/no-such-package", &auditor)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    svc.upload("no-such-package", &auditor, zips::small_app("x"))
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    svc.post(
        "/v3/apps/no-such-app/packages",
        &auditor,
        &json!({"type": "bits"}),
    )
    .await
    .assert_error(404, 10010, "ResourceNotFound", "App not found");

    // Validation (422/400) before existence and before roles.
    for token in [&svc.admin(), &stranger, &auditor] {
        svc.post("/v3/apps/no-such-app/packages", token, &zip_type)
            .await
            .assert_error(422, 10008, "UnprocessableEntity", invalid_type);
        svc.post(&format!("/v3/apps/{}/packages", ctx.app), token, &zip_type)
            .await
            .assert_error(422, 10008, "UnprocessableEntity", invalid_type);
    }
    svc.post_raw(
        "/v3/apps/no-such-app/packages",
        &stranger,
        "application/json",
        b"[1]".to_vec(),
    )
    .await
    .assert_error(
        400,
        1001,
        "MessageParseError",
        "Request invalid due to parse error: invalid request body",
    );

    // Scope (403) before validation and before lookup.
    let reader = svc.token(&new_user(), READ);
    let writer = svc.token(&new_user(), WRITE);
    let denied = |r: Reply| r.assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    denied(
        svc.post("/v3/apps/no-such-app/packages", &reader, &zip_type)
            .await,
    );
    denied(
        svc.post_raw(
            "/v3/apps/no-such-app/packages",
            &reader,
            "application/json",
            b"{".to_vec(),
        )
        .await,
    );
    denied(svc.delete("/v3/packages/no-such-package", &reader).await);
    denied(
        svc.upload("no-such-package", &reader, zips::small_app("x"))
            .await,
    );
    denied(svc.get("/v3/packages/no-such-package", &writer).await);
    denied(svc.get("/v3/packages?per_page=0", &writer).await);

    // Authentication (401) before everything.
    svc.post("/v3/apps/no-such-app/packages", "not-a-token", &zip_type)
        .await
        .assert_error(401, 1000, "InvalidAuthToken", "Invalid Auth Token");

    let list = svc
        .get(&format!("/v3/apps/{}/packages", ctx.app), &svc.admin())
        .await;
    assert_eq!(guids(&list), [package.as_str()]);
}

#[tokio::test]
async fn suspended_organizations_hide_single_objects_but_not_the_list() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let r = svc
        .post(
            "/v3/organizations",
            &admin,
            &json!({"name": "frozen", "suspended": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["suspended"], true);
    let org = r.json()["guid"].as_str().unwrap().to_owned();
    let space = svc.create_space(&org, "dev").await;
    let app = svc.create_app(&space, "web").await;
    let zip = zips::small_app("frozen");
    let ready = svc.upload_and_wait(&app, zip.clone()).await;
    let ready = ready["guid"].as_str().unwrap().to_owned();
    let awaiting = svc.new_package(&app).await;

    let dev = new_user();
    svc.grant(&dev, "space_developer", &space).await;
    let manager = new_user();
    svc.grant(&manager, "organization_manager", &org).await;

    for user in [&dev, &manager] {
        let token = svc.token(user, READ_WRITE);
        let package_missing =
            |r: Reply| r.assert_error(404, 10010, "ResourceNotFound", "Package not found");
        let app_missing =
            |r: Reply| r.assert_error(404, 10010, "ResourceNotFound", "App not found");
        package_missing(svc.get(&format!("/v3/packages/{ready}"), &token).await);
        package_missing(svc.download(&ready, &token).await.0);
        package_missing(svc.delete(&format!("/v3/packages/{ready}"), &token).await);
        package_missing(svc.upload(&awaiting, &token, zips::small_app("x")).await);
        app_missing(svc.get(&format!("/v3/apps/{app}/packages"), &token).await);
        app_missing(
            svc.post(
                &format!("/v3/apps/{app}/packages"),
                &token,
                &json!({"type": "bits"}),
            )
            .await,
        );
        app_missing(svc.get(&format!("/v3/apps/{app}"), &token).await);
        // E2015: the list ignores the organization's status.
        assert_eq!(
            guids(&svc.get("/v3/packages", &token).await),
            [ready.as_str(), awaiting.as_str()]
        );
    }

    // The admin still sees and does everything.
    assert_eq!(svc.package(&ready).await["state"], "READY");
    assert_eq!(svc.package(&awaiting).await["state"], "AWAITING_UPLOAD");
    assert_downloads(&svc, &ready, &admin, &zip).await;
    let r = svc.get(&format!("/v3/apps/{app}/packages"), &admin).await;
    assert_eq!(guids(&r), [ready.as_str(), awaiting.as_str()]);
    let made = svc.create_package(&app, &admin).await;
    let r = svc
        .delete(
            &format!("/v3/packages/{}", made["guid"].as_str().unwrap()),
            &admin,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());

    // The same developer in an active organization does write.
    let active = svc.ctx().await;
    svc.grant(&dev, "space_developer", &active.space).await;
    let created = svc
        .create_package(&active.app, &svc.token(&dev, READ_WRITE))
        .await;
    assert_eq!(created["state"], "AWAITING_UPLOAD");
}

#[tokio::test]
async fn operator_endpoints_need_no_token() {
    let svc = Service::start().await;
    for path in ["/", "/v3", "/healthz", "/readyz", "/metrics"] {
        let r = svc.get_anonymous(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let root = svc.get_anonymous("/").await.json();
    assert_eq!(
        root["links"]["cloud_controller_v3"]["href"],
        format!("{}/v3", svc.base)
    );
    let v3 = svc.get_anonymous("/v3").await.json();
    assert_eq!(
        v3["links"]["packages"]["href"],
        format!("{}/v3/packages", svc.base)
    );
    // An unknown route is Cloud Controller's 404, also without a token.
    svc.get_anonymous("/v3/nothing-here").await.assert_error(
        404,
        10000,
        "NotFound",
        "Unknown request",
    );
}

/// A stand-in UAA serving `/token_keys` (a JWK set the test can change); counts fetches.
struct TokenKeys {
    url: String,
    set: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenKeys {
    async fn start(jwks: &[&str]) -> TokenKeys {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let keys = TokenKeys {
            url: format!("http://{}", listener.local_addr().unwrap()),
            set: Default::default(),
            fetches: Default::default(),
        };
        keys.serve(jwks);
        let (set, fetches) = (keys.set.clone(), keys.fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (set, fetches) = (set.clone(), fetches.clone());
                tokio::spawn(async move {
                    let mut head = vec![0u8; 4096];
                    let n = stream.read(&mut head).await.unwrap_or(0);
                    let body = if head[..n].starts_with(b"GET /token_keys ") {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        set.lock().unwrap().clone()
                    } else {
                        "{}".to_owned()
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        keys
    }

    fn serve(&self, jwks: &[&str]) {
        *self.set.lock().unwrap() = format!("{{\"keys\":[{}]}}", jwks.join(","));
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn rs256_with_kid(private: &str, kid: &str, claims: &Value) -> String {
    let header = Header {
        kid: Some(kid.to_owned()),
        ..Header::new(Algorithm::RS256)
    };
    sign_with_rsa(private, &header, claims)
}

fn sign_with_rsa(private: &str, header: &Header, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    jsonwebtoken::encode(header, claims, &key).unwrap()
}

#[tokio::test]
async fn uaa_signing_keys_rotate_without_a_restart() {
    const KEY_1_JWK: &str = include_str!("../../crates/auth/tests/fixtures/rsa_public.jwk.json");
    const KEY_2_JWK: &str = include_str!("../../crates/auth/tests/fixtures/second_public.jwk.json");
    const KEY_2_PRIVATE: &str = include_str!("../../crates/auth/tests/fixtures/second_private.pem");
    let uaa = TokenKeys::start(&[KEY_1_JWK]).await;
    let svc = Service::start_with(
        Options::default()
            .with("auth.uaa_url", &uaa.url)
            .with("auth.token_keys_min_interval_secs", 0)
            .with("auth.issuer", "https://uaa.example.org/oauth/token"),
    )
    .await;
    let claims = uaa_claims("rotating-admin", ADMIN);
    let r = svc
        .get(
            "/v3/packages",
            &rs256_with_kid(RSA_PRIVATE, "key-1", &claims),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The root document still points clients at UAA.
    assert_eq!(
        svc.get_anonymous("/").await.json()["links"]["uaa"]["href"],
        uaa.url.as_str()
    );

    // UAA rotates its key; the service picks the new one up on the first token naming it.
    uaa.serve(&[KEY_2_JWK]);
    let before = uaa.fetches();
    let r = svc
        .get(
            "/v3/packages",
            &rs256_with_kid(KEY_2_PRIVATE, "key-2", &claims),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(uaa.fetches(), before + 1);
    // The retired key, an invented kid and another issuer are refused.
    let mut elsewhere = claims.clone();
    elsewhere["iss"] = json!("https://elsewhere.example.org/oauth/token");
    for token in [
        rs256_with_kid(RSA_PRIVATE, "key-1", &claims),
        rs256_with_kid(KEY_2_PRIVATE, "invented", &claims),
        rs256_with_kid(KEY_2_PRIVATE, "key-2", &elsewhere),
        // Minted tokens carry another issuer too.
        svc.admin(),
    ] {
        svc.get("/v3/packages", &token).await.assert_error(
            401,
            1000,
            "InvalidAuthToken",
            "Invalid Auth Token",
        );
    }
}

/// GETs that arrive together (on PostgreSQL they share statements): each caller gets what
/// its own roles let it see, whoever arrived beside it.
#[tokio::test]
async fn reads_that_arrive_together_each_answer_their_own_caller() {
    let svc = Service::start().await;
    let (one, two) = (svc.ctx().await, svc.ctx().await);
    let in_one = svc.new_package(&one.app).await;
    let in_two = svc.new_package(&two.app).await;
    let (auditor, developer, stranger) = (new_user(), new_user(), new_user());
    svc.grant(&auditor, "space_auditor", &one.space).await;
    svc.grant(&developer, "space_developer", &two.space).await;
    let admin = svc.admin();
    let (auditor, developer, stranger) = (
        svc.token(&auditor, READ_WRITE),
        svc.token(&developer, READ_WRITE),
        svc.token(&stranger, READ_WRITE),
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        (admin.as_str(), in_one.as_str(), Some(in_one.as_str())),
        (admin.as_str(), in_two.as_str(), Some(in_two.as_str())),
        (admin.as_str(), unknown.as_str(), None),
        (auditor.as_str(), in_one.as_str(), Some(in_one.as_str())),
        (auditor.as_str(), in_two.as_str(), None),
        (developer.as_str(), in_two.as_str(), Some(in_two.as_str())),
        (developer.as_str(), in_one.as_str(), None),
        (stranger.as_str(), in_one.as_str(), None),
        (stranger.as_str(), in_two.as_str(), None),
    ];
    // Every case many times over, all at once.
    let svc = &svc;
    let reads =
        cases
            .iter()
            .cycle()
            .take(cases.len() * 20)
            .map(|&(token, guid, visible)| async move {
                (
                    svc.get(&format!("/v3/packages/{guid}"), token).await,
                    guid,
                    visible,
                )
            });
    for (reply, guid, visible) in futures_util::future::join_all(reads).await {
        match visible {
            Some(expected) => {
                assert_eq!(reply.status, 200, "{guid}: {}", reply.text());
                assert_eq!(reply.json()["guid"], expected);
            }
            None => reply.assert_error(404, 10010, "ResourceNotFound", "Package not found"),
        }
    }
}
