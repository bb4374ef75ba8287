//! Hostile input and faults: every request and every job stays bounded in memory, time and
//! open files, whoever sends it. One test per defect that was reproduced against the
//! service, named after it; each failed before its fix.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use packages_tests::raw::{self, closed_by_server, read_reply, send};
use packages_tests::zips::{self, Entry};
use packages_tests::{Mode, Options, Service, metric, peak_rss};
use serde_json::json;

const MIB: u64 = 1 << 20;

/// A whole multipart upload body with `zip` as its `bits` part.
fn bits_form(zip: &[u8]) -> Vec<u8> {
    let mut body =
        b"--XBOUNDARY\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"a.zip\"\r\n\r\n"
            .to_vec();
    body.extend_from_slice(zip);
    body.extend_from_slice(b"\r\n--XBOUNDARY--\r\n");
    body
}

/// Sends a whole multipart upload body with `boundary` on a raw connection; the answer.
async fn raw_upload(svc: &Service, guid: &str, boundary: &str, body: &[u8]) -> raw::RawReply {
    let head = raw::multipart_head(
        guid,
        &svc.admin(),
        boundary,
        &format!("Content-Length: {}\r\n", body.len()),
    );
    let mut stream = raw::connect(svc.api_port).await;
    send(&mut stream, head.as_bytes()).await;
    send(&mut stream, body).await;
    read_reply(&mut stream, Duration::from_secs(30)).await
}

/// Waits until the API has received bits beyond `before` (`upload_bytes_total`).
async fn wait_for_upload_bytes(svc: &Service, before: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&svc.metrics().await, "upload_bytes_total", &[]) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Peak RSS of whatever runs the jobs: `packages`, or the (only) stack worker.
fn job_runner_peak_rss(svc: &Service) -> u64 {
    match svc.mode {
        Mode::Embedded => peak_rss(svc.api_pid()),
        Mode::Stack => svc.worker_pids().into_iter().map(peak_rss).max().unwrap(),
    }
}

/// 10,000 symlinks with ~500-byte names of many components: a 5 MB zip that made the
/// old check allocate ~300 MiB.
fn many_long_symlinks() -> Vec<u8> {
    let deep = "d/".repeat(240);
    let entries: Vec<Entry> = (0..10_000)
        .map(|i| Entry::symlink(&format!("{deep}{i:05}/link"), "../sibling"))
        .collect();
    zips::zip(&entries)
}

// 1. A valid zip could crash-loop the service.

#[tokio::test]
async fn a_zip_of_many_long_symlinks_is_checked_in_bounded_memory() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let zip = many_long_symlinks();
    assert!(zip.len() > 4 * MIB as usize);
    let p = svc.upload_and_wait(&ctx.app, zip).await;
    assert_eq!(p["state"], "READY", "{p}");
    let peak = job_runner_peak_rss(&svc);
    eprintln!("peak RSS while checking: {:.1} MiB", mib(peak));
    assert!(
        peak <= 100 * MIB,
        "peak RSS {:.1} MiB exceeds 100 MiB",
        mib(peak)
    );
}

