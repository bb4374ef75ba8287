//! The worker against real backends in process (the testkit rig: a SQLite file, a local
//! blobstore and the in-process queue), with messages put on the queue by hand
//! (duplicates, stale jobs, unknown versions) to show that each is settled right and
//! changes nothing it must not. Every wait is on state: a package's state or the number
//! of jobs the worker finished.
#![allow(clippy::unwrap_used)]

use packages_domain::{FailureReason, PackageState, blob_key};
use packages_jobs::{JobPayload, JobPublisher};
use packages_testkit::{Rig, tiny_zip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_job_makes_the_package_ready_with_both_hashes() {
    let rig = Rig::with_worker().await;
    let (guid, message) = rig.accepted_upload(&tiny_zip()).await;
    rig.queue.publish(message.encode()).await.unwrap();
    let ready = rig.wait_for(&guid, PackageState::Ready).await;
    assert_eq!(ready.sha1.as_deref().map(str::len), Some(40));
    assert_eq!(ready.sha256.as_deref().map(str::len), Some(64));
    assert!(rig.blobs.size(&blob_key(&guid)).await.unwrap().is_some());
    let JobPayload::ProcessUpload(job) = &message.payload else {
        unreachable!()
    };
    assert!(
        rig.blobs.size(&job.staging_key).await.unwrap().is_none(),
        "staged bits removed"
    );
    assert!(
        rig.job_kinds(&guid).await.is_empty(),
        "the job row goes with the final update"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_job_for_a_ready_package_changes_nothing() {
    let rig = Rig::with_worker().await;
    let (guid, message) = rig.accepted_upload(&tiny_zip()).await;
    rig.queue.publish(message.encode()).await.unwrap();
    let ready = rig.wait_for(&guid, PackageState::Ready).await;
    rig.queue.publish(message.encode()).await.unwrap();
    rig.wait_jobs_finished(2).await;
    let after = rig.package(&guid).await.unwrap();
    assert_eq!(after, ready, "the late duplicate changed the package");
    assert!(
        rig.blobs.size(&blob_key(&guid)).await.unwrap().is_some(),
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
    let rig = Rig::with_worker().await;
    let (guid, message) = rig.accepted_upload(&tiny_zip()).await;
    let admin = packages_domain::Principal::new("admin", &["cloud_controller.admin"]);
    rig.services
        .delete_package(&admin, &guid, "req-2")
        .await
        .unwrap();
    // The delete replaced the upload job with a bits deletion; the stale upload message
    // still reaches the worker.
    rig.queue.publish(message.encode()).await.unwrap();
    rig.wait_jobs_finished(1).await;
    let JobPayload::ProcessUpload(job) = &message.payload else {
        unreachable!()
    };
    assert!(rig.blobs.size(&job.staging_key).await.unwrap().is_none());
    assert!(rig.blobs.size(&blob_key(&guid)).await.unwrap().is_none());
    assert!(rig.queue.dead_letters().is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_failed_package_is_ignored() {
    let rig = Rig::with_worker().await;
    let (guid, message) = rig.accepted_upload(&tiny_zip()).await;
    let pending = rig.package(&guid).await.unwrap();
    assert!(
        rig.services
            .fail_package(&pending, &FailureReason::CopyFailed("earlier".into()))
            .await
            .unwrap()
    );
    rig.queue.publish(message.encode()).await.unwrap();
    rig.wait_jobs_finished(1).await;
    let p = rig.package(&guid).await.unwrap();
    assert_eq!(p.state, PackageState::Failed);
    assert_eq!(p.error.as_deref(), Some("failed to copy - earlier"));
    assert!(rig.blobs.size(&blob_key(&guid)).await.unwrap().is_none());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_versions_and_garbage_go_to_the_dead_letter_queue_unread() {
    let rig = Rig::with_worker().await;
    let (guid, message) = rig.accepted_upload(&tiny_zip()).await;
    let mut future: serde_json::Value = serde_json::from_slice(&message.encode()).unwrap();
    future["version"] = serde_json::json!(3);
    rig.queue
        .publish(serde_json::to_vec(&future).unwrap())
        .await
        .unwrap();
    rig.queue.publish(b"{not json".to_vec()).await.unwrap();
    rig.wait_jobs_finished(2).await;
    assert_eq!(rig.queue.dead_letters().len(), 2);
    // A version-3 message (this worker reads 1 and 2) was not guessed at: the package did not move.
    assert_eq!(
        rig.package(&guid).await.unwrap().state,
        PackageState::ProcessingUpload
    );
    rig.stop().await;
}
