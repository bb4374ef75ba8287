//! Both upload forms, their limits and their errors; nothing a refused upload sends is
//! left behind.
#![allow(clippy::unwrap_used)]

use packages_tests::zips::{self, Entry};
use packages_tests::{Options, Service};

async fn assert_nothing_staged(svc: &Service) {
    // The staged bits of a refused upload are removed before the answer is sent.
    assert_eq!(svc.staged_blobs().await, Vec::<String>::new());
    let tmp = svc.blob_root().join(".tmp");
    if tmp.exists() {
        assert_eq!(
            packages_tests::temporary_files(&tmp),
            Vec::<std::path::PathBuf>::new(),
            "temporary blobs left in {}",
            tmp.display()
        );
    }
}

const PROXY_SECRET: &str = "the-front-proxy-secret";

#[tokio::test]
async fn second_upload_is_refused() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let ready = svc.upload_and_wait(&ctx.app, zips::small_app("once")).await;
    let guid = ready["guid"].as_str().unwrap();
    svc.upload(guid, &admin, zips::small_app("twice"))
        .await
        .assert_error(
            400,
            150004,
            "PackageBitsAlreadyUploaded",
            "Bits may be uploaded only once. Create a new package to upload different bits.",
        );
    assert_eq!(
        svc.package(guid).await["data"]["hash"],
        ready["data"]["hash"]
    );
    svc.upload("no-such-package", &admin, zips::small_app("x"))
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_and_leave_nothing() {
    let svc = Service::start_with(Options::default().with("upload.max_body_bytes", 100_000)).await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;
    let big = zips::zip(&[Entry::file("big.bin", &vec![7u8; 300_000])]);

    // Declared length over the limit: refused before the body is read. A raw client,
    // because HTTP libraries report the early answer as a broken write.
    let head = multipart_head(&guid, &admin, "Content-Length: 10000000\r\n");
    let (status, body) = raw_exchange(svc.api_port, &head, &[]).await;
    assert_eq!(status, 413, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error_code"], "CF-AppPackageInvalid");
    assert_eq!(
        v["errors"][0]["detail"],
        "The app package is invalid: Package may not be larger than 100000 bytes"
    );

    // No declared length (chunked): refused while streaming, as soon as it passes the limit.
    let head = multipart_head(&guid, &admin, "Transfer-Encoding: chunked\r\n");
    let mut chunked = Vec::new();
    let part = b"--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"a.zip\"\r\n\r\n";
    chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
    chunked.extend_from_slice(part);
    chunked.extend_from_slice(b"\r\n");
    for chunk in big.chunks(16 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    let (status, _) = raw_exchange(svc.api_port, &head, &chunked).await;
    assert_eq!(status, 413);

    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    assert_nothing_staged(&svc).await;

    // Within the limit it still works.
    let r = svc.upload(&guid, &admin, zips::small_app("fits")).await;
    assert_eq!(r.status, 200);
    assert_eq!(svc.wait_final(&guid).await["state"], "READY");
}

#[tokio::test]
async fn concurrent_uploads_admit_exactly_one() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let zips: Vec<Vec<u8>> = (0..10)
        .map(|i| zips::small_app(&format!("contender {i}")))
        .collect();
    let admin = svc.admin();
    let uploads = zips
        .iter()
        .map(|zip| svc.upload(&guid, &admin, zip.clone()));
    let replies = futures_util::future::join_all(uploads).await;
    let accepted: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error_code"], "CF-PackageBitsAlreadyUploaded");
    }
    let ready = svc.wait_final(&guid).await;
    assert_eq!(ready["state"], "READY");
    assert_eq!(
        ready["data"]["hash"]["value"],
        zips::sha1_hex(&zips[accepted[0]])
    );
    let (_, bytes) = svc.download(&guid, &svc.admin()).await;
    assert_eq!(bytes.unwrap(), zips[accepted[0]]);
    assert_nothing_staged(&svc).await;
}