#[tokio::test]
async fn zip_limits_fail_the_package_with_a_reason() {
    let svc = Service::start_with(
        Options::default()
            .with("packages.max_zip_entries", 3)
            .with("packages.max_zip_name_bytes", 20)
            .with("packages.max_zip_symlinks", 1),
    )
    .await;
    let ctx = svc.ctx().await;
    let cases = [
        (
            zips::zip(&[
                Entry::file("a", b"1"),
                Entry::file("b", b"2"),
                Entry::file("c", b"3"),
                Entry::file("d", b"4"),
            ]),
            "The zip provided was not valid: the zip archive has more than 3 entries",
        ),
        (
            zips::zip(&[Entry::file("a-name-of-21-bytes-xx", b"1")]),
            "The zip provided was not valid: entry 'a-name-of-21-bytes-xx' has a name longer than 20 bytes",
        ),
        (
            zips::zip(&[Entry::symlink("l1", "a"), Entry::symlink("l2", "a")]),
            "The zip provided was not valid: the zip archive has more than 1 symlinks",
        ),
    ];
    for (zip, reason) in cases {
        let p = svc.upload_and_wait(&ctx.app, zip).await;
        assert_eq!(p["state"], "FAILED", "{p}");
        assert_eq!(p["data"]["error"], reason);
    }
    let within = zips::zip(&[Entry::file("a", b"1"), Entry::symlink("l", "a")]);
    assert_eq!(
        svc.upload_and_wait(&ctx.app, within).await["state"],
        "READY"
    );
    let metrics = svc.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "packages_failed_total",
            &[("reason", "zip_limit")]
        ),
        3.0
    );
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_is_quarantined() {
    let mut svc = Service::start_with(
        Options {
            defer_start: true,
            ..Options::default()
        }
        .with("worker.max_attempts", 2),
    )
    .await;
    let crash = [("FAILPOINTS", "worker-job-crash=return")];
    // Embedded, the process runs the job; on the stack, only the workers started below.
    match svc.mode {
        Mode::Embedded => svc.start_api(&crash).await,
        Mode::Stack => svc.start_api(&[]).await,
    }
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let upload = svc
        .try_send(svc.upload_request(&guid, &svc.admin(), zips::small_app("poison")))
        .await;
    match (svc.mode, upload) {
        (_, Ok(reply)) => assert_eq!(reply.status, 200, "{}", reply.text()),
        // Embedded, the job may take the process down before the answer is written: the
        // job ran, so the upload was accepted.
        (Mode::Embedded, Err(_)) => {}
        (Mode::Stack, Err(e)) => panic!("the API died: {e}"),
    }
    // Each run aborts its process once the run is counted; whatever restarts the process
    // (a supervisor, here the test) brings the job back.
    for run in 1..=2 {
        match svc.mode {
            Mode::Embedded => {
                assert!(
                    svc.wait_api_exit(Duration::from_secs(60)),
                    "run {run} did not take the process down"
                );
                svc.spawn_api(&crash);
            }
            Mode::Stack => {
                let worker = svc.spawn_worker(&crash);
                assert!(
                    svc.wait_worker_exit(worker, Duration::from_secs(60)),
                    "run {run} did not take the worker down"
                );
            }
        }
    }
    // Past its attempts the job is not run again, even where it would crash once more.
    match svc.mode {
        Mode::Embedded => {
            svc.kill_api();
            svc.start_api(&crash).await;
        }
        Mode::Stack => {
            svc.start_worker_with(&crash).await;
        }
    }
    let p = svc.wait_final_for(&guid, Duration::from_secs(60)).await;
    assert_eq!(p["state"], "FAILED", "{p}");
    assert_eq!(
        p["data"]["error"],
        "Package processing failed: the package could not be processed (2 attempts ended with the worker process)"
    );
    let metrics = svc.metrics().await;
    assert_eq!(
        metric(&metrics, "packages_failed_total", &[("reason", "crashed")]),
        1.0
    );
    assert!(
        metric(&metrics, "jobs_total", &[("outcome", "dead_lettered")]) >= 1.0,
        "the quarantined job is dead-lettered"
    );
    assert!(svc.job_kinds(&guid).is_empty(), "its job row is gone");
}

// 2. Unbounded metrics series without a token.

#[tokio::test]
async fn invented_http_methods_do_not_grow_the_metrics() {
    let svc = Service::start().await;
    let before = svc.get_anonymous("/metrics").await.body.len();
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("M{i:04}X").as_bytes()).unwrap();
        let r = svc
            .send(svc.http.request(method, format!("{}/v3/x{i}", svc.base)))
            .await;
        assert_eq!(r.status, 404);
    }
    let text = svc.get_anonymous("/metrics").await.text();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .collect();
    assert!(series.len() <= 4, "{series:#?}");
    assert_eq!(
        metric(
            &text,
            "http_requests_total",
            &[("method", "OTHER"), ("route", "unmatched")]
        ),
        300.0
    );
    assert!(
        text.len() < before + 8 * 1024,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
}

// 3. Stalled bodies exhausted file descriptors.

