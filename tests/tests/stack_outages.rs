//! Outages and message-level faults that only the production stack can have: a broker and
//! a database that go away (the embedded default's queue is in process and its SQLite a
//! file), messages put on the broker from outside, presigned S3 URLs. `make test` runs
//! this file on the stack only; it refuses to run elsewhere.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use packages_tests::{Mode, Options, Service, metric, zips};

#[tokio::test]
async fn broker_outage_keeps_uploads_and_publishes_them_later() {
    packages_tests::require(Mode::Stack);
    let svc = Service::start_with(Options {
        broker_proxy: true,
        ..Options::default()
    })
    .await;
    let ctx = svc.ctx().await;
    let proxy = svc.broker_proxy.as_ref().unwrap();
    proxy.cut();
    // Readiness names the broker, and the API stays ready: the outbox takes the jobs.
    let started = Instant::now();
    loop {
        let r = svc.get_anonymous("/readyz").await;
        if r.json()["checks"]["queue"] == "unavailable" {
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["status"], "ready");
            assert_eq!(r.json()["checks"]["database"], "ok");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "readyz never noticed the broker outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric(
            &svc.get_anonymous("/metrics").await.text(),
            "readiness_status",
            &[("component", "queue")]
        ),
        0.0
    );
    // Uploads in the gap are kept (outbox) and acknowledged.
    let guid = svc.new_package(&ctx.app).await;
    let zip = zips::small_app("during the outage");
    assert_eq!(
        svc.upload(&guid, &svc.admin(), zip.clone()).await.status,
        200
    );
    // Its job waits in the outbox: recorded, not published.
    let started = Instant::now();
    while metric(&svc.metrics().await, "jobs_outbox_pending", &[]) < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the outbox never showed the job"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    packages_tests::require(Mode::Stack);
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
    packages_tests::require(Mode::Stack);
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
    let future = serde_json::json!({"version": 3, "job_id": uuid::Uuid::new_v4(), "package_guid": "x", "request_id": "r", "kind": "teleport", "args": {}});
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
    assert!(svc.worker_logs().contains("version 3 is not supported"));
}

#[tokio::test]
async fn presigned_urls_never_reach_logs_or_package_errors() {
    packages_tests::require(Mode::Stack);
    // The worker pauses between the zip check and moving the bits (a presigned GET), so
    // the test can cut its S3 connection right there.
    let svc = Service::start_with(
        Options {
            worker_blobstore_proxy: true,
            worker_env: vec![("FAILPOINTS".into(), "worker-before-move=sleep(3000)".into())],
            ..Options::default()
        }
        .with("worker.max_attempts", 1),
    )
    .await;
    let ctx = svc.ctx().await;
    let guid = svc.new_package(&ctx.app).await;
    assert_eq!(
        svc.upload(&guid, &svc.admin(), zips::small_app("x"))
            .await
            .status,
        200
    );
    svc.wait_until(Duration::from_secs(30), || {
        svc.worker_logs().contains("zip checked")
    })
    .await;
    svc.blobstore_proxy.as_ref().unwrap().cut();
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "FAILED", "{p}");
    let error = p["data"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("Package processing failed after repeated infrastructure errors")
            && error.contains("http://127.0.0.1:"),
        "the failed request is named, by its URL without the query: {error}"
    );
    let logs = format!("{}{}", svc.api_log(), svc.worker_logs());
    for leak in ["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Date"] {
        assert!(!error.contains(leak), "{error}");
        assert!(!logs.contains(leak), "{leak} in the logs:\n{logs}");
    }
}
