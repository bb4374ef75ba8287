//! Every packages endpoint over HTTP: shapes, validation texts, pagination, copy,
//! download, delete, and the headers Cloud Controller clients expect.
#![allow(clippy::unwrap_used)]

use packages_tests::zips::{self, Entry};
use packages_tests::{Mode, Service, metric};
use serde_json::{Value, json};

#[tokio::test]
async fn create_bits_and_docker_packages() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();

    let r = svc
        .post(
            &format!("/v3/apps/{}/packages", ctx.app),
            &admin,
            &json!({"type": "bits"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert!(r.header("location").is_none(), "creates return no Location");
    let p = r.json();
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
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
    assert_eq!(p["type"], "bits");
    assert_eq!(p["state"], "AWAITING_UPLOAD");
    assert_eq!(p["updated_at"], Value::Null);
    assert_eq!(p["url"], Value::Null);
    assert_eq!(
        p["data"],
        json!({"hash": {"type": "sha1", "value": null}, "checksum": {"type": "sha256", "value": null}, "error": null})
    );
    assert_eq!(
        p["relationships"],
        json!({"app": {"data": {"guid": ctx.app}}})
    );
    assert_eq!(p["metadata"], json!({"labels": {}, "annotations": {}}));
    let guid = p["guid"].as_str().unwrap();
    let base = svc.base.clone();
    assert_eq!(
        p["links"],
        json!({
            "self": {"href": format!("{base}/v3/packages/{guid}")},
            "upload": {"href": format!("{base}/v3/packages/{guid}/upload"), "method": "POST"},
            "download": {"href": format!("{base}/v3/packages/{guid}/download"), "method": "GET"},
            "stage": {"href": format!("{base}/v3/packages/{guid}/droplets"), "method": "POST"},
            "app": {"href": format!("{base}/v3/apps/{}", ctx.app)},
        })
    );
    let created_at = p["created_at"].as_str().unwrap();
    assert_eq!(
        created_at.len(),
        20,
        "second precision with Z: {created_at}"
    );
    assert!(created_at.ends_with('Z'));

    let body = json!({"type": "docker", "url": "docker://cloudfoundry/runtime-ci", "data": {"ignored": true}});
    let r = svc
        .post(&format!("/v3/apps/{}/packages", ctx.app), &admin, &body)
        .await;
    assert_eq!(r.status, 201);
    let d = r.json();
    assert_eq!(d["state"], "READY");
    assert_eq!(d["url"], "docker://cloudfoundry/runtime-ci");
    assert_eq!(d["data"]["hash"], json!({"type": "sha1", "value": null}));
    assert_eq!(
        d["data"]["checksum"],
        json!({"type": "sha256", "value": null})
    );
    let link_keys: Vec<&str> = d["links"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(link_keys, ["self", "app"]);
}

#[tokio::test]
async fn create_validation_texts_and_order() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let path = format!("/v3/apps/{}/packages", ctx.app);
    let cases = [
        (json!({"type": "zip"}), "Type must be one of 'bits, docker'"),
        (
            json!({"type": "bits", "url": "x"}),
            "Url must be blank when type is bits",
        ),
        (
            json!({"type": "docker"}),
            "Url can not be blank when type is docker",
        ),
        (
            json!({"type": "bits", "data": {"a": 1}}),
            "Data data must be empty if provided for bits packages",
        ),
        (
            json!({"foo": 1, "type": "bits", "bar": 2}),
            "Unknown field(s): 'foo', 'bar'",
        ),
    ];
    for (body, detail) in cases {
        let r = svc.post(&path, &admin, &body).await;
        r.assert_error(422, 10008, "UnprocessableEntity", detail);
        assert_eq!(
            r.json()["description"],
            format!("The request is semantically invalid: {detail}")
        );
    }
    let r = svc
        .post_raw(&path, &admin, "application/json", b"{\"type\":".to_vec())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_code"], "CF-MessageParseError");
    assert!(
        r.json()["description"]
            .as_str()
            .unwrap()
            .starts_with("Request invalid due to parse error: ")
    );
    let r = svc
        .post_raw(&path, &admin, "application/json", b"[1]".to_vec())
        .await;
    r.assert_error(
        400,
        1001,
        "MessageParseError",
        "Request invalid due to parse error: invalid request body",
    );

    // Validation comes before existence.
    let r = svc
        .post(
            "/v3/apps/no-such-app/packages",
            &admin,
            &json!({"type": "zip"}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = svc
        .post(
            "/v3/apps/no-such-app/packages",
            &admin,
            &json!({"type": "bits"}),
        )
        .await;
    r.assert_error(404, 10010, "ResourceNotFound", "App not found");

    // Nothing was stored by the refused requests.
    let list = svc
        .get(&format!("/v3/apps/{}/packages", ctx.app), &admin)
        .await
        .json();
    assert_eq!(list["pagination"]["total_results"], 0);
}

#[tokio::test]
async fn show_list_and_paginate() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let mut guids = Vec::new();
    for _ in 0..3 {
        guids.push(svc.new_package(&ctx.app).await);
    }
    let r = svc.get(&format!("/v3/packages/{}", guids[0]), &admin).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["guid"], guids[0]);
    svc.get("/v3/packages/nope", &admin).await.assert_error(
        404,
        10010,
        "ResourceNotFound",
        "Package not found",
    );

    let base = svc.base.clone();
    let r = svc.get("/v3/packages?page=1&per_page=2", &admin).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        v["pagination"],
        json!({
            "total_results": 3,
            "total_pages": 2,
            "first": {"href": format!("{base}/v3/packages?page=1&per_page=2")},
            "last": {"href": format!("{base}/v3/packages?page=2&per_page=2")},
            "next": {"href": format!("{base}/v3/packages?page=2&per_page=2")},
            "previous": null,
        })
    );
    let page1: Vec<&str> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["guid"].as_str().unwrap())
        .collect();
    assert_eq!(page1, [guids[0].as_str(), guids[1].as_str()]);
    let v = svc
        .get("/v3/packages?page=2&per_page=2", &admin)
        .await
        .json();
    assert_eq!(v["resources"][0]["guid"], guids[2]);
    assert_eq!(v["pagination"]["next"], Value::Null);
    assert_eq!(
        v["pagination"]["previous"]["href"],
        format!("{base}/v3/packages?page=1&per_page=2")
    );
    // Past the end: empty, previous still set.
    let v = svc
        .get("/v3/packages?page=9&per_page=2", &admin)
        .await
        .json();
    assert_eq!(v["resources"], json!([]));
    assert_eq!(
        v["pagination"]["previous"]["href"],
        format!("{base}/v3/packages?page=8&per_page=2")
    );

    let app_list = svc
        .get(&format!("/v3/apps/{}/packages?per_page=1", ctx.app), &admin)
        .await
        .json();
    assert_eq!(app_list["pagination"]["total_results"], 3);
    assert_eq!(
        app_list["pagination"]["first"]["href"],
        format!("{base}/v3/apps/{}/packages?page=1&per_page=1", ctx.app)
    );
    svc.get("/v3/apps/nope/packages", &admin)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "App not found");

    let bad = [
        (
            "/v3/packages?order_by=name",
            "Order by can only be: 'created_at', 'updated_at'",
        ),
        (
            "/v3/packages?invalid=1&bad=2",
            "Unknown query parameter(s): 'invalid', 'bad'. Valid parameters are: 'page', 'per_page', 'order_by', 'created_ats', 'updated_ats', 'guids', 'states', 'types', 'app_guids', 'app_guid', 'space_guids', 'organization_guids', 'label_selector'",
        ),
        ("/v3/packages?page=abc", "Page is not a number"),
        ("/v3/packages?page=0", "Page must be greater than 0"),
        ("/v3/packages?page=1.5", "Page must be an integer"),
        ("/v3/packages?per_page=0", "Per page must be greater than 0"),
        (
            "/v3/packages?per_page=5001",
            "Per page must be between 1 and 5000",
        ),
    ];
    for (path, text) in bad {
        svc.get(path, &admin).await.assert_error(
            400,
            10005,
            "BadQueryParameter",
            &format!("The query parameter is invalid: {text}"),
        );
    }
    // The app list validates its query before looking the app up.
    let r = svc.get("/v3/apps/nope/packages?foo=1", &admin).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn upload_download_and_delete() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;
    let zip = zips::small_app("v1");

    // Not READY yet: no bits to download.
    svc.get(&format!("/v3/packages/{guid}/download"), &admin)
        .await
        .assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "Package has no bits to download.",
        );

    let r = svc.upload(&guid, &admin, zip.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let accepted = r.json();
    assert_eq!(accepted["state"], "PROCESSING_UPLOAD");
    assert!(
        accepted["updated_at"].is_string(),
        "updated_at is set once the upload is accepted"
    );

    let ready = svc.wait_final(&guid).await;
    assert_eq!(ready["state"], "READY", "{ready}");
    assert_eq!(ready["data"]["hash"]["value"], zips::sha1_hex(&zip));
    assert_eq!(ready["data"]["checksum"]["value"], zips::sha256_hex(&zip));
    assert_eq!(ready["data"]["error"], Value::Null);

    let (r, bytes) = svc.download(&guid, &admin).await;
    assert_eq!(bytes.as_deref(), Some(zip.as_slice()));
    match svc.mode {
        Mode::Embedded => {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-type"), Some("application/zip"));
            assert_eq!(
                r.header("content-length"),
                Some(zip.len().to_string().as_str())
            );
        }
        Mode::Stack => {
            assert_eq!(r.status, 302);
            assert_eq!(
                r.header("content-type"),
                Some("application/json;charset=utf-8")
            );
            assert!(r.header("location").unwrap().contains("X-Amz-Signature="));
            assert!(r.header("location").unwrap().contains("X-Amz-Expires=3600"));
        }
    }
    assert!(svc.bits_exist(&guid).await);

    let r = svc.delete(&format!("/v3/packages/{guid}"), &admin).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    svc.get(&format!("/v3/packages/{guid}"), &admin)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    // The bits go shortly after, through a job.
    let started = std::time::Instant::now();
    while svc.bits_exist(&guid).await {
        assert!(
            started.elapsed().as_secs() < 30,
            "bits of a deleted package still there\n{}",
            svc.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    svc.delete(&format!("/v3/packages/{guid}"), &admin)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
}

#[tokio::test]
async fn download_refuses_docker_packages() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let body = json!({"type": "docker", "url": "docker://nginx"});
    let d = svc
        .post(&format!("/v3/apps/{}/packages", ctx.app), &admin, &body)
        .await
        .json();
    let guid = d["guid"].as_str().unwrap();
    svc.get(&format!("/v3/packages/{guid}/download"), &admin)
        .await
        .assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "Package type must be bits.",
        );
    svc.upload(guid, &admin, zips::small_app("x"))
        .await
        .assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "Package type must be bits.",
        );
}

