//! A large upload streams end to end; the peak memory of each process is reported in
//! the test log (measured, not asserted: speed and memory live in `make bench`).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use packages_tests::{Mode, Service, peak_rss, zips};
use sha1::Digest;

const SIZE: u64 = 256 << 20;

#[tokio::test]
async fn a_256_mib_upload_streams_to_ready_and_back() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.zip");
    let sha1 = zips::write_large_zip(&path, SIZE);
    let guid = svc.new_package(&ctx.app).await;

    let started = Instant::now();
    let r = svc.upload_file(&guid, &svc.admin(), &path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let accepted = started.elapsed();
    let p = svc.wait_final_for(&guid, Duration::from_secs(600)).await;
    let ready = started.elapsed();
    assert_eq!(p["state"], "READY", "{p}");
    assert_eq!(p["data"]["hash"]["value"], sha1);

    // Download and hash it as it streams.
    let r = svc
        .http
        .get(format!("{}/v3/packages/{guid}/download", svc.base))
        .bearer_auth(svc.admin())
        .send()
        .await
        .unwrap();
    let r = match r.status().as_u16() {
        302 => {
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            reqwest::get(location).await.unwrap()
        }
        _ => r,
    };
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut hasher = sha1::Sha1::new();
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(hex::encode(hasher.finalize()), sha1);
    assert_eq!(len, std::fs::metadata(&path).unwrap().len());

    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "large upload: {} MiB, accepted after {accepted:.1?}, READY after {ready:.1?}",
        SIZE >> 20
    );
    match svc.mode {
        Mode::Embedded => eprintln!(
            "peak RSS of packages: {:.1} MiB",
            mib(peak_rss(svc.api_pid()))
        ),
        Mode::Stack => {
            eprintln!(
                "peak RSS of packages-api: {:.1} MiB",
                mib(peak_rss(svc.api_pid()))
            );
            for pid in svc.worker_pids() {
                eprintln!("peak RSS of packages-worker: {:.1} MiB", mib(peak_rss(pid)));
            }
        }
    }
}
