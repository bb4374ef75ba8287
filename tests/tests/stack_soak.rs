//! The fault soak: uploads on the production stack while workers are killed, the broker
//! and database connections are cut and an API process is restarted. Every acknowledged
//! upload must end READY or FAILED (none lost, none stuck), and no package may be
//! finished twice.
//!
//! `make soak` runs 200 uploads; `make test` a short version (`PACKAGES_SOAK_UPLOADS`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use packages_tests::{Mode, Options, Service, zips};
use tokio::sync::Mutex;

/// What the clients saw: acknowledged uploads (package guid → sha1 of the zip).
#[derive(Default)]
struct Ledger {
    acknowledged: BTreeMap<String, String>,
    refused: usize,
}

fn uploads_wanted() -> usize {
    std::env::var("PACKAGES_SOAK_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[tokio::test]
async fn uploads_survive_killed_workers_cut_connections_and_an_api_restart() {
    packages_tests::require(Mode::Stack);
    let wanted = uploads_wanted();
    let svc = Service::start_with(
        Options {
            workers: 2,
            broker_proxy: true,
            database_proxy: true,
            ..Options::default()
        }
        // Lost messages are re-driven quickly; transient errors get room to pass.
        .with("packages.pending_timeout_secs", 5)
        .with("worker.max_attempts", 20)
        .with("worker.retry_base_ms", 100)
        // Every package stays READY, so every hash can be compared.
        .with("packages.max_valid_packages_stored", 100_000),
    )
    .await;
    let svc = Arc::new(Mutex::new(svc));
    let (base, admin) = {
        let s = svc.lock().await;
        (s.base.clone(), s.admin())
    };
    let ctx = svc.lock().await.ctx().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    // Clients: each takes the next upload number until all were tried, at a pace that
    // spreads the uploads over many fault turns.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (http, base, admin, app) = (http.clone(), base.clone(), admin.clone(), ctx.app.clone());
        let (ledger, next) = (ledger.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= wanted {
                    return;
                }
                let zip = zips::small_app(&format!("soak upload {n}"));
                let sha1 = zips::sha1_hex(&zip);
                match upload_once(&http, &base, &admin, &app, zip).await {
                    Some(guid) => {
                        ledger.lock().await.acknowledged.insert(guid, sha1);
                    }
                    None => ledger.lock().await.refused += 1,
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }));
    }

    // Faults, in turns, until the clients are done.
    let faults = {
        let (svc, done) = (svc.clone(), done.clone());
        tokio::spawn(async move {
            let mut turn = 0usize;
            let mut api_restarted = false;
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let mut s = svc.lock().await;
                match turn % 4 {
                    0 => {
                        // SIGKILL a worker, start a new one.
                        if !s.worker_pids().is_empty() {
                            s.kill_worker(0);
                        }
                        s.start_worker().await;
                    }
                    1 => {
                        s.broker_proxy.as_ref().unwrap().cut();
                        drop(s);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        svc.lock().await.broker_proxy.as_ref().unwrap().heal();
                    }
                    2 => {
                        s.database_proxy.as_ref().unwrap().cut();
                        drop(s);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        svc.lock().await.database_proxy.as_ref().unwrap().heal();
                    }
                    _ if !api_restarted => {
                        s.kill_api();
                        s.start_api(&[]).await;
                        api_restarted = true;
                    }
                    _ => {}
                }
                turn += 1;
            }
            turn
        })
    };
    for client in clients {
        client.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let turns = faults.await.unwrap();

    // Everything healed: acknowledged uploads must all end, within a bounded time.
    let s = svc.lock().await;
    s.broker_proxy.as_ref().unwrap().heal();
    s.database_proxy.as_ref().unwrap().heal();
    let ledger = ledger.lock().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut states: BTreeMap<String, String> = BTreeMap::new();
    loop {
        states.clear();
        for guid in ledger.acknowledged.keys() {
            let r = s.get(&format!("/v3/packages/{guid}"), &admin).await;
            let state = if r.status == 200 {
                r.json()["state"].as_str().unwrap_or_default().to_owned()
            } else {
                format!("HTTP {}", r.status)
            };
            states.insert(guid.clone(), state);
        }
        let pending = states
            .values()
            .filter(|st| *st == "PROCESSING_UPLOAD" || *st == "AWAITING_UPLOAD")
            .count();
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let ready = states.values().filter(|st| *st == "READY").count();
    let failed = states.values().filter(|st| *st == "FAILED").count();
    let stuck = states
        .values()
        .filter(|st| *st == "PROCESSING_UPLOAD")
        .count();
    let lost = states.len() - ready - failed - stuck;
    let mut wrong_bits = 0;
    for (guid, sha1) in &ledger.acknowledged {
        if states[guid] == "READY" {
            let p = s.package(guid).await;
            if p["data"]["hash"]["value"] != sha1.as_str() {
                wrong_bits += 1;
            }
        }
    }
    // A package finished twice would log its final state twice.
    let logs = s.worker_logs();
    let duplicates = ledger
        .acknowledged
        .keys()
        .filter(|guid| {
            logs.lines()
                .filter(|l| {
                    l.contains(guid.as_str())
                        && (l.contains("package READY") || l.contains("package FAILED"))
                })
                .count()
                > 1
        })
        .count();
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for state in states.values() {
        *by_state.entry(state.as_str()).or_default() += 1;
    }
    eprintln!("final states: {by_state:?}");
    let report = format!(
        "soak: {wanted} uploads sent, {} acknowledged, {} refused during faults; \
         READY {ready}, FAILED {failed}, lost {lost}, stuck {stuck}, duplicates {duplicates}, \
         wrong bits {wrong_bits}; {turns} fault turns in {:.0} s",
        ledger.acknowledged.len(),
        ledger.refused,
        started.elapsed().as_secs_f64()
    );
    eprintln!("{report}");
    assert!(ledger.acknowledged.len() > wanted / 2, "{report}");
    assert_eq!(
        (lost, stuck, duplicates, wrong_bits),
        (0, 0, 0, 0),
        "{report}"
    );
}

/// Creates a package and uploads to it; the guid when the upload was acknowledged (200).
async fn upload_once(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    app: &str,
    zip: Vec<u8>,
) -> Option<String> {
    let created = http
        .post(format!("{base}/v3/apps/{app}/packages"))
        .bearer_auth(token)
        .json(&serde_json::json!({"type": "bits"}))
        .send()
        .await
        .ok()?;
    if created.status() != 201 {
        return None;
    }
    let guid = created.json::<serde_json::Value>().await.ok()?["guid"]
        .as_str()?
        .to_owned();
    let form = reqwest::multipart::Form::new().part(
        "bits",
        reqwest::multipart::Part::bytes(zip).file_name("package.zip"),
    );
    let uploaded = http
        .post(format!("{base}/v3/packages/{guid}/upload"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .ok()?;
    (uploaded.status() == 200).then_some(guid)
}