#[tokio::test]
async fn stalled_bodies_are_answered_408_and_their_connections_closed() {
    let svc =
        Service::start_with(Options::default().with("server.body_idle_timeout_secs", 1)).await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let guid = svc.new_package(&ctx.app).await;

    // A JSON body and a multipart upload that stop halfway: 408, then the server hangs up.
    let create = raw::json_head(
        "POST",
        &format!("/v3/apps/{}/packages", ctx.app),
        &admin,
        100,
    );
    let upload_body = format!(
        "--XBOUNDARY\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"p.zip\"\r\n\
         Content-Type: application/zip\r\n\r\n{}",
        "PK".repeat(5000)
    );
    let upload = raw::multipart_head(&guid, &admin, "XBOUNDARY", "Content-Length: 10000000\r\n");
    for (head, body) in [(create, "{\"type\":".to_owned()), (upload, upload_body)] {
        let mut stream = raw::connect(svc.api_port).await;
        send(&mut stream, head.as_bytes()).await;
        send(&mut stream, body.as_bytes()).await;
        let reply = read_reply(&mut stream, Duration::from_secs(30)).await;
        assert_eq!(reply.status, 408, "{}", reply.body);
        let v = reply.json();
        assert_eq!(v["error_code"], "CF-MessageParseError");
        assert_eq!(
            v["errors"][0]["detail"],
            "Request invalid due to parse error: the request body made no progress for 1 second"
        );
        assert!(
            closed_by_server(&mut stream, Duration::from_secs(10)).await,
            "connection left open after 408"
        );
    }
    // The stalled upload stored nothing and left its package free for the next upload.
    assert!(svc.staged_blobs().await.is_empty());
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    let p = svc.upload(&guid, &admin, zips::small_app("after")).await;
    assert_eq!(p.status, 200, "{}", p.text());
}