#[tokio::test]
async fn copy_packages_between_apps() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let other_app = svc.create_app(&ctx.space, "worker").await;
    let zip = zips::small_app("copy me");
    let source = svc.upload_and_wait(&ctx.app, zip.clone()).await;
    assert_eq!(source["state"], "READY");
    let source_guid = source["guid"].as_str().unwrap();

    let r = svc
        .post(
            &format!("/v3/apps/{other_app}/packages?source_package_guid={source_guid}"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let copy = r.json();
    assert_eq!(copy["state"], "COPYING");
    assert_eq!(copy["type"], "bits");
    assert_eq!(
        copy["relationships"]["app"]["data"]["guid"],
        other_app.as_str()
    );
    let copy_guid = copy["guid"].as_str().unwrap();
    let done = svc.wait_final(copy_guid).await;
    assert_eq!(done["state"], "READY", "{done}");
    assert_eq!(done["data"]["hash"], source["data"]["hash"]);
    assert_eq!(done["data"]["checksum"], source["data"]["checksum"]);
    let (_, bytes) = svc.download(copy_guid, &admin).await;
    assert_eq!(bytes.as_deref(), Some(zip.as_slice()));

    // Same app: refused.
    svc.post(
        &format!(
            "/v3/apps/{}/packages?source_package_guid={source_guid}",
            ctx.app
        ),
        &admin,
        &json!({}),
    )
    .await
    .assert_error(
        422,
        10008,
        "UnprocessableEntity",
        "Source and destination app cannot be the same",
    );
    // Missing source.
    svc.post(
        &format!("/v3/apps/{other_app}/packages?source_package_guid=nope"),
        &admin,
        &json!({}),
    )
    .await
    .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    // A copy of a package without bits is accepted, then fails.
    let empty = svc.new_package(&ctx.app).await;
    let r = svc
        .post(
            &format!("/v3/apps/{other_app}/packages?source_package_guid={empty}"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 201);
    let failed = svc.wait_final(r.json()["guid"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "FAILED");
    assert!(
        failed["data"]["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to copy - "),
        "{failed}"
    );

    // Docker copies are READY at once, with the image.
    let docker = svc
        .post(
            &format!("/v3/apps/{}/packages", ctx.app),
            &admin,
            &json!({"type": "docker", "url": "docker://redis"}),
        )
        .await
        .json();
    let r = svc
        .post(
            &format!(
                "/v3/apps/{other_app}/packages?source_package_guid={}",
                docker["guid"].as_str().unwrap()
            ),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["state"], "READY");
    assert_eq!(r.json()["url"], "docker://redis");
}

#[tokio::test]
async fn staging_is_refused_after_the_usual_checks() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;
    let r = svc
        .post(&format!("/v3/packages/{guid}/droplets"), &admin, &json!({}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_code"], "CF-UnableToPerform");
    assert!(
        r.json()["description"]
            .as_str()
            .unwrap()
            .contains("does not stage")
    );
    svc.post("/v3/packages/nope/droplets", &admin, &json!({}))
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
}

#[tokio::test]
async fn headers_request_ids_and_unknown_routes() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let r = svc
        .send(
            svc.http
                .get(format!("{}/v3/packages", svc.base))
                .bearer_auth(&admin)
                .header("X-VCAP-Request-ID", "abc def<>1"),
        )
        .await;
    let id = r.header("x-vcap-request-id").unwrap().to_owned();
    let (incoming, fresh) = id.split_once("::").unwrap();
    assert_eq!(incoming, "abcdef1");
    assert!(uuid::Uuid::parse_str(fresh).is_ok());
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));

    let r = svc.get_anonymous("/v3/packages").await;
    assert!(uuid::Uuid::parse_str(r.header("x-vcap-request-id").unwrap()).is_ok());

    // Unknown routes and methods: Cloud Controller's 404, no token needed.
    for r in [
        svc.get_anonymous("/v3/nothing-here").await,
        svc.send(svc.http.put(format!("{}/v3/packages", svc.base)))
            .await,
        svc.send(svc.http.put(format!("{}/v3/packages/x", svc.base)))
            .await,
    ] {
        r.assert_error(404, 10000, "NotFound", "Unknown request");
    }

    let root = svc.get_anonymous("/").await;
    assert_eq!(root.status, 200);
    assert_eq!(
        root.json()["links"]["cloud_controller_v3"]["href"],
        format!("{}/v3", svc.base)
    );
    assert!(root.json()["links"]["cloud_controller_v3"]["meta"]["version"].is_string());
    let v3 = svc.get_anonymous("/v3").await.json();
    for key in ["packages", "apps", "spaces", "organizations", "roles"] {
        assert_eq!(
            v3["links"][key]["href"],
            format!("{}/v3/{key}", svc.base),
            "{key}"
        );
    }
    assert_eq!(svc.get_anonymous("/healthz").await.status, 200);
    let ready = svc.get_anonymous("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["checks"]["database"], "ok");
}

/// The harness picks ports that are free when picked; one taken before the process binds
/// it must cost a restart on another port, not a failed test.
#[tokio::test]
async fn an_api_whose_port_was_taken_starts_again_on_another() {
    let mut svc = Service::start_with(packages_tests::Options {
        defer_start: true,
        ..Default::default()
    })
    .await;
    let given = svc.api_port;
    let _taken = std::net::TcpListener::bind(("127.0.0.1", given)).unwrap();
    svc.start_api(&[]).await;
    assert_ne!(svc.api_port, given);
    assert!(
        svc.api_log().contains("Address already in use"),
        "the first start should have found the port taken:\n{}",
        svc.api_log()
    );
    assert_eq!(svc.get_anonymous("/healthz").await.status, 200);
}

#[tokio::test]
async fn ops_bind_moves_the_operator_endpoints_off_the_api_port() {
    let ops = format!("127.0.0.1:{}", packages_tests::service::free_port());
    let svc =
        Service::start_with(packages_tests::Options::default().with("server.ops_bind", &ops)).await;
    let ctx = svc.ctx().await;
    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        svc.get_anonymous(path)
            .await
            .assert_error(404, 10000, "NotFound", "Unknown request");
        let r = http
            .get(format!("http://{ops}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} on {ops}");
    }
    // The API's own traffic is counted and scraped on the ops port.
    let guid = svc.new_package(&ctx.app).await;
    assert_eq!(
        svc.get(&format!("/v3/packages/{guid}"), &svc.admin())
            .await
            .status,
        200
    );
    let scrape = http
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(
            &scrape,
            "http_requests_total",
            &[
                ("route", "/v3/packages/{guid}"),
                ("method", "GET"),
                ("status", "200")
            ]
        ) >= 1.0,
        "{scrape}"
    );
    // Nothing of the API answers on the ops port.
    let r = http.get(format!("http://{ops}/v3")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn external_url_sets_every_href() {
    let svc = Service::start_with(
        packages_tests::Options::default().with("server.external_url", "https://api.example.org/"),
    )
    .await;
    let ctx = svc.ctx().await;
    let p = svc.create_package(&ctx.app, &svc.admin()).await;
    assert!(
        p["links"]["self"]["href"]
            .as_str()
            .unwrap()
            .starts_with("https://api.example.org/v3/packages/")
    );
    let root = svc.get_anonymous("/").await.json();
    assert_eq!(
        root["links"]["cloud_controller_v3"]["href"],
        "https://api.example.org/v3"
    );
    assert_eq!(root["links"]["self"]["href"], "https://api.example.org");
}

#[tokio::test]
async fn zip_with_symlink_inside_is_ready() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let zip = zips::zip(&[
        Entry::file("a/b.txt", b"x"),
        Entry::symlink("a/link", "b.txt"),
    ]);
    assert_eq!(svc.upload_and_wait(&ctx.app, zip).await["state"], "READY");
}

#[tokio::test]
async fn download_of_a_ready_package_whose_bits_are_missing_is_an_unknown_error() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let p = svc.upload_and_wait(&ctx.app, zips::small_app("lost")).await;
    assert_eq!(p["state"], "READY", "{p}");
    let guid = p["guid"].as_str().unwrap();
    let key = packages_tests::blob_key(guid);
    // The bits vanish behind the service's back.
    match &svc.s3 {
        None => std::fs::remove_file(svc.blob_root().join(&key)).unwrap(),
        Some(settings) => {
            use packages_blobstore::Blobstore;
            let store = packages_blobstore::S3Blobstore::connect(settings.clone()).unwrap();
            store.delete(&key).await.unwrap();
        }
    }
    assert!(!svc.bits_exist(guid).await);
    assert_eq!(svc.package(guid).await["state"], "READY");

    // Both backends answer 500: the local store cannot open the file, and on S3 the
    // service checks the blob exists before signing a URL, rather than sending the client
    // to a presigned URL that would only give S3's 404.
    let r = svc
        .get(&format!("/v3/packages/{guid}/download"), &admin)
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.header("location").is_none());
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(
        r.json(),
        json!({
            "error_code": "UnknownError",
            "description": "An unknown error occurred.",
            "code": 10001,
            "errors": [{"detail": "An unknown error occurred.", "title": "UnknownError", "code": 10001}],
        })
    );
    assert_eq!(r.body.last(), Some(&b'\n'));
    assert!(!r.text().contains(&key), "no detail leaks to the client");
}