#[tokio::test]
async fn multipart_form_rules() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;
    let url = format!("{}/v3/packages/{guid}/upload", svc.base);

    let form = reqwest::multipart::Form::new().text("resources", "[]");
    svc.send(svc.http.post(&url).bearer_auth(&admin).multipart(form))
        .await
        .assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "Upload must include either resources or bits",
        );
    let form = reqwest::multipart::Form::new().text("foo", "bar").part(
        "bits",
        reqwest::multipart::Part::bytes(zips::small_app("x")).file_name("a.zip"),
    );
    svc.send(svc.http.post(&url).bearer_auth(&admin).multipart(form))
        .await
        .assert_error(422, 10008, "UnprocessableEntity", "Unknown field(s): 'foo'");
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    assert_nothing_staged(&svc).await;

    // A client's file name is never used as a path.
    let marker = std::env::temp_dir().join(format!("escape-{}", uuid::Uuid::new_v4()));
    let name = format!("../../../../../..{}", marker.display());
    let form = reqwest::multipart::Form::new().part(
        "bits",
        reqwest::multipart::Part::bytes(zips::small_app("named")).file_name(name),
    );
    let r = svc
        .send(svc.http.post(&url).bearer_auth(&admin).multipart(form))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(svc.wait_final(&guid).await["state"], "READY");
    assert!(!marker.exists());
}

#[tokio::test]
async fn empty_and_non_zip_uploads_are_accepted_then_fail() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    for body in [Vec::new(), b"definitely not a zip".to_vec()] {
        let p = svc.upload_and_wait(&ctx.app, body).await;
        assert_eq!(p["state"], "FAILED");
        assert_eq!(p["data"]["error"], "The zip provided was not valid");
        assert_eq!(p["data"]["hash"]["value"], serde_json::Value::Null);
    }
    assert_nothing_staged(&svc).await;
}

/// The API sends a form's bits to the blobstore as they come, trusting its Content-Length
/// for a lower bound of their size (on S3, one streamed request instead of buffered
/// parts). A form whose bits end far short of that bound (here, before 12 MiB that
/// follow its closing boundary, unread) is refused and leaves nothing; the same form with
/// its true length is taken.
#[tokio::test]
async fn a_form_whose_bits_end_short_of_its_length_is_refused() {
    use rand::RngCore;
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;
    let mut noise = vec![0u8; 20 << 20];
    rand::rng().fill_bytes(&mut noise);
    let zip = zips::zip(&[Entry::file("noise.bin", &noise)]);
    let mut body = b"--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"a.zip\"\r\n\r\n".to_vec();
    body.extend_from_slice(&zip);
    body.extend_from_slice(b"\r\n--XBOUNDARYX--\r\n");
    let mut padded = body.clone();
    padded.resize(body.len() + (12 << 20), b'x');

    let head = multipart_head(
        &guid,
        &admin,
        &format!("Content-Length: {}\r\n", padded.len()),
    );
    let reply = packages_tests::raw::exchange_while_sending(svc.api_port, &head, &padded).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["errors"][0]["title"], "CF-MessageParseError");
    let detail = v["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "Request invalid due to parse error: the upload could not be read: the bits ended after {} bytes",
            zip.len()
        )),
        "{detail}"
    );
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    assert_nothing_staged(&svc).await;

    let head = multipart_head(
        &guid,
        &admin,
        &format!("Content-Length: {}\r\n", body.len()),
    );
    let reply = packages_tests::raw::exchange_while_sending(svc.api_port, &head, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ready = svc.wait_final(&guid).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(ready["data"]["hash"]["value"], zips::sha1_hex(&zip));
}

fn multipart_head(guid: &str, token: &str, length: &str) -> String {
    packages_tests::raw::multipart_head(guid, token, "XBOUNDARYX", length)
}

/// Sends a request head and part of a body, stops sending, and reads the answer.
async fn raw_exchange(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    use packages_tests::raw;
    let mut stream = raw::connect(port).await;
    raw::send(&mut stream, head.as_bytes()).await;
    // The server may answer (and close) before it read everything.
    raw::send(&mut stream, body).await;
    let reply = raw::read_reply(&mut stream, std::time::Duration::from_secs(20)).await;
    (reply.status, reply.body)
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25").replace('/', "%2F").replace(' ', "+")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// The proxy's file has a known length: over the limit it is refused before a byte is
/// stored; within it, it is stored whole (one streamed PUT on S3, larger than a part).
#[tokio::test]
async fn proxy_files_over_the_limit_get_413_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 8u64 << 20;
    let svc = Service::start_with(
        Options::default()
            .with("upload.bits_path_root", dir.path().display())
            .with("upload.proxy_secret", PROXY_SECRET)
            .with("upload.max_body_bytes", limit),
    )
    .await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;

    let big = dir.path().join("big");
    zips::write_large_zip(&big, limit + 1);
    let before = std::fs::read(&big).unwrap();
    svc.upload_proxy_file(&guid, &admin, PROXY_SECRET, &big)
        .await
        .assert_error(
            413,
            150001,
            "AppPackageInvalid",
            &format!("The app package is invalid: Package may not be larger than {limit} bytes"),
        );
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    assert_nothing_staged(&svc).await;
    assert_eq!(
        std::fs::read(&big).unwrap(),
        before,
        "a refused file is left to the proxy"
    );

    // 6 MiB: more than one S3 part, within the limit.
    let fits = dir.path().join("fits");
    let sha1 = zips::write_large_zip(&fits, 6 << 20);
    let r = svc
        .upload_proxy_file(&guid, &admin, PROXY_SECRET, &fits)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ready = svc.wait_final(&guid).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(ready["data"]["hash"]["value"], sha1);
    assert!(!fits.exists(), "the proxy's file is consumed once accepted");
}