#[tokio::test]
async fn a_slow_body_that_keeps_sending_is_not_cut() {
    let svc =
        Service::start_with(Options::default().with("server.body_idle_timeout_secs", 1)).await;
    let ctx = svc.ctx().await;
    let body = json!({"type": "bits"}).to_string();
    let head = raw::json_head(
        "POST",
        &format!("/v3/apps/{}/packages", ctx.app),
        &svc.admin(),
        body.len(),
    );
    let mut stream = raw::connect(svc.api_port).await;
    send(&mut stream, head.as_bytes()).await;
    // Three idle periods in total, but never one whole idle period without a byte.
    for byte in body.as_bytes() {
        send(&mut stream, &[*byte]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reply = read_reply(&mut stream, Duration::from_secs(30)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn tokens_and_scopes_are_checked_before_any_body_is_read() {
    // With a long idle timeout: an answer that waited for the body would take a minute.
    let svc =
        Service::start_with(Options::default().with("server.body_idle_timeout_secs", 60)).await;
    let ctx = svc.ctx().await;
    let reader = svc.token("reader", &["cloud_controller.read"]);
    let guid = svc.new_package(&ctx.app).await;
    let upload_id = uuid::Uuid::new_v4();
    let routes = [
        ("POST", format!("/v3/apps/{}/packages", ctx.app)),
        ("POST", format!("/v3/packages/{guid}/upload")),
        ("POST", format!("/v3/packages/{guid}/droplets")),
        ("POST", "/v3/packages".to_owned()),
        ("PATCH", format!("/v3/packages/{guid}")),
        ("POST", "/v3/resource_matches".to_owned()),
        ("POST", format!("/v3/packages/{guid}/direct_uploads")),
        (
            "POST",
            format!("/v3/packages/{guid}/direct_uploads/{upload_id}/actions/complete"),
        ),
        ("POST", "/v3/organizations".to_owned()),
        ("POST", "/v3/spaces".to_owned()),
        ("POST", "/v3/apps".to_owned()),
        ("POST", "/v3/roles".to_owned()),
    ];
    for (method, path) in &routes {
        for (token, status) in [(reader.as_str(), 403), ("not-a-token", 401)] {
            let mut stream = raw::connect(svc.api_port).await;
            // Headers promise a body that never comes.
            send(
                &mut stream,
                raw::json_head(method, path, token, 1000).as_bytes(),
            )
            .await;
            let reply = read_reply(&mut stream, Duration::from_secs(20)).await;
            assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        }
    }
    // A direct-upload PUT carries no token: its signature is judged first.
    let mut stream = raw::connect(svc.api_port).await;
    let forged = format!(
        "/v3/packages/{guid}/direct_uploads/{upload_id}/bits?expires=99999999999&signature=00"
    );
    send(
        &mut stream,
        raw::json_head("PUT", &forged, "", 1000).as_bytes(),
    )
    .await;
    let reply = read_reply(&mut stream, Duration::from_secs(20)).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    let paths: Vec<&String> = routes.iter().map(|(_, path)| path).collect();
    // Many such connections at once do not keep the service from answering others.
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut stream = raw::connect(svc.api_port).await;
        send(
            &mut stream,
            raw::json_head("POST", paths[0], &svc.admin(), 1000).as_bytes(),
        )
        .await;
        held.push(stream);
    }
    let health = svc.get_anonymous("/healthz").await;
    assert_eq!(health.status, 200);
    drop(held);
}

#[tokio::test]
async fn the_connection_cap_holds_and_warns() {
    let cap = 8;
    let svc = Service::start_with(Options::default().with("server.max_connections", cap)).await;
    assert!(
        svc.api_log().contains("open-files limit"),
        "the open-files limits are logged at start\n{}",
        svc.api_log()
    );
    // Connections that were answered once and stay open, until one is not answered: it
    // waits in the backlog because the cap is reached.
    let mut held = Vec::new();
    let waiting = loop {
        let mut stream = raw::connect(svc.api_port).await;
        send(
            &mut stream,
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        )
        .await;
        let mut probe = [0u8; 1];
        let answered = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::io::AsyncReadExt::read(&mut stream, &mut probe),
        )
        .await
        .is_ok();
        if !answered {
            break stream;
        }
        let _ = read_reply(&mut stream, Duration::from_secs(10)).await;
        held.push(stream);
        assert!(
            held.len() <= 2 * cap,
            "{} connections served at once",
            held.len()
        );
    };
    eprintln!("{} connections served before one had to wait", held.len());
    assert!(held.len() >= cap / 2);
    // As soon as one closes, the waiting one is served.
    let mut waiting = waiting;
    drop(held.pop());
    let reply = read_reply(&mut waiting, Duration::from_secs(10)).await;
    assert!(reply.head.starts_with("HTTP/1.1 200"), "{}", reply.head);
    drop(held);
    drop(waiting);
    let text = svc.get_anonymous("/metrics").await.text();
    assert!(metric(&text, "http_connections_at_cap_total", &[]) >= 1.0);
    assert!(
        svc.api_log()
            .contains("server.max_connections reached: new connections wait until one closes"),
        "{}",
        svc.api_log()
    );
}

// 4. `bits_path` was taken from anyone.

#[tokio::test]
async fn bits_path_is_honoured_only_with_the_proxy_secret() {
    let outside = tempfile::tempdir().unwrap();
    let root = outside.path().join("uploads");
    std::fs::create_dir_all(&root).unwrap();
    let secret = "proxy-secret-0123456789";
    let svc = Service::start_with(
        Options::default()
            .with("upload.bits_path_root", root.display())
            .with("upload.proxy_secret", secret),
    )
    .await;
    // Someone else's upload, stored by the proxy under a guessable name.
    let victim = zips::small_app("someone else's");
    let stored = root.join("0000000001");
    std::fs::write(&stored, &victim).unwrap();

    // A developer of another space, on a package of their own.
    let ctx = svc.ctx().await;
    let developer = uuid::Uuid::new_v4().to_string();
    svc.grant(&developer, "space_developer", &ctx.space).await;
    let token = svc.token(&developer, packages_tests::READ_WRITE);
    let guid = svc.create_package(&ctx.app, &token).await["guid"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("{}/v3/packages/{guid}/upload", svc.base);
    let body = format!("bits_name=a.zip&bits_path={}", stored.display());
    for header in [None, Some("wrong-secret-0123456789"), Some("")] {
        let mut request = svc
            .http
            .post(&path)
            .bearer_auth(&token)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.clone());
        if let Some(header) = header {
            request = request.header("X-Upload-Proxy-Secret", header);
        }
        svc.send(request).await.assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "Bits path is invalid",
        );
        assert_eq!(
            std::fs::read(&stored).unwrap(),
            victim,
            "the file is left alone"
        );
    }
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");

    // The proxy itself (it knows the secret) gets its upload through.
    let r = svc
        .send(
            svc.http
                .post(&path)
                .bearer_auth(&token)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("X-Upload-Proxy-Secret", secret)
                .body(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(svc.wait_final(&guid).await["state"], "READY");
    assert!(!stored.exists());
}

// 5. Unbounded fields.

#[tokio::test]
async fn free_text_fields_are_bounded() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let path = format!("/v3/apps/{}/packages", ctx.app);
    let longest = format!("docker://{}", "a".repeat(2048 - 9));
    let r = svc
        .post(&path, &admin, &json!({"type": "docker", "url": longest}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    svc.post(
        &path,
        &admin,
        &json!({"type": "docker", "url": format!("{longest}a")}),
    )
    .await
    .assert_error(
        422,
        10008,
        "UnprocessableEntity",
        "Url is too long (maximum is 2048 characters)",
    );
    svc.post(
        "/v3/apps",
        &admin,
        &json!({"name": "n".repeat(256), "relationships": {"space": {"data": {"guid": ctx.space}}}}),
    )
    .await
    .assert_error(
        422,
        10008,
        "UnprocessableEntity",
        "Name is too long (maximum is 255 characters)",
    );
    // A JSON body over the small-body limit is refused without being read whole.
    let huge = vec![b' '; 2 << 20];
    let r = svc.post_raw(&path, &admin, "application/json", huge).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error_code"], "CF-MessageParseError");
    // So a page of the largest packages stays small (GA shows the image twice: `url` and
    // `data.image`).
    for _ in 0..20 {
        svc.post(&path, &admin, &json!({"type": "docker", "url": longest}))
            .await;
    }
    let page = svc.get("/v3/packages?per_page=5000", &admin).await;
    assert_eq!(page.status, 200);
    assert!(page.body.len() < 21 * 2 * 4096, "{} bytes", page.body.len());
}

#[tokio::test]
async fn a_page_of_packages_with_the_largest_metadata_is_streamed_in_bounded_memory() {
    let svc = Service::start().await;
    let admin = svc.admin();
    let ctx = svc.ctx().await;
    // 200 annotations of 5,000 characters: the most Cloud Controller's rules allow, about
    // 1 MB per package.
    let annotations: serde_json::Map<String, serde_json::Value> = (0..200)
        .map(|i| (format!("note-{i}"), json!("a".repeat(5000))))
        .collect();
    let body = json!({
        "type": "bits",
        "relationships": {"app": {"data": {"guid": ctx.app}}},
        "metadata": {"annotations": annotations},
    });
    const PACKAGES: usize = 60;
    for _ in 0..PACKAGES {
        let r = svc.post("/v3/packages", &admin, &body).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let before = peak_rss(svc.api_pid());
    let page = svc.get("/v3/packages?per_page=5000", &admin).await;
    assert_eq!(page.status, 200);
    let page = page.json();
    let resources = page["resources"].as_array().unwrap();
    assert_eq!(resources.len(), PACKAGES);
    assert_eq!(
        resources[PACKAGES - 1]["metadata"]["annotations"]["note-199"]
            .as_str()
            .map(str::len),
        Some(5000)
    );
    // A 60 MB body, rendered ten packages at a time: the process grows by a chunk's
    // worth, not by the page's.
    let grown = peak_rss(svc.api_pid()).saturating_sub(before);
    println!(
        "listing {PACKAGES} packages of ~1 MB metadata grew peak RSS by {} MiB",
        grown >> 20
    );
    assert!(grown < 40 << 20, "peak RSS grew by {} MiB", grown >> 20);
}

// 6. Job rows leaked.

#[tokio::test]
async fn deleting_a_package_before_its_job_runs_removes_the_job() {
    let mut svc = Service::start_with(Options {
        defer_start: true,
        ..Options::default()
    })
    .await;
    // Jobs stall in the runner, so the upload's job is recorded but never done.
    let stall = [("FAILPOINTS", "worker-job-stall=return")];
    svc.start_with_job_env(&stall).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let admin = svc.admin();
    assert_eq!(
        svc.upload(&guid, &admin, zips::small_app("never processed"))
            .await
            .status,
        200
    );
    assert_eq!(svc.job_kinds(&guid), ["process_upload"]);
    assert_eq!(
        svc.delete(&format!("/v3/packages/{guid}"), &admin)
            .await
            .status,
        204
    );
    // In the same transaction the upload's job became the deletion of the bits.
    assert_eq!(svc.job_kinds(&guid), ["delete_bits"]);

    // The runner restarts without the stall: the in-process queue republishes what is
    // recorded, and only the deletion runs.
    match svc.mode {
        Mode::Embedded => {
            svc.kill_api();
            svc.start_api(&[]).await;
        }
        Mode::Stack => {
            svc.kill_worker(0);
            svc.start_worker().await;
        }
    }
    svc.wait_until(Duration::from_secs(30), || svc.job_kinds(&guid).is_empty())
        .await;
    let logs = format!("{}{}", svc.api_log(), svc.worker_logs());
    let after_restart = logs.rsplit("open-files limit").next().unwrap_or_default();
    // A broker may still hand the message that was in flight to the new worker once; it
    // finds nothing to do. Nothing republishes it from the database.
    let upload_lines: Vec<&str> = after_restart
        .lines()
        .filter(|l| l.contains(&guid) && l.contains("kind=\"process_upload\""))
        .collect();
    assert!(
        upload_lines
            .iter()
            .all(|l| l.contains("job ignored why=\"package deleted\"")),
        "the deleted package's upload job ran again:\n{after_restart}"
    );
    if svc.mode == Mode::Embedded {
        assert!(upload_lines.is_empty(), "{upload_lines:?}");
    }
}

// 7. Local header names were not compared with the central directory.

#[tokio::test]
async fn a_local_header_that_contradicts_the_central_directory_fails_the_package() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let zip = zips::zip(&[
        Entry::file("index.html", b"hello"),
        Entry {
            local_name: Some("../../pwned.txt".into()),
            ..Entry::file("safe/pwned.txt1", b"owned")
        },
    ]);
    let guid = svc.new_package(&ctx.app).await;
    assert_eq!(svc.upload(&guid, &svc.admin(), zip).await.status, 200);
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "FAILED", "{p}");
    let error = p["data"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("The zip provided was not valid: entry '../../pwned.txt'")
            && error.ends_with("(name)"),
        "{error}"
    );
    assert!(!svc.bits_exist(&guid).await, "no bits kept for it");
    assert!(svc.staged_blobs().await.is_empty());
}

// 8. Presigned URLs leaked into logs and package errors.

// 9. Links from request headers.

#[tokio::test]
async fn forwarded_headers_cannot_make_links_with_other_schemes() {
    let svc = Service::start().await;
    let fallback = format!("http://127.0.0.1:{}/v3", svc.api_port);
    for (name, value) in [
        ("Forwarded", "proto=javascript;host=evil.example"),
        ("X-Forwarded-Proto", "javascript"),
        ("X-Forwarded-Host", "evil.example/x?"),
        ("Forwarded", "host=\"a b\""),
    ] {
        let r = svc
            .send(svc.http.get(format!("{}/v3", svc.base)).header(name, value))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["links"]["self"]["href"],
            fallback,
            "{name}: {value}"
        );
    }
    // A plain forwarded https origin is still honoured.
    let r = svc
        .send(
            svc.http
                .get(format!("{}/v3", svc.base))
                .header("Forwarded", "proto=https;host=api.example.org"),
        )
        .await;
    assert_eq!(
        r.json()["links"]["self"]["href"],
        "https://api.example.org/v3"
    );
}

// 10. Other multipart parts were unbounded.

#[tokio::test]
async fn junk_form_parts_are_refused_without_being_read_in_full() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let head = raw::multipart_head(
        &guid,
        &svc.admin(),
        "XBOUNDARY",
        "Transfer-Encoding: chunked\r\n",
    );
    let mut stream = raw::connect(svc.api_port).await;
    send(&mut stream, head.as_bytes()).await;
    let part = b"--XBOUNDARY\r\nContent-Disposition: form-data; name=\"junk\"\r\n\r\n";
    send(&mut stream, format!("{:x}\r\n", part.len()).as_bytes()).await;
    send(&mut stream, part).await;
    send(&mut stream, b"\r\n").await;
    // Up to 64 MiB of junk, a chunk at a time, until the server answers.
    let chunk = vec![b'j'; 64 * 1024];
    let mut sent = 0usize;
    let mut peek = [0u8; 1];
    while sent < 64 << 20 {
        let answered = matches!(
            tokio::time::timeout(Duration::from_millis(2), stream.peek(&mut peek)).await,
            Ok(Ok(n)) if n > 0
        );
        if answered {
            break;
        }
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        if tokio::io::AsyncWriteExt::write_all(&mut stream, &framed)
            .await
            .is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    assert!(
        sent < 16 << 20,
        "the server read {} MiB of junk before answering",
        sent >> 20
    );
    let reply = read_reply(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        reply.json()["errors"][0]["detail"],
        "Unknown field(s): 'junk', Upload must include either resources or bits"
    );
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
}

/// Found by fuzzing the form reader: a form sent whole but cut short after a part's data
/// left the request waiting for ever (the multipart parser waited for bytes that could not
/// come). It is answered at once now, long before any idle timeout.
#[tokio::test]
async fn a_form_cut_short_is_answered_not_held() {
    let svc =
        Service::start_with(Options::default().with("server.body_idle_timeout_secs", 600)).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let body =
        b"--XBOUNDARY\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"a.zip\"\r\n\r\nabc\r\n";
    let reply = raw_upload(&svc, &guid, "XBOUNDARY", body).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        reply.json()["errors"][0]["detail"],
        "Request invalid due to parse error: the upload could not be read: Multipart stream is incomplete"
    );
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    assert!(svc.staged_blobs().await.is_empty());
}

/// Found by fuzzing the form reader: with a boundary of two characters, a short line made
/// the multipart parser slice out of bounds (a panic in the request's task). Such
/// boundaries are refused before parsing.
#[tokio::test]
async fn a_tiny_multipart_boundary_is_refused_before_parsing() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let reply = raw_upload(&svc, &guid, "XB", b"--XB\rx\n\n--\n").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        reply.json()["errors"][0]["detail"],
        "Request invalid due to parse error: the upload could not be read: the multipart boundary must have 4 to 70 characters"
    );
    assert!(!svc.api_log().contains("panicked"), "{}", svc.api_log());
    // A client's usual long random boundary works as ever.
    let r = svc.upload(&guid, &svc.admin(), zips::small_app("ok")).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