#[tokio::test]
async fn download_redirect_carries_content_length_zero() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let zip = zips::small_app("sized");
    let p = svc.upload_and_wait(&ctx.app, zip.clone()).await;
    let guid = p["guid"].as_str().unwrap();
    let r = svc
        .get(&format!("/v3/packages/{guid}/download"), &svc.admin())
        .await;
    match svc.mode {
        // The embedded default streams local bits: there is no redirect to check.
        Mode::Embedded => {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-type"), Some("application/zip"));
            assert_eq!(r.body.as_ref(), zip.as_slice());
        }
        // The stack redirects to S3, as in the seed: an empty body, `Content-Length: 0`.
        Mode::Stack => {
            assert_eq!(r.status, 302);
            assert_eq!(r.header("content-length"), Some("0"));
            assert!(r.body.is_empty());
            assert!(r.header("location").is_some());
        }
    }
}

#[tokio::test]
async fn copy_source_may_come_as_a_form_field() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let other_app = svc.create_app(&ctx.space, "worker").await;
    let zip = zips::small_app("copied from a form");
    let source = svc.upload_and_wait(&ctx.app, zip.clone()).await;
    let source_guid = source["guid"].as_str().unwrap();

    // No query string: the source is only in the urlencoded body.
    let r = svc
        .post_raw(
            &format!("/v3/apps/{other_app}/packages"),
            &admin,
            "application/x-www-form-urlencoded",
            format!("source_package_guid={source_guid}").into_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let copy = r.json();
    assert_eq!(copy["state"], "COPYING");
    assert_eq!(copy["type"], "bits");
    assert_ne!(copy["guid"], source["guid"]);
    assert_eq!(
        copy["relationships"]["app"]["data"]["guid"],
        other_app.as_str()
    );
    let done = svc.wait_final(copy["guid"].as_str().unwrap()).await;
    assert_eq!(done["state"], "READY", "{done}");
    assert_eq!(done["data"]["hash"], source["data"]["hash"]);
    let (_, bytes) = svc.download(copy["guid"].as_str().unwrap(), &admin).await;
    assert_eq!(bytes.as_deref(), Some(zip.as_slice()));
}

