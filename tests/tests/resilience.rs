//! Crashes, outages, shutdown and scale-out: every acknowledged upload ends READY or
//! FAILED, and the service recovers by itself.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use packages_tests::zips;
use packages_tests::{Mode, Options, Service, metric};

#[tokio::test]
async fn a_committed_upload_survives_a_crash_before_its_job_is_published() {
    let mut svc = Service::start_with(Options {
        defer_start: true,
        ..Options::default()
    })
    .await;
    // The crash point aborts the process right after the upload's transaction commits
    // and before the job reaches the queue.
    svc.start_api(&[("FAILPOINTS", "upload-accepted-before-publish=return")])
        .await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    let zip = zips::small_app("survivor");
    let form = reqwest::multipart::Form::new().part(
        "bits",
        reqwest::multipart::Part::bytes(zip.clone()).file_name("package.zip"),
    );
    let sent = svc
        .http
        .post(format!("{}/v3/packages/{guid}/upload", svc.base))
        .bearer_auth(svc.admin())
        .multipart(form)
        .send()
        .await;
    assert!(sent.is_err(), "the process died before answering");
    assert!(
        svc.wait_api_exit(Duration::from_secs(10)),
        "the crash point did not fire"
    );

    // Restarted without the crash point (and, on the stack, with a worker only now).
    svc.start_api(&[]).await;
    let state = svc.package(&guid).await["state"].clone();
    match svc.mode {
        // No worker runs yet: the job waits in the outbox.
        Mode::Stack => assert_eq!(state, "PROCESSING_UPLOAD", "the acceptance was committed"),
        // The restarted process already picked the job up from the outbox.
        Mode::Embedded => assert!(state == "PROCESSING_UPLOAD" || state == "READY", "{state}"),
    }
    if svc.mode == Mode::Stack {
        svc.start_worker().await;
    }
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "READY", "{p}");
    assert_eq!(p["data"]["hash"]["value"], zips::sha1_hex(&zip));
}

#[tokio::test]
async fn a_job_killed_mid_way_is_finished_after_restart() {
    let mut svc = Service::start_with(Options {
        workers: 1,
        ..Options::default()
    })
    .await;
    let ctx = svc.ctx().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.zip");
    let sha1 = zips::write_large_zip(&path, 96 << 20);
    let guid = svc.new_package(&ctx.app).await;
    let r = svc.upload_file(&guid, &svc.admin(), &path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Kill whatever runs the job while it moves the bits.
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
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "READY", "{p}");
    assert_eq!(p["data"]["hash"]["value"], sha1);
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let mut svc = Service::start().await;
    let ctx = svc.ctx().await;
    let p = svc
        .upload_and_wait(&ctx.app, zips::small_app("before shutdown"))
        .await;
    assert_eq!(p["state"], "READY");
    assert_eq!(
        svc.terminate_api(Duration::from_secs(30)),
        Some(0),
        "{}",
        svc.logs()
    );
    assert!(svc.api_log().contains("stopped"), "{}", svc.api_log());
}

#[tokio::test]
async fn sigterm_finishes_the_job_in_hand_before_exiting() {
    let mut svc = Service::start_with(Options {
        workers: 1,
        ..Options::default()
    })
    .await;
    let ctx = svc.ctx().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.zip");
    let sha1 = zips::write_large_zip(&path, 96 << 20);
    let guid = svc.new_package(&ctx.app).await;
    assert_eq!(
        svc.upload_file(&guid, &svc.admin(), &path).await.status,
        200
    );
    // Give the worker a moment to take the job, then ask whatever runs it to stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, log) = match svc.mode {
        Mode::Embedded => {
            let code = svc.terminate_api(Duration::from_secs(120));
            svc.start_api(&[]).await;
            (code, svc.api_log())
        }
        Mode::Stack => {
            let code = svc.terminate_worker(0, Duration::from_secs(120));
            (code, svc.worker_logs())
        }
    };
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("finishing the jobs in hand jobs=1"), "{log}");
    assert!(
        log.contains("package READY"),
        "the job in hand was finished before exiting\n{log}"
    );
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "READY");
    assert_eq!(p["data"]["hash"]["value"], sha1);
}

