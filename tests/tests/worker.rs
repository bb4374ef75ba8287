//! What the worker does with uploads: every outcome of the zip checks, hashing, expiry,
//! the pending-timeout sweep, and retries of infrastructure failures.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use packages_tests::zips::{self, Entry};
use packages_tests::{Mode, Options, Service, blob_key, metric};
use serde_json::Value;

const INVALID: &str = "The zip provided was not valid";
const TOO_LARGE: &str = "AppBitsPackage::ZipSizeExceeded";

#[tokio::test]
async fn cloud_controller_fixtures_end_as_its_readme_says() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    for name in [
        "good.zip",
        "express-app.zip",
        "good_relative_paths.zip",
        "special_character_names.zip",
        "many_dirs.zip",
        "broken-file-symlink.zip",
    ] {
        let zip = zips::fixture(name);
        let p = svc.upload_and_wait(&ctx.app, zip.clone()).await;
        assert_eq!(p["state"], "READY", "{name}: {p}");
        assert_eq!(p["data"]["hash"]["value"], zips::sha1_hex(&zip), "{name}");
        assert_eq!(
            p["data"]["checksum"]["value"],
            zips::sha256_hex(&zip),
            "{name}"
        );
    }
    for (name, error) in [("bad.zip", INVALID), ("empty.zip", INVALID)] {
        let p = svc.upload_and_wait(&ctx.app, zips::fixture(name)).await;
        assert_eq!(p["state"], "FAILED", "{name}");
        assert_eq!(p["data"]["error"], error, "{name}");
        assert_eq!(p["data"]["hash"]["value"], Value::Null);
    }
    let p = svc
        .upload_and_wait(&ctx.app, zips::fixture("bad_relative_paths.zip"))
        .await;
    assert_eq!(p["state"], "FAILED");
    let error = p["data"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(INVALID) && error.contains("../fakezip.zip"),
        "{error}"
    );
    // The staged uploads are gone whatever the outcome.
    assert_eq!(svc.staged_blobs().await, Vec::<String>::new());
}

#[tokio::test]
async fn zip_slip_and_unsafe_symlinks_fail() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let cases = [
        vec![Entry::file("../evil", b"x")],
        vec![Entry::file("/etc/evil", b"x")],
        vec![Entry::file("C:\\evil", b"x")],
        vec![Entry::file("a/../../evil", b"x")],
        vec![Entry::symlink("link", "/etc/passwd")],
        vec![Entry::symlink("a/link", "../../outside")],
        vec![
            Entry::symlink("a", "."),
            Entry::file("a/x", b"through a link"),
        ],
    ];
    for entries in cases {
        let p = svc.upload_and_wait(&ctx.app, zips::zip(&entries)).await;
        assert_eq!(p["state"], "FAILED", "{entries:?}");
        assert!(
            p["data"]["error"].as_str().unwrap().starts_with(INVALID),
            "{p}"
        );
    }
    let fine = zips::zip(&[
        Entry::file("bar/../cat", b"meow"),
        Entry::symlink("a/link", "../cat"),
    ]);
    assert_eq!(svc.upload_and_wait(&ctx.app, fine).await["state"], "READY");
}

#[tokio::test]
async fn zip_bombs_fail_from_their_central_directory_without_inflating() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    // Five entries each claiming almost 4 GiB, in a few hundred bytes (0xFFFFFFFF would
    // mean "see the Zip64 field").
    let entries: Vec<Entry> = (0..5)
        .map(|i| Entry {
            name: format!("bomb{i}"),
            data: b"tiny".to_vec(),
            claimed_size: Some(u32::MAX - 1),
            ..Entry::default()
        })
        .collect();
    let bomb = zips::zip(&entries);
    assert!(bomb.len() < 1000);
    let hashed = |text: &str| metric(text, "bits_hashed_bytes_total", &[]);
    let before = hashed(&svc.metrics().await);
    let guid = svc.new_package(&ctx.app).await;
    assert_eq!(svc.upload(&guid, &svc.admin(), bomb).await.status, 200);
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "FAILED");
    assert_eq!(p["data"]["error"], TOO_LARGE);
    // Refused from the sizes its entries claim: not a byte was read past the directory,
    // let alone inflated.
    assert_eq!(hashed(&svc.metrics().await), before);
}

