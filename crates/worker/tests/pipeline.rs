//! The worker against real backends in process: a SQLite file, a local blobstore and the
//! in-process queue, with messages put on the queue by hand (duplicates, stale jobs,
//! unknown versions) to show that each is settled right and changes nothing it must not.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use packages_blobstore::{Blobstore, LocalBlobstore};
use packages_domain::context::{App, Organization, Space};
use packages_domain::{NewPackage, PackageState, PackageType, Timestamp, blob_key, new_guid};
use packages_jobs::{
    EmbeddedQueue, JobConsumer, JobMessage, JobPayload, JobPublisher, ProcessUpload,
};
use packages_service::{Policy, Services};
use packages_storage::{Database, context, jobs, packages};
use packages_telemetry::Metrics;
use packages_worker::{Worker, WorkerSettings};
use tokio::sync::watch;

struct Rig {
    services: Services,
    queue: Arc<EmbeddedQueue>,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    app: String,
}

/// A zip with one stored file, as `zip -0` writes it.
fn tiny_zip() -> Vec<u8> {
    let (name, data) = (b"hello.txt", b"hello");
    let crc: u32 = 0x3610_a686; // CRC-32 of "hello"
    let mut out = Vec::new();
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&9u16.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(name);
    out.extend_from_slice(data);
    let cd = out.len() as u32;
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&9u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(name);
    let cd_len = out.len() as u32 - cd;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/packages.db", dir.path().display());
    let db = tokio::task::spawn_blocking(move || Database::connect(&url, 4))
        .await
        .unwrap()
        .unwrap();
    let blobs: Arc<dyn Blobstore> =
        Arc::new(LocalBlobstore::new(dir.path().join("blobs")).unwrap());
    let services = Services::new(db, blobs, Policy::default());
    let now = Timestamp::now();
    let (org, space, app) = (new_guid(), new_guid(), new_guid());
    let rows = (org.clone(), space.clone(), app.clone());
    services
        .db
        .run(move |c| {
            context::insert_org(
                c,
                &Organization {
                    guid: rows.0.clone(),
                    name: "o".into(),
                    suspended: false,
                    created_at: now,
                    updated_at: now,
                },
            )?;
            context::insert_space(
                c,
                &Space {
                    guid: rows.1.clone(),
                    name: "s".into(),
                    organization_guid: rows.0,
                    created_at: now,
                    updated_at: now,
                },
            )?;
            context::insert_app(
                c,
                &App {
                    guid: rows.2,
                    name: "a".into(),
                    space_guid: rows.1,
                    created_at: now,
                    updated_at: now,
                },
            )
        })
        .await
        .unwrap();
    let queue = Arc::new(EmbeddedQueue::new(5));
    let (stop, stopped) = watch::channel(false);
    let worker = Worker::new(
        services.clone(),
        queue.clone(),
        Metrics::new(),
        WorkerSettings::default(),
    );
    let worker = tokio::spawn(worker.run(stopped));
    Rig {
        services,
        queue,
        stop,
        worker,
        _dir: dir,
        app,
    }
}

impl Rig {
    /// A package accepted for processing, its bits staged, and the job message for it.
    async fn accepted_upload(&self) -> (String, JobMessage) {
        let guid = new_guid();
        let new = NewPackage {
            guid: guid.clone(),
            app_guid: self.app.clone(),
            package_type: PackageType::Bits,
            state: PackageState::AwaitingUpload,
            url: None,
            created_at: Timestamp::now(),
        };
        let staging_key = packages_domain::staging_key(&guid, "u1");
        let zip = tiny_zip();
        let mut writer = self.services.blobs.writer(&staging_key).await.unwrap();
        writer.write(zip.clone().into()).await.unwrap();
        writer.finish().await.unwrap();
        let payload = ProcessUpload {
            staging_key,
            size: zip.len() as u64,
        };
        let row = packages_service::jobs::process_upload(&guid, "req-1", payload);
        let message = JobMessage::decode(row.body.as_bytes()).unwrap();
        let g = guid.clone();
        self.services
            .db
            .run(move |c| {
                packages::insert(c, &new)?;
                packages::claim_upload(c, &g, "test-upload", i64::MAX)?;
                packages::accept_upload(c, &g, "test-upload", &row)
            })
            .await
            .unwrap();
        (guid, message)
    }

    async fn state(&self, guid: &str) -> Option<packages_domain::Package> {
        let guid = guid.to_owned();
        self.services
            .db
            .run(move |c| packages::find(c, &guid))
            .await
            .unwrap()
    }