#[tokio::test]
async fn many_uploads_at_once_all_end_ready_once() {
    let svc = Service::start_with(Options {
        workers: 2,
        ..Options::default()
    })
    .await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let mut guids = Vec::new();
    for _ in 0..50 {
        guids.push(svc.new_package(&ctx.app).await);
    }
    let zips: Vec<Vec<u8>> = (0..50)
        .map(|i| zips::small_app(&format!("app {i}")))
        .collect();
    let uploads = guids
        .iter()
        .zip(&zips)
        .map(|(guid, zip)| svc.upload(guid, &admin, zip.clone()));
    for r in futures_util::future::join_all(uploads).await {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for (guid, zip) in guids.iter().zip(&zips) {
        let p = svc.wait_final(guid).await;
        // Only the newest 5 stay READY (expiry); the rest expired after being READY.
        let state = p["state"].as_str().unwrap();
        assert!(state == "READY" || state == "EXPIRED", "{p}");
        if state == "READY" {
            assert_eq!(p["data"]["hash"]["value"], zips::sha1_hex(zip));
        }
    }
    let metrics = svc.metrics().await;
    let succeeded = metric(
        &metrics,
        "jobs_total",
        &[("kind", "process_upload"), ("outcome", "succeeded")],
    );
    assert_eq!(succeeded, 50.0, "every package was made READY exactly once");
    if svc.mode == Mode::Stack {
        for port in svc.worker_ports() {
            let text = svc
                .http
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let done = metric(
                &text,
                "jobs_total",
                &[("kind", "process_upload"), ("outcome", "succeeded")],
            );
            assert!(done > 0.0, "worker on {port} did no job");
        }
    }
}

#[tokio::test]
async fn broker_outage_keeps_uploads_and_publishes_them_later() {
    if packages_tests::mode() == Mode::Embedded {
        // The in-process queue cannot be down; the outbox path is covered above.
        return;
    }
    let svc = Service::start_with(Options {
        broker_proxy: true,
        ..Options::default()
    })
    .await;
    let ctx = svc.ctx().await;
    let proxy = svc.broker_proxy.as_ref().unwrap();
    proxy.cut();
    // Readiness names the broker.
    let started = Instant::now();
    loop {
        let r = svc.get_anonymous("/readyz").await;
        if r.status == 503 {
            assert!(
                r.json()["checks"]["queue"]
                    .as_str()
                    .unwrap()
                    .starts_with("unavailable")
            );
            assert_eq!(r.json()["checks"]["database"], "ok");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "readyz never noticed the broker outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Uploads in the gap are kept (outbox) and acknowledged.
    let guid = svc.new_package(&ctx.app).await;
    let zip = zips::small_app("during the outage");
    assert_eq!(
        svc.upload(&guid, &svc.admin(), zip.clone()).await.status,
        200
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(svc.package(&guid).await["state"], "PROCESSING_UPLOAD");

    proxy.heal();
    let p = svc.wait_final_for(&guid, Duration::from_secs(60)).await;
    assert_eq!(p["state"], "READY", "{p}");
    // The worker consumes again without a restart.
    let later = svc
        .upload_and_wait(&ctx.app, zips::small_app("after"))
        .await;
    assert_eq!(later["state"], "READY");
    assert_eq!(svc.get_anonymous("/readyz").await.status, 200);
    assert_eq!(p["data"]["hash"]["value"], zips::sha1_hex(&zip));
}

#[tokio::test]
async fn database_outage_answers_503_then_recovers() {
    if packages_tests::mode() == Mode::Embedded {
        // SQLite is a file in the process: it cannot be briefly unreachable.
        return;
    }
    let svc = Service::start_with(Options {
        database_proxy: true,
        ..Options::default()
    })
    .await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    svc.database_proxy.as_ref().unwrap().cut();
    let r = svc.get("/v3/packages", &admin).await;
    r.assert_error(
        503,
        10015,
        "ServiceUnavailable",
        "Database connection failure",
    );
    // Readiness answers are cached for a second: wait for a round after the cut.
    let started = Instant::now();
    let r = loop {
        let r = svc.get_anonymous("/readyz").await;
        if r.status == 503 {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r.json()["checks"]["database"], "unavailable");

    svc.database_proxy.as_ref().unwrap().heal();
    let started = Instant::now();
    loop {
        let r = svc.get("/v3/packages", &admin).await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no recovery: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let p = svc
        .upload_and_wait(&ctx.app, zips::small_app("after the outage"))
        .await;
    assert_eq!(p["state"], "READY");
}

#[tokio::test]
async fn messages_of_an_unknown_version_are_dead_lettered() {
    if packages_tests::mode() == Mode::Embedded {
        // Nothing outside the process can put a message on the in-process queue; the
        // worker's own tests cover it there.
        return;
    }
    use packages_jobs::{AmqpQueue, AmqpSettings, JobConsumer, JobPublisher};
    let svc = Service::start().await;
    let queue = AmqpQueue::connect(AmqpSettings {
        url: svc.amqp_url.clone().unwrap(),
        prefix: svc.prefix.clone(),
        prefetch: 1,
        delivery_limit: 5,
    })
    .await
    .unwrap();
    let future = serde_json::json!({"version": 2, "job_id": uuid::Uuid::new_v4(), "package_guid": "x", "request_id": "r", "kind": "teleport", "args": {}});
    queue
        .publish(serde_json::to_vec(&future).unwrap())
        .await
        .unwrap();
    queue.publish(b"not json at all".to_vec()).await.unwrap();
    let started = Instant::now();
    loop {
        let depths = queue.depths().await.unwrap();
        if depths.dead == 2 && depths.ready == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{depths:?}\n{}",
            svc.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(svc.worker_logs().contains("version 2 is not supported"));
}