#[tokio::test]
async fn packages_over_the_size_limit_fail() {
    let svc = Service::start_with(Options::default().with("packages.max_package_size", 1000)).await;
    let ctx = svc.ctx().await;
    let over = zips::zip(&[Entry::file("a", &[1u8; 600]), Entry::file("b", &[2u8; 600])]);
    let p = svc.upload_and_wait(&ctx.app, over).await;
    assert_eq!(p["state"], "FAILED");
    assert_eq!(p["data"]["error"], TOO_LARGE);
    let at_limit = zips::zip(&[Entry::file("a", &[1u8; 500]), Entry::file("b", &[2u8; 500])]);
    assert_eq!(
        svc.upload_and_wait(&ctx.app, at_limit).await["state"],
        "READY"
    );
    let metrics = svc.metrics().await;
    assert!(
        metric(
            &metrics,
            "packages_failed_total",
            &[("reason", "too_large")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn older_ready_packages_expire_and_lose_their_bits() {
    let svc =
        Service::start_with(Options::default().with("packages.max_valid_packages_stored", 2)).await;
    let ctx = svc.ctx().await;
    let mut ready = Vec::new();
    for i in 0..3 {
        let p = svc
            .upload_and_wait(&ctx.app, zips::small_app(&format!("release {i}")))
            .await;
        assert_eq!(p["state"], "READY");
        ready.push(p["guid"].as_str().unwrap().to_owned());
        // Expiry orders by creation time in whole seconds, then by creation order.
    }
    let started = Instant::now();
    let oldest = loop {
        let p = svc.package(&ready[0]).await;
        if p["state"] == "EXPIRED" || started.elapsed() > Duration::from_secs(30) {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(oldest["state"], "EXPIRED", "{oldest}");
    assert_eq!(oldest["data"]["hash"]["value"], Value::Null);
    assert_eq!(oldest["data"]["checksum"]["value"], Value::Null);
    for guid in &ready[1..] {
        assert_eq!(svc.package(guid).await["state"], "READY");
    }
    while svc.bits_exist(&ready[0]).await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "expired bits still stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(svc.bits_exist(&ready[2]).await);
    svc.get(&format!("/v3/packages/{}/download", ready[0]), &svc.admin())
        .await
        .assert_error(
            422,
            10008,
            "UnprocessableEntity",
            "Package has no bits to download.",
        );
}

#[tokio::test]
async fn stuck_packages_are_redriven_then_failed() {
    let options = Options {
        worker_env: vec![("FAILPOINTS".into(), "worker-job-stall=return".into())],
        ..Options::default()
    }
    .with("packages.pending_timeout_secs", 1)
    .with("worker.max_attempts", 2);
    let svc = Service::start_with(options).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    assert_eq!(
        svc.upload(&guid, &svc.admin(), zips::small_app("stuck"))
            .await
            .status,
        200
    );
    let p = svc.wait_final_for(&guid, Duration::from_secs(30)).await;
    assert_eq!(p["state"], "FAILED");
    let error = p["data"]["error"].as_str().unwrap();
    assert!(
        error.contains("timed out") && error.contains("after 1 seconds"),
        "{error}"
    );
    let logs = format!("{}{}", svc.api_log(), svc.worker_logs());
    assert!(
        logs.contains("job published again"),
        "the job was re-driven before the package failed"
    );
    let metrics = svc.metrics().await;
    assert!(
        metric(
            &metrics,
            "packages_failed_total",
            &[("reason", "timed_out")]
        ) >= 1.0
    );
}

/// Makes the worker's blobstore fail for this package: a file where its key's directory
/// must go (local store), or the worker's S3 connection cut (stack).
fn break_worker_blobstore(svc: &Service, guid: &str) {
    match svc.mode {
        Mode::Embedded => {
            let key = blob_key(guid);
            let root = svc.blob_root();
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join(&key[..2]), b"in the way").unwrap();
        }
        Mode::Stack => svc.blobstore_proxy.as_ref().unwrap().cut(),
    }
}

#[tokio::test]
async fn infrastructure_failures_are_retried_then_dead_lettered() {
    let options = Options {
        worker_blobstore_proxy: true,
        ..Options::default()
    }
    .with("worker.max_attempts", 3)
    .with("worker.retry_base_ms", 50);
    let svc = Service::start_with(options).await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    break_worker_blobstore(&svc, &guid);
    assert_eq!(
        svc.upload(&guid, &svc.admin(), zips::small_app("unlucky"))
            .await
            .status,
        200
    );
    let p = svc.wait_final_for(&guid, Duration::from_secs(60)).await;
    assert_eq!(p["state"], "FAILED", "{p}");
    let error = p["data"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("Package processing failed after repeated infrastructure errors"),
        "{error}"
    );

    // Retried with backoff, then dead-lettered; the gauge follows within its refresh.
    let started = Instant::now();
    loop {
        let metrics = svc.metrics().await;
        let retried = metric(
            &metrics,
            "jobs_total",
            &[("kind", "process_upload"), ("outcome", "retried")],
        );
        let dead = metric(
            &metrics,
            "jobs_total",
            &[("kind", "process_upload"), ("outcome", "dead_lettered")],
        );
        let depth = metric(&metrics, "jobs_dead_letter_depth", &[]);
        if retried >= 2.0 && dead >= 1.0 && depth >= 1.0 {
            assert!(
                metric(
                    &metrics,
                    "packages_failed_total",
                    &[("reason", "infrastructure")]
                ) >= 1.0
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "retried {retried}, dead {dead}, depth {depth}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn metrics_carry_the_contract_names() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let p = svc
        .upload_and_wait(&ctx.app, zips::small_app("metrics"))
        .await;
    let guid = p["guid"].as_str().unwrap();
    let metrics = svc.metrics().await;
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "packages_uploads_total",
        "upload_bytes_total",
        "jobs_total",
        "job_duration_seconds_bucket",
        "bits_hashed_bytes_total",
        "jobs_in_flight",
        "packages_failed_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing"
        );
    }
    assert!(
        metric(
            &metrics,
            "packages_uploads_total",
            &[("outcome", "accepted")]
        ) >= 1.0
    );
    assert!(
        metric(
            &metrics,
            "jobs_total",
            &[("kind", "process_upload"), ("outcome", "succeeded")]
        ) >= 1.0
    );
    assert!(metric(&metrics, "bits_hashed_bytes_total", &[]) >= 100.0);
    assert!(
        metric(
            &metrics,
            "http_requests_total",
            &[("route", "/v3/packages/{guid}"), ("status", "200")]
        ) >= 1.0
    );
    // The operator endpoints are labelled by their paths too (the start waited on one).
    assert!(
        metric(
            &metrics,
            "http_requests_total",
            &[("route", "/readyz"), ("status", "200")]
        ) >= 1.0,
        "{metrics}"
    );
    assert!(!metrics.contains(guid), "raw paths never become labels");
}

#[tokio::test]
async fn expiry_is_per_app_skips_failed_packages_and_follows_copies() {
    let svc =
        Service::start_with(Options::default().with("packages.max_valid_packages_stored", 2)).await;
    let ctx = svc.ctx().await;
    let other_app = svc.create_app(&ctx.space, "other").await;
    let upload = |app: String, zip: Vec<u8>| {
        let svc = &svc;
        async move {
            let p = svc.upload_and_wait(&app, zip).await;
            p["guid"].as_str().unwrap().to_owned()
        }
    };
    let state = |guid: String| {
        let svc = &svc;
        async move { svc.package(&guid).await["state"].clone() }
    };

    // The other app is at its limit.
    let b1 = upload(other_app.clone(), zips::small_app("b1")).await;
    let b2 = upload(other_app.clone(), zips::small_app("b2")).await;
    // This app: READY, FAILED, READY.
    let a1 = upload(ctx.app.clone(), zips::small_app("a1")).await;
    let failed = upload(ctx.app.clone(), b"not a zip".to_vec()).await;
    assert_eq!(state(failed.clone()).await, "FAILED");
    let a2 = upload(ctx.app.clone(), zips::small_app("a2")).await;
    // Each successful upload's job (expiration included) has ended.
    wait_succeeded(&svc, "process_upload", 4.0).await;
    // Two READY packages: the FAILED one in between does not count, nothing expires.
    for guid in [&a1, &a2, &b1, &b2] {
        assert_eq!(state(guid.clone()).await, "READY", "{guid}");
    }

    let a3 = upload(ctx.app.clone(), zips::small_app("a3")).await;
    wait_state(&svc, &a1, "EXPIRED").await;
    wait_succeeded(&svc, "process_upload", 5.0).await;
    for guid in [&a2, &a3, &b1, &b2] {
        assert_eq!(state(guid.clone()).await, "READY", "{guid}");
    }
    // Older than both kept packages, and still not expired.
    assert_eq!(state(failed.clone()).await, "FAILED");

    // A copy that becomes READY expires the oldest of its own (target) app.
    let r = svc
        .post(
            &format!("/v3/apps/{other_app}/packages?source_package_guid={a3}"),
            &svc.admin(),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let copy = r.json()["guid"].as_str().unwrap().to_owned();
    assert_eq!(svc.wait_final(&copy).await["state"], "READY");
    wait_state(&svc, &b1, "EXPIRED").await;
    wait_succeeded(&svc, "copy_bits", 1.0).await;
    for guid in [&b2, &copy, &a2, &a3] {
        assert_eq!(state(guid.clone()).await, "READY", "{guid}");
    }
    assert_eq!(state(failed).await, "FAILED");
}

async fn wait_state(svc: &Service, guid: &str, state: &str) {
    let started = Instant::now();
    loop {
        let p = svc.package(guid).await;
        if p["state"] == state {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{guid} is {} rather than {state}\n{}",
            p["state"],
            svc.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `count` jobs of `kind` have succeeded (everything they do, expiry
/// included, is done).
async fn wait_succeeded(svc: &Service, kind: &str, count: f64) {
    let started = Instant::now();
    loop {
        let done = metric(
            &svc.metrics().await,
            "jobs_total",
            &[("kind", kind), ("outcome", "succeeded")],
        );
        if done >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{done} {kind} jobs succeeded, not {count}\n{}",
            svc.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_copy_whose_source_is_deleted_before_its_job_runs_fails() {
    let mut svc = Service::start().await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let other_app = svc.create_app(&ctx.space, "other").await;
    let source = svc
        .upload_and_wait(&ctx.app, zips::small_app("short-lived"))
        .await;
    assert_eq!(source["state"], "READY");
    let source_guid = source["guid"].as_str().unwrap().to_owned();

    // Jobs are held from here on.
    restart_job_runner(&mut svc, &[STALL]).await;
    let r = svc
        .post(
            &format!("/v3/apps/{other_app}/packages?source_package_guid={source_guid}"),
            &admin,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["state"], "COPYING");
    let copy = r.json()["guid"].as_str().unwrap().to_owned();
    assert_eq!(svc.job_kinds(&copy), ["copy_bits"]);
    assert_eq!(
        svc.delete(&format!("/v3/packages/{source_guid}"), &admin)
            .await
            .status,
        204
    );
    assert_eq!(svc.package(&copy).await["state"], "COPYING");

    // Jobs run again: the copy finds no source.
    restart_job_runner(&mut svc, &[]).await;
    let p = svc.wait_final_for(&copy, Duration::from_secs(60)).await;
    assert_eq!(p["state"], "FAILED", "{p}");
    assert_eq!(
        p["data"]["error"],
        "failed to copy - source package does not exist"
    );
    assert_eq!(p["data"]["hash"]["value"], Value::Null);
    assert!(!svc.bits_exist(&copy).await);
    svc.wait_until(Duration::from_secs(30), || svc.job_kinds(&copy).is_empty())
        .await;
}

#[tokio::test]
async fn stuck_copies_are_redriven_then_finished() {
    // Attempts to spare: the package must be re-driven, not failed, while it is held.
    let mut svc = Service::start_with(
        Options::default()
            .with("packages.pending_timeout_secs", 1)
            .with("worker.max_attempts", 50),
    )
    .await;
    let ctx = svc.ctx().await;
    let other_app = svc.create_app(&ctx.space, "other").await;
    let zip = zips::small_app("copy me when you can");
    let source = svc.upload_and_wait(&ctx.app, zip.clone()).await;
    assert_eq!(source["state"], "READY");
    let source_guid = source["guid"].as_str().unwrap();

    // The copy job hangs in its runner, and the package stays COPYING past the timeout.
    restart_job_runner(&mut svc, &[STALL]).await;
    let r = svc
        .post(
            &format!("/v3/apps/{other_app}/packages?source_package_guid={source_guid}"),
            &svc.admin(),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let copy = r.json()["guid"].as_str().unwrap().to_owned();
    // The sweep (in the process that runs jobs) publishes its job again.
    svc.wait_until(Duration::from_secs(60), || {
        format!("{}{}", svc.api_log(), svc.worker_logs())
            .lines()
            .any(|l| l.contains(&copy) && l.contains("package stuck pending; job published again"))
    })
    .await;
    assert_eq!(svc.package(&copy).await["state"], "COPYING");

    // A runner that does not hang finishes it.
    restart_job_runner(&mut svc, &[]).await;
    let p = svc.wait_final_for(&copy, Duration::from_secs(60)).await;
    assert_eq!(p["state"], "READY", "{p}");
    assert_eq!(p["data"]["hash"], source["data"]["hash"]);
    assert_eq!(p["data"]["error"], Value::Null);
    let (_, bytes) = svc.download(&copy, &svc.admin()).await;
    assert_eq!(bytes.as_deref(), Some(zip.as_slice()));
}

const STALL: (&str, &str) = ("FAILPOINTS", "worker-job-stall=return");

/// Replaces whatever runs jobs (embedded: the process; stack: its one worker) with one
/// started with `env`: with [`STALL`] jobs are taken and held, without it they run, and
/// what was held is run again.
async fn restart_job_runner(svc: &mut Service, env: &[(&str, &str)]) {
    match svc.mode {
        Mode::Embedded => {
            svc.kill_api();
            svc.start_api(env).await;
        }
        Mode::Stack => {
            svc.kill_worker(0);
            svc.start_worker_with(env).await;
        }
    }
}
