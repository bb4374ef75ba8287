//! Direct uploads over HTTP on both backends: a link for the zip (a presigned S3 PUT on
//! the stack, a signed link to the service on the embedded default), the PUT, the
//! completion that starts the usual job, and every way a link is refused.
#![allow(clippy::unwrap_used)]

use packages_tests::{Mode, Options, Reply, Service, metric, zips};
use serde_json::{Value, json};

const NOTHING_UPLOADED: &str = "No bits have been uploaded with this link";
const NOT_AUTHORIZED: &str = "You are not authorized to perform the requested action";
const ALREADY_UPLOADED: &str =
    "Bits may be uploaded only once. Create a new package to upload different bits.";

async fn issue(svc: &Service, guid: &str, token: &str) -> Reply {
    svc.post(
        &format!("/v3/packages/{guid}/direct_uploads"),
        token,
        &json!({}),
    )
    .await
}

async fn issue_ok(svc: &Service, guid: &str) -> Value {
    let r = issue(svc, guid, &svc.admin()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// PUTs `bytes` to a link's upload URL, without a token, as a client would.
async fn put(svc: &Service, href: &str, bytes: Vec<u8>) -> Reply {
    svc.send(svc.http.put(href).body(bytes)).await
}

fn upload_href(link: &Value) -> String {
    link["links"]["upload"]["href"].as_str().unwrap().to_owned()
}

async fn complete(svc: &Service, link: &Value, token: &str) -> Reply {
    let href = link["links"]["complete"]["href"].as_str().unwrap();
    svc.send(svc.http.post(href).bearer_auth(token)).await
}

async fn upload_bytes(svc: &Service) -> f64 {
    metric(&svc.metrics().await, "upload_bytes_total", &[])
}

#[tokio::test]
async fn a_direct_upload_ends_ready_like_any_upload() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let link = issue_ok(&svc, &guid).await;

    let keys: Vec<&str> = link
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["guid", "expires_at", "max_size_in_bytes", "links"]);
    let id = link["guid"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{link}");
    let expires_at = link["expires_at"].as_str().unwrap();
    assert_eq!(expires_at.len(), 20, "{expires_at}");
    assert_eq!(link["max_size_in_bytes"], 1u64 << 30);
    assert_eq!(link["links"]["upload"]["method"], "PUT");
    assert_eq!(
        link["links"]["complete"],
        json!({"href": format!("{}/v3/packages/{guid}/direct_uploads/{id}/actions/complete", svc.base), "method": "POST"})
    );
    assert_eq!(
        link["links"]["package"],
        json!({"href": format!("{}/v3/packages/{guid}", svc.base)})
    );
    let href = upload_href(&link);
    match svc.mode {
        // The link points at the service itself, signed.
        Mode::Embedded => {
            assert!(
                href.starts_with(&format!(
                    "{}/v3/packages/{guid}/direct_uploads/{id}/bits?expires=",
                    svc.base
                )),
                "{href}"
            );
            assert!(href.contains("&signature="), "{href}");
        }
        // Straight to the bucket: the API is not on the way.
        Mode::Stack => {
            let endpoint = std::env::var("PACKAGES_TEST_S3_ENDPOINT").unwrap();
            assert!(href.starts_with(&endpoint), "{href}");
            assert!(href.contains("X-Amz-Expires=600"), "{href}");
        }
    }

    let zip = zips::small_app("direct");
    let before = upload_bytes(&svc).await;
    let r = put(&svc, &href, zip.clone()).await;
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.text());
    let through_api = upload_bytes(&svc).await - before;
    match svc.mode {
        Mode::Embedded => assert_eq!(through_api, zip.len() as f64),
        Mode::Stack => assert_eq!(through_api, 0.0, "the bytes passed through the API"),
    }
    // Stored, not yet started.
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");

    let r = complete(&svc, &link, &svc.admin()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = r.json();
    assert_eq!(p["guid"], guid.as_str());
    assert_eq!(p["state"], "PROCESSING_UPLOAD");
    let done = svc.wait_final(&guid).await;
    assert_eq!(done["state"], "READY", "{done}");
    assert_eq!(done["data"]["hash"]["value"], zips::sha1_hex(&zip));
    assert_eq!(done["data"]["checksum"]["value"], zips::sha256_hex(&zip));
    let (_, bytes) = svc.download(&guid, &svc.admin()).await;
    assert_eq!(bytes.as_deref(), Some(zip.as_slice()));
    assert!(svc.staged_blobs().await.is_empty());

    // Used: completing again, or a new link, is an upload of a package that has its bits.
    for r in [
        complete(&svc, &link, &svc.admin()).await,
        issue(&svc, &guid, &svc.admin()).await,
    ] {
        r.assert_error(400, 150004, "PackageBitsAlreadyUploaded", ALREADY_UPLOADED);
    }
    if svc.mode == Mode::Embedded {
        put(&svc, &href, zip).await.assert_error(
            400,
            150004,
            "PackageBitsAlreadyUploaded",
            ALREADY_UPLOADED,
        );
    }

    // A zip the job refuses ends FAILED like any upload.
    let bad = svc.new_package(&ctx.app).await;
    let link = issue_ok(&svc, &bad).await;
    let r = put(&svc, &upload_href(&link), b"not a zip".to_vec()).await;
    assert!((200..300).contains(&r.status), "{}", r.text());
    assert_eq!(complete(&svc, &link, &svc.admin()).await.status, 200);
    let failed = svc.wait_final(&bad).await;
    assert_eq!(failed["state"], "FAILED");
    assert_eq!(failed["data"]["error"], "The zip provided was not valid");
}

#[tokio::test]
async fn links_are_issued_and_completed_after_the_upload_checks() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;

    let read_only = svc.token("admin-reader", &["cloud_controller.read"]);
    issue(&svc, &guid, &read_only)
        .await
        .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    let nobody = svc.token("no-role", packages_tests::READ_WRITE);
    issue(&svc, &guid, &nobody).await.assert_error(
        404,
        10010,
        "ResourceNotFound",
        "Package not found",
    );
    let auditor = "auditor-user";
    svc.grant(auditor, "space_auditor", &ctx.space).await;
    let auditor = svc.token(auditor, packages_tests::READ_WRITE);
    issue(&svc, &guid, &auditor)
        .await
        .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    let docker = svc
        .post(
            "/v3/packages",
            &admin,
            &json!({"type": "docker", "relationships": {"app": {"data": {"guid": ctx.app}}}, "data": {"image": "redis"}}),
        )
        .await
        .json();
    issue(&svc, docker["guid"].as_str().unwrap(), &admin)
        .await
        .assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "Package type must be bits.",
        );
    let r = svc
        .send(
            svc.http
                .post(format!("{}/v3/packages/{guid}/direct_uploads", svc.base)),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());

    // A developer gets a link; completing it needs the same rights.
    let developer = "developer-user";
    svc.grant(developer, "space_developer", &ctx.space).await;
    let developer = svc.token(developer, packages_tests::READ_WRITE);
    let r = issue(&svc, &guid, &developer).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let link = r.json();
    complete(&svc, &link, &auditor)
        .await
        .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    complete(&svc, &link, &nobody).await.assert_error(
        404,
        10010,
        "ResourceNotFound",
        "Package not found",
    );

    // Nothing was PUT yet: nothing to complete, and nothing changes.
    complete(&svc, &link, &developer).await.assert_error(
        422,
        10008,
        "UnprocessableEntity",
        NOTHING_UPLOADED,
    );
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");

    // A link is for its package only: another package's completion finds nothing.
    let other = svc.new_package(&ctx.app).await;
    let r = put(&svc, &upload_href(&link), zips::small_app("mine")).await;
    assert!((200..300).contains(&r.status), "{}", r.text());
    let id = link["guid"].as_str().unwrap();
    for bad_id in [id, "not-an-id", "../../gu/id"] {
        let r = svc
            .send(
                svc.http
                    .post(format!(
                        "{}/v3/packages/{other}/direct_uploads/{bad_id}/actions/complete",
                        svc.base
                    ))
                    .bearer_auth(&admin),
            )
            .await;
        if bad_id.contains('/') {
            assert_eq!(r.status, 404, "{}", r.text());
        } else {
            r.assert_error(422, 10008, "UnprocessableEntity", NOTHING_UPLOADED);
        }
    }
    assert_eq!(svc.package(&other).await["state"], "AWAITING_UPLOAD");

    let r = complete(&svc, &link, &developer).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(svc.wait_final(&guid).await["state"], "READY");
}