    async fn wait_for(&self, guid: &str, state: PackageState) -> packages_domain::Package {
        let started = Instant::now();
        loop {
            if let Some(p) = self.state(guid).await
                && p.state == state
            {
                return p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{guid} never became {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the queue has no message waiting and none in hand.
    async fn drained(&self) {
        let started = Instant::now();
        while self.queue.depths().await.unwrap().ready > 0 {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.worker.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_job_makes_the_package_ready_with_both_hashes() {
    let rig = rig().await;
    let (guid, message) = rig.accepted_upload().await;
    rig.queue.publish(message.encode()).await.unwrap();
    let ready = rig.wait_for(&guid, PackageState::Ready).await;
    assert_eq!(ready.sha1.as_deref().map(str::len), Some(40));
    assert_eq!(ready.sha256.as_deref().map(str::len), Some(64));
    assert!(
        rig.services
            .blobs
            .size(&blob_key(&guid))
            .await
            .unwrap()
            .is_some()
    );
    let JobPayload::ProcessUpload(job) = &message.payload else {
        unreachable!()
    };
    assert!(
        rig.services
            .blobs
            .size(&job.staging_key)
            .await
            .unwrap()
            .is_none(),
        "staged bits removed"
    );
    let g = guid.clone();
    let left = rig
        .services
        .db
        .run(move |c| jobs::find_for_package(c, &g, &["process_upload"]))
        .await
        .unwrap();
    assert!(left.is_none(), "the job row goes with the final update");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_job_for_a_ready_package_changes_nothing() {
    let rig = rig().await;
    let (guid, message) = rig.accepted_upload().await;
    rig.queue.publish(message.encode()).await.unwrap();
    let ready = rig.wait_for(&guid, PackageState::Ready).await;
    rig.queue.publish(message.encode()).await.unwrap();
    rig.drained().await;
    let after = rig.state(&guid).await.unwrap();
    assert_eq!(after, ready, "the late duplicate changed the package");
    assert!(
        rig.services
            .blobs
            .size(&blob_key(&guid))
            .await
            .unwrap()
            .is_some(),
        "its bits stay"
    );
    assert!(
        rig.queue.dead_letters().is_empty(),
        "acknowledged, not dead-lettered"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_deleted_package_is_ignored_and_its_staged_bits_removed() {
    let rig = rig().await;
    let (guid, message) = rig.accepted_upload().await;
    let g = guid.clone();
    rig.services
        .db
        .run(move |c| packages::delete(c, &g, |p| packages_service::jobs::delete_bits(p, "r")))
        .await
        .unwrap();
    rig.queue.publish(message.encode()).await.unwrap();
    rig.drained().await;
    let JobPayload::ProcessUpload(job) = &message.payload else {
        unreachable!()
    };
    assert!(
        rig.services
            .blobs
            .size(&job.staging_key)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        rig.services
            .blobs
            .size(&blob_key(&guid))
            .await
            .unwrap()
            .is_none()
    );
    assert!(rig.queue.dead_letters().is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_failed_package_is_ignored() {
    let rig = rig().await;
    let (guid, message) = rig.accepted_upload().await;
    let g = guid.clone();
    let outcome = packages::Outcome {
        error: Some("earlier".into()),
        ..packages::Outcome::default()
    };
    rig.services
        .db
        .run(move |c| {
            packages::finish(
                c,
                &g,
                packages_domain::Transition::UploadFailed,
                &outcome,
                &["process_upload"],
            )
        })
        .await
        .unwrap();
    rig.queue.publish(message.encode()).await.unwrap();
    rig.drained().await;
    let p = rig.state(&guid).await.unwrap();
    assert_eq!(p.state, PackageState::Failed);
    assert_eq!(p.error.as_deref(), Some("earlier"));
    assert!(
        rig.services
            .blobs
            .size(&blob_key(&guid))
            .await
            .unwrap()
            .is_none()
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_versions_and_garbage_go_to_the_dead_letter_queue_unread() {
    let rig = rig().await;
    let (guid, message) = rig.accepted_upload().await;
    let mut future: serde_json::Value = serde_json::from_slice(&message.encode()).unwrap();
    future["version"] = serde_json::json!(2);
    rig.queue
        .publish(serde_json::to_vec(&future).unwrap())
        .await
        .unwrap();
    rig.queue.publish(b"{not json".to_vec()).await.unwrap();
    rig.drained().await;
    assert_eq!(rig.queue.dead_letters().len(), 2);
    // A version-2 message was not guessed at: the package did not move.
    assert_eq!(
        rig.state(&guid).await.unwrap().state,
        PackageState::ProcessingUpload
    );
    rig.stop().await;
}