// 11. Shutdown cut uploads at 30 s and left temporary files.

#[tokio::test]
async fn sigterm_lets_an_upload_in_flight_finish() {
    let mut svc =
        Service::start_with(Options::default().with("server.shutdown_timeout_secs", 60)).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let zip = zips::small_app("in flight at shutdown");
    let body = bits_form(&zip);
    let head = raw::multipart_head(
        &guid,
        &svc.admin(),
        "XBOUNDARY",
        &format!("Content-Length: {}\r\n", body.len()),
    );
    let before = metric(&svc.metrics().await, "upload_bytes_total", &[]);
    let mut stream = raw::connect(svc.api_port).await;
    send(&mut stream, head.as_bytes()).await;
    let (first, rest) = body.split_at(body.len() / 2);
    send(&mut stream, first).await;
    wait_for_upload_bytes(&svc, before).await;
    // Stop is asked for while the body is half sent; the rest arrives after.
    let pid = svc.api_pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    svc.wait_until(Duration::from_secs(10), || {
        svc.api_log().contains("shutting down")
    })
    .await;
    send(&mut stream, rest).await;
    let reply = read_reply(&mut stream, Duration::from_secs(30)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    drop(stream);
    assert!(svc.wait_api_exit(Duration::from_secs(60)));
    assert!(svc.api_log().contains("stopped"));
}

// 12. Concurrent uploads to one package all stored their bits.

#[tokio::test]
async fn concurrent_uploads_to_one_package_store_one_body() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let admin = svc.admin();
    let zip = zips::zip(&[Entry::file("big.bin", &vec![9u8; 2 << 20])]);
    let body = bits_form(&zip);
    let head = raw::multipart_head(
        &guid,
        &admin,
        "XBOUNDARY",
        &format!("Content-Length: {}\r\n", body.len()),
    );
    let before = metric(&svc.metrics().await, "upload_bytes_total", &[]);

    // The first upload is under way: its bits are arriving.
    let mut first = raw::connect(svc.api_port).await;
    send(&mut first, head.as_bytes()).await;
    let (start, rest) = body.split_at(body.len() / 2);
    send(&mut first, start).await;
    wait_for_upload_bytes(&svc, before).await;

    // Others arrive meanwhile, possibly from other API processes: each is refused before
    // a byte of its body is read (they send none, and are answered all the same).
    for _ in 0..10 {
        let mut other = raw::connect(svc.api_port).await;
        send(&mut other, head.as_bytes()).await;
        let reply = read_reply(&mut other, Duration::from_secs(20)).await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        let v = reply.json();
        assert_eq!(v["error_code"], "CF-PackageBitsAlreadyUploaded");
    }
    send(&mut first, rest).await;
    let reply = read_reply(&mut first, Duration::from_secs(30)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let received = metric(&svc.metrics().await, "upload_bytes_total", &[]) - before;
    assert_eq!(
        received,
        zip.len() as f64,
        "only the admitted upload's bits were read"
    );
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["data"]["hash"]["value"], zips::sha1_hex(&zip));
}

