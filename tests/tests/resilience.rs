//! Crashes, outages, shutdown and scale-out: every acknowledged upload ends READY or
//! FAILED, and the service recovers by itself.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

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

/// Starts the service with jobs held in hand after their zip check, for `hold` (a
/// failpoint in whatever runs the jobs), and waits until one upload's job is there.
async fn service_holding_a_job(hold: &str) -> (Service, String, String) {
    let mut svc = Service::start_with(Options {
        defer_start: true,
        ..Options::default()
    })
    .await;
    let failpoint = [("FAILPOINTS", hold)];
    svc.start_with_job_env(&failpoint).await;
    let ctx = svc.ctx().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.zip");
    let sha1 = zips::write_large_zip(&path, 32 << 20);
    let guid = svc.new_package(&ctx.app).await;
    let r = svc.upload_file(&guid, &svc.admin(), &path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    svc.wait_until(Duration::from_secs(60), || {
        format!("{}{}", svc.api_log(), svc.worker_logs()).contains("zip checked")
    })
    .await;
    (svc, guid, sha1)
}

#[tokio::test]
async fn a_job_killed_mid_way_is_finished_after_restart() {
    // The job is in hand (its zip checked, its bits not yet moved) when its process dies.
    let (mut svc, guid, sha1) = service_holding_a_job("worker-before-move=sleep(60000)").await;
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
    // The job is in hand, held a moment after its zip check, when the stop is asked for.
    let (mut svc, guid, sha1) = service_holding_a_job("worker-before-move=sleep(2000)").await;
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

/// With `worker.large_job_concurrency` at 1, a large upload waits its turn while another
/// large one is in hand, and small uploads go ahead of it: raising `worker.concurrency`
/// for many small packages does not let large ones run (and hold buffers) all at once.
#[tokio::test]
async fn large_jobs_take_turns_while_small_ones_go_ahead() {
    let mut svc = Service::start_with(
        Options {
            defer_start: true,
            ..Options::default()
        }
        .with("worker.concurrency", 4)
        .with("worker.large_job_concurrency", 1),
    )
    .await;
    // The first job past its zip check is held there for a minute; the others pass.
    let failpoint = [("FAILPOINTS", "worker-before-move=1*sleep(60000)")];
    svc.start_with_job_env(&failpoint).await;
    let ctx = svc.ctx().await;
    let dir = tempfile::tempdir().unwrap();
    let logs = |svc: &Service| format!("{}{}", svc.api_log(), svc.worker_logs());
    let mut large = Vec::new();
    for name in ["first.zip", "second.zip"] {
        let path = dir.path().join(name);
        zips::write_large_zip(&path, 9 << 20);
        let guid = svc.new_package(&ctx.app).await;
        let r = svc.upload_file(&guid, &svc.admin(), &path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        if large.is_empty() {
            // The first is in hand, held, before the second is even uploaded.
            svc.wait_until(Duration::from_secs(60), || {
                logs(&svc).contains("zip checked")
            })
            .await;
        }
        large.push(guid);
    }
    let mut small = Vec::new();
    for i in 0..3 {
        let guid = svc.new_package(&ctx.app).await;
        let r = svc
            .upload(&guid, &svc.admin(), zips::small_app(&format!("small {i}")))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        small.push(guid);
    }
    for guid in &small {
        assert_eq!(svc.wait_final(guid).await["state"], "READY");
    }
    // Queued before the small ones, the second large upload has not even been checked:
    // it waits for the first one's turn to end.
    let checked = |guid: &str| {
        logs(&svc)
            .lines()
            .any(|l| l.contains(guid) && l.contains("zip checked"))
    };
    assert!(checked(&large[0]));
    assert!(
        !checked(&large[1]),
        "the second large job ran alongside the first"
    );
    for guid in &large {
        assert_eq!(svc.package(guid).await["state"], "PROCESSING_UPLOAD");
    }
}