#[tokio::test]
async fn proxy_form_only_reads_files_inside_the_upload_root() {
    let outside = tempfile::tempdir().unwrap();
    let root = outside.path().join("uploads");
    std::fs::create_dir_all(&root).unwrap();
    let svc = Service::start_with(
        Options::default()
            .with("upload.bits_path_root", root.display())
            .with("upload.proxy_secret", PROXY_SECRET),
    )
    .await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let proxy = Some(PROXY_SECRET);

    // A file the proxy stored inside the root: accepted, READY, and the file is consumed.
    let zip = zips::small_app("via proxy");
    let stored = root.join("d20151013-23073-iboity");
    std::fs::write(&stored, &zip).unwrap();
    let guid = svc.new_package(&ctx.app).await;
    let stored_path = stored.display().to_string();
    let r = svc
        .upload_proxy_form(
            &guid,
            &admin,
            proxy,
            &[
                ("bits_name", "application.zip"),
                ("bits_path", &stored_path),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "PROCESSING_UPLOAD");
    let ready = svc.wait_final(&guid).await;
    assert_eq!(ready["state"], "READY");
    assert_eq!(ready["data"]["hash"]["value"], zips::sha1_hex(&zip));
    assert!(
        !stored.exists(),
        "the proxy's file is consumed once accepted"
    );

    // Anything that is not a single-link regular file inside the root: 422, and the named
    // file is neither read nor touched.
    let secret = outside.path().join("secret.zip");
    std::fs::write(&secret, b"secret").unwrap();
    let before = std::fs::metadata(&secret).unwrap().modified().unwrap();
    std::os::unix::fs::symlink(&secret, root.join("link.zip")).unwrap();
    std::fs::write(root.join("inside.zip"), &zip).unwrap();
    std::os::unix::fs::symlink(root.join("inside.zip"), root.join("inner-link.zip")).unwrap();
    std::fs::hard_link(&secret, root.join("hard-link.zip")).unwrap();
    std::fs::create_dir_all(root.join("dir")).unwrap();
    let guid = svc.new_package(&ctx.app).await;
    for bad in [
        secret.display().to_string(),
        format!("{}/../secret.zip", root.display()),
        root.join("link.zip").display().to_string(),
        root.join("inner-link.zip").display().to_string(),
        root.join("hard-link.zip").display().to_string(),
        root.join("dir").display().to_string(),
        root.join("missing.zip").display().to_string(),
        "/etc/passwd".to_owned(),
    ] {
        svc.upload_proxy_form(
            &guid,
            &admin,
            proxy,
            &[("bits_name", "a.zip"), ("bits_path", &bad)],
        )
        .await
        .assert_error(422, 10008, "UnprocessableEntity", "Bits path is invalid");
    }
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().modified().unwrap(),
        before
    );
    assert!(root.join("inside.zip").exists());
    assert!(root.join("hard-link.zip").exists());
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");

    svc.upload_proxy_form(&guid, &admin, proxy, &[("bits_name", "a.zip")])
        .await
        .assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "Bits path An application zip file must be uploaded",
        );
    svc.upload_proxy_form(
        &guid,
        &admin,
        proxy,
        &[("resources", "[]"), ("bits_path", "x")],
    )
    .await
    .assert_error(
        422,
        10008,
        "UnprocessableEntity",
        "Unknown field(s): 'resources'",
    );
    let r = svc
        .upload_proxy_form(&guid, &admin, proxy, &[("bits_path", "x")])
        .await;
    assert_eq!(
        r.json()["description"],
        "The request is semantically invalid: Bits path is invalid"
    );
}