// 13. /readyz did a query and a write per call, without a token.

#[tokio::test]
async fn readyz_is_cached_and_names_no_paths_or_hosts() {
    let svc = Service::start().await;
    let checks = |text: &str| metric(text, "readiness_checks_total", &[]);
    let before = checks(&svc.get_anonymous("/metrics").await.text());
    let started = std::time::Instant::now();
    for _ in 0..100 {
        assert_eq!(svc.get_anonymous("/readyz").await.status, 200);
    }
    let rounds = checks(&svc.get_anonymous("/metrics").await.text()) - before;
    // One round a second at most (plus the periodic gauge refresh).
    let allowed = started.elapsed().as_secs_f64().ceil() + 2.0;
    assert!(rounds <= allowed, "{rounds} rounds for 100 calls");

    if svc.mode == Mode::Embedded {
        // The blob root replaced by a file: not ready, and the answer says only which.
        let root = svc.blob_root();
        let aside = svc.dir.path().join("blobs-aside");
        std::fs::rename(&root, &aside).unwrap();
        std::fs::write(&root, b"not a directory").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let r = loop {
            let r = svc.get_anonymous("/readyz").await;
            if r.status == 503 {
                break r;
            }
            assert!(std::time::Instant::now() < deadline, "still ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let v = r.json();
        assert_eq!(v["checks"]["blobstore"], "unavailable", "{v}");
        assert!(!r.text().contains('/'), "{}", r.text());
        std::fs::remove_file(&root).unwrap();
        std::fs::rename(&aside, &root).unwrap();
    }
}

// 14. A 1-character HS256 secret was accepted: see crates/packages/tests/cli.rs
// (`short_secrets_stop_start_up`), which starts the binaries themselves.

// 15. Files were world-readable.

// 16. An alert that could not fire.

#[tokio::test]
async fn a_stalled_job_raises_the_pending_age_gauge() {
    let svc = Service::start_with(Options {
        worker_env: vec![("FAILPOINTS".into(), "worker-job-stall=return".into())],
        ..Options::default()
    })
    .await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    assert_eq!(
        svc.upload(&guid, &svc.admin(), zips::small_app("stalled"))
            .await
            .status,
        200
    );
    let mut age = 0.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while age < 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "packages_pending_oldest_seconds stayed at {age}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        age = metric(&svc.metrics().await, "packages_pending_oldest_seconds", &[]);
    }
    assert_eq!(svc.package(&guid).await["state"], "PROCESSING_UPLOAD");
}