#[tokio::test]
async fn x_request_id_is_used_without_x_vcap_request_id() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let r = svc
        .send(
            svc.http
                .get(format!("{}/v3/packages", svc.base))
                .bearer_auth(&admin)
                .header("X-Request-ID", "trace 42/a.b"),
        )
        .await;
    assert_eq!(r.status, 200);
    let id = r.header("x-vcap-request-id").unwrap();
    let (incoming, fresh) = id.split_once("::").unwrap();
    assert_eq!(incoming, "trace42ab");
    assert!(uuid::Uuid::parse_str(fresh).is_ok(), "{id}");

    // With both, X-VCAP-Request-ID wins.
    let r = svc
        .send(
            svc.http
                .get(format!("{}/v3/packages", svc.base))
                .bearer_auth(&admin)
                .header("X-Request-ID", "plain")
                .header("X-VCAP-Request-ID", "vcap"),
        )
        .await;
    assert!(
        r.header("x-vcap-request-id").unwrap().starts_with("vcap::"),
        "{:?}",
        r.header("x-vcap-request-id")
    );
}

#[tokio::test]
async fn errors_and_no_content_answers_are_json_typed() {
    const JSON: &str = "application/json;charset=utf-8";
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let reader = svc.token("reader", &["cloud_controller.read"]);
    let guid = svc.new_package(&ctx.app).await;
    let errors = [
        svc.get_anonymous("/v3/packages").await,
        svc.get("/v3/packages", "not-a-token").await,
        svc.delete(&format!("/v3/packages/{guid}"), &reader).await,
        svc.get("/v3/packages/nope", &admin).await,
        svc.get_anonymous("/v3/nothing-here").await,
        svc.get("/v3/packages?foo=1", &admin).await,
        svc.post(
            &format!("/v3/apps/{}/packages", ctx.app),
            &admin,
            &json!({"type": "zip"}),
        )
        .await,
        svc.get(&format!("/v3/packages/{guid}/download"), &admin)
            .await,
    ];
    let statuses: Vec<u16> = errors.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 403, 404, 404, 400, 422, 422]);
    for r in &errors {
        assert_eq!(
            r.header("content-type"),
            Some(JSON),
            "{}: {}",
            r.status,
            r.text()
        );
        assert!(r.json()["error_code"].is_string());
    }

    let r = svc.delete(&format!("/v3/packages/{guid}"), &admin).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), Some(JSON));
}

#[tokio::test]
async fn deleting_a_docker_package_records_no_bits_job() {
    // Jobs stall, so any job the deletes record stays on record.
    let svc = Service::start_with(packages_tests::Options {
        worker_env: vec![("FAILPOINTS".into(), "worker-job-stall=return".into())],
        ..packages_tests::Options::default()
    })
    .await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let docker = svc
        .post(
            &format!("/v3/apps/{}/packages", ctx.app),
            &admin,
            &json!({"type": "docker", "url": "docker://nginx"}),
        )
        .await
        .json();
    let guid = docker["guid"].as_str().unwrap();
    let r = svc.delete(&format!("/v3/packages/{guid}"), &admin).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    svc.get(&format!("/v3/packages/{guid}"), &admin)
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    assert_eq!(svc.job_kinds(guid), Vec::<String>::new());

    // A bits package, deleted the same way, does record the deletion of its bits.
    let bits = svc.new_package(&ctx.app).await;
    assert_eq!(
        svc.delete(&format!("/v3/packages/{bits}"), &admin)
            .await
            .status,
        204
    );
    assert_eq!(svc.job_kinds(&bits), ["delete_bits"]);
}