#[tokio::test]
async fn proxy_form_is_refused_without_an_upload_root() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let file = svc.dir.path().join("app.zip");
    std::fs::write(&file, zips::small_app("x")).unwrap();
    svc.post_raw(
        &format!("/v3/packages/{guid}/upload"),
        &svc.admin(),
        "application/x-www-form-urlencoded",
        form(&[("bits_path", &file.display().to_string())]),
    )
    .await
    .assert_error(422, 10008, "UnprocessableEntity", "Bits path is invalid");
    assert!(file.exists());
}

#[tokio::test]
async fn upload_is_checked_in_cloud_controller_order() {
    let svc = Service::start().await;
    let reader = svc.token("reader", &["cloud_controller.read"]);
    // Scope first (403), even for a package that does not exist.
    svc.upload("missing", &reader, zips::small_app("x"))
        .await
        .assert_error(
            403,
            10003,
            "NotAuthorized",
            "You are not authorized to perform the requested action",
        );
    // Form validation before existence.
    let r = svc
        .post_raw(
            "/v3/packages/missing/upload",
            &svc.admin(),
            "application/x-www-form-urlencoded",
            form(&[("bits_name", "a")]),
        )
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn uploads_to_failed_or_expired_packages_are_refused() {
    const ALREADY: &str =
        "Bits may be uploaded only once. Create a new package to upload different bits.";
    let svc =
        Service::start_with(Options::default().with("packages.max_valid_packages_stored", 1)).await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();

    // FAILED: not a zip. A failed package cannot be retried.
    let failed = svc
        .upload_and_wait(&ctx.app, b"not a zip at all".to_vec())
        .await;
    assert_eq!(failed["state"], "FAILED", "{failed}");
    let failed_guid = failed["guid"].as_str().unwrap();
    svc.upload(failed_guid, &admin, zips::small_app("retry"))
        .await
        .assert_error(400, 150004, "PackageBitsAlreadyUploaded", ALREADY);
    let after = svc.package(failed_guid).await;
    assert_eq!(after["state"], "FAILED");
    assert_eq!(after["data"]["error"], failed["data"]["error"]);

    // EXPIRED: a newer READY package of the same app pushes the older one out.
    let older = svc.upload_and_wait(&ctx.app, zips::small_app("one")).await;
    assert_eq!(older["state"], "READY", "{older}");
    let older_guid = older["guid"].as_str().unwrap();
    let newer = svc.upload_and_wait(&ctx.app, zips::small_app("two")).await;
    assert_eq!(newer["state"], "READY", "{newer}");
    let started = std::time::Instant::now();
    while svc.package(older_guid).await["state"] != "EXPIRED" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the older package did not expire\n{}",
            svc.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    svc.upload(older_guid, &admin, zips::small_app("again"))
        .await
        .assert_error(400, 150004, "PackageBitsAlreadyUploaded", ALREADY);
    let after = svc.package(older_guid).await;
    assert_eq!(after["state"], "EXPIRED");
    assert_eq!(after["data"]["hash"]["value"], serde_json::Value::Null);
    // Refused before a byte was stored.
    assert_nothing_staged(&svc).await;
}

#[tokio::test]
async fn a_space_auditor_uploading_to_a_docker_package_is_not_authorized() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let docker = svc
        .post(
            &format!("/v3/apps/{}/packages", ctx.app),
            &svc.admin(),
            &serde_json::json!({"type": "docker", "url": "docker://nginx"}),
        )
        .await
        .json();
    let guid = docker["guid"].as_str().unwrap();
    let auditor = uuid::Uuid::new_v4().to_string();
    svc.grant(&auditor, "space_auditor", &ctx.space).await;
    let developer = uuid::Uuid::new_v4().to_string();
    svc.grant(&developer, "space_developer", &ctx.space).await;

    // The write role is checked before the package type.
    svc.upload(
        guid,
        &svc.token(&auditor, packages_tests::READ_WRITE),
        zips::small_app("x"),
    )
    .await
    .assert_error(
        403,
        10003,
        "NotAuthorized",
        "You are not authorized to perform the requested action",
    );
    // Someone who may write gets as far as the type check.
    svc.upload(
        guid,
        &svc.token(&developer, packages_tests::READ_WRITE),
        zips::small_app("x"),
    )
    .await
    .assert_error(
        422,
        10008,
        "UnprocessableEntity",
        "Package type must be bits.",
    );
    assert_eq!(svc.package(guid).await["state"], "READY");
}