/// The service's own links (embedded): a forged, moved, expired or reused link is refused
/// before a byte is stored. On S3 the bucket itself judges its presigned URLs.
#[tokio::test]
async fn signed_links_are_single_use_and_expire() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let link = issue_ok(&svc, &guid).await;
    let href = upload_href(&link);
    let zip = zips::small_app("once");

    match svc.mode {
        Mode::Stack => {
            // A tampered signature is the bucket's refusal, and stores nothing.
            let (start, signature) = href.split_once("X-Amz-Signature=").unwrap();
            let (signature, rest) =
                signature.split_at(signature.find('&').unwrap_or(signature.len()));
            let flipped = if signature.ends_with('0') { "1" } else { "0" };
            let forged = format!(
                "{start}X-Amz-Signature={}{flipped}{rest}",
                &signature[..signature.len() - 1]
            );
            let r = put(&svc, &forged, zip.clone()).await;
            assert_eq!(r.status, 403, "{}", r.text());
            assert!(svc.staged_blobs().await.is_empty());
            return;
        }
        Mode::Embedded => {}
    }
    let id = link["guid"].as_str().unwrap();
    let other = svc.new_package(&ctx.app).await;
    let (path, query) = href.split_once('?').unwrap();
    let expires: i64 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("expires="))
        .unwrap()
        .parse()
        .unwrap();
    let forged = [
        href.replace("signature=", "signature=00"),
        format!(
            "{path}?expires={}&{}",
            expires + 3600,
            query.split_once('&').unwrap().1
        ),
        href.replace(&guid, &other),
        path.to_owned(),
        format!("{path}?expires=soon&signature=ab"),
    ];
    for forged in &forged {
        put(&svc, forged, zip.clone()).await.assert_error(
            403,
            10003,
            "NotAuthorized",
            NOT_AUTHORIZED,
        );
    }
    assert!(
        svc.staged_blobs().await.is_empty(),
        "a refused PUT stored bytes"
    );

    // An expired link, however well signed.
    let key = packages_service::direct_upload::UploadLinkKey::from_material(
        &svc.encryption_key().unwrap(),
    );
    let past = chrono_now() - 10;
    let stale = format!(
        "{}/v3/packages/{guid}/direct_uploads/{id}/bits?expires={past}&signature={}",
        svc.base,
        key.sign(&guid, id, past)
    );
    put(&svc, &stale, zip.clone()).await.assert_error(
        422,
        10008,
        "UnprocessableEntity",
        "The upload link has expired",
    );

    let r = put(&svc, &href, zip.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"guid": id, "size_in_bytes": zip.len()}));
    put(&svc, &href, zips::small_app("twice"))
        .await
        .assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "The upload link has already been used",
        );
    assert_eq!(complete(&svc, &link, &svc.admin()).await.status, 200);
    let done = svc.wait_final(&guid).await;
    assert_eq!(
        done["data"]["hash"]["value"],
        zips::sha1_hex(&zip),
        "the first PUT counts"
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// Over `upload.max_body_bytes`: the service refuses the PUT (embedded) or, as S3 took the
/// object, the completion, which removes it (stack). Either way nothing changes.
#[tokio::test]
async fn oversized_direct_uploads_change_nothing() {
    let svc = Service::start_with(Options::default().with("upload.max_body_bytes", 1000)).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let link = issue_ok(&svc, &guid).await;
    assert_eq!(link["max_size_in_bytes"], 1000);
    let big = vec![b'x'; 2000];
    let r = put(&svc, &upload_href(&link), big).await;
    match svc.mode {
        Mode::Embedded => {
            assert_eq!(r.status, 413, "{}", r.text());
            assert_eq!(r.json()["error_code"], "CF-AppPackageInvalid");
            complete(&svc, &link, &svc.admin()).await.assert_error(
                422,
                10008,
                "UnprocessableEntity",
                NOTHING_UPLOADED,
            );
        }
        Mode::Stack => {
            assert_eq!(r.status, 200, "{}", r.text());
            let r = complete(&svc, &link, &svc.admin()).await;
            assert_eq!(r.status, 413, "{}", r.text());
            assert_eq!(r.json()["error_code"], "CF-AppPackageInvalid");
        }
    }
    assert!(
        svc.staged_blobs().await.is_empty(),
        "the oversized object stayed"
    );
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    // The package still takes an upload.
    let r = svc
        .upload(&guid, &svc.admin(), zips::small_app("small"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(svc.wait_final(&guid).await["state"], "READY");
}

/// `blobstore.s3.public_endpoint`: every link a client receives names the S3 server as
/// clients reach it, and is signed for that host (here `localhost` for the test server
/// the service itself reaches as `127.0.0.1`), so both a direct upload and a download
/// work through it.
#[tokio::test]
async fn links_for_clients_use_the_public_s3_endpoint() {
    if packages_tests::mode() != Mode::Stack {
        eprintln!("SKIPPED links_for_clients_use_the_public_s3_endpoint: S3 only (stack)");
        return;
    }
    let internal = std::env::var("PACKAGES_TEST_S3_ENDPOINT").unwrap();
    let public = internal.replace("127.0.0.1", "localhost");
    assert_ne!(public, internal, "the test S3 endpoint is on 127.0.0.1");
    let svc =
        Service::start_with(Options::default().with("blobstore.s3.public_endpoint", &public)).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let link = issue_ok(&svc, &guid).await;
    let href = upload_href(&link);
    assert!(href.starts_with(&format!("{public}/")), "{href}");
    let zip = zips::small_app("through the public endpoint");
    assert_eq!(put(&svc, &href, zip.clone()).await.status, 200);
    assert_eq!(complete(&svc, &link, &svc.admin()).await.status, 200);
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "READY", "{p}");

    let (r, bytes) = svc.download(&guid, &svc.admin()).await;
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap();
    assert!(location.starts_with(&format!("{public}/")), "{location}");
    assert_eq!(bytes.unwrap(), zip);
}
