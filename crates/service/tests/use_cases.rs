//! The use cases on the in-process rig: the rules of `packages-service` tested without
//! starting a binary (the black-box suite proves the same rules through HTTP).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use packages_domain::{
    AppGuid, FailureReason, JobKind, PackageGuid, PackageState, Principal, RoleType,
};
use packages_service::work::{RetryDecision, Stuck};
use packages_service::{Policy, Resource, ServiceError};
use packages_testkit::{Rig, tiny_zip};

fn admin() -> Principal {
    Principal::new("admin", &["cloud_controller.admin"])
}

fn user(guid: &str) -> Principal {
    Principal::new(guid, &["cloud_controller.read", "cloud_controller.write"])
}

async fn rig() -> Rig {
    Rig::without_worker(Policy::default()).await
}

fn bits() -> &'static [u8] {
    br#"{"type":"bits"}"#
}

#[tokio::test]
async fn validation_comes_before_lookup_and_roles_before_writes() {
    let rig = rig().await;
    let svc = &rig.services;
    // An invalid body is reported even for an app that does not exist.
    let missing = AppGuid::new("no-such-app");
    assert!(matches!(
        svc.create_package(&admin(), &missing, br#"{"type":"zip"}"#)
            .await,
        Err(ServiceError::Invalid(_))
    ));
    assert!(matches!(
        svc.create_package(&admin(), &missing, bits()).await,
        Err(ServiceError::NotFound(Resource::App))
    ));
    // Someone without a role does not see the app; an auditor sees it but may not write;
    // a developer may.
    assert!(matches!(
        svc.create_package(&user("stranger"), &rig.app, bits())
            .await,
        Err(ServiceError::NotFound(Resource::App))
    ));
    rig.grant("auditor", RoleType::SpaceAuditor).await;
    assert!(matches!(
        svc.create_package(&user("auditor"), &rig.app, bits()).await,
        Err(ServiceError::NotAuthorized)
    ));
    rig.grant("dev", RoleType::SpaceDeveloper).await;
    let p = svc
        .create_package(&user("dev"), &rig.app, bits())
        .await
        .unwrap();
    assert_eq!(p.state, PackageState::AwaitingUpload);
}

#[tokio::test]
async fn a_copy_of_bits_waits_for_its_job_and_a_docker_copy_is_ready_at_once() {
    let rig = rig().await;
    let svc = &rig.services;
    let (source, _) = rig.accepted_upload(&tiny_zip()).await;
    // The same app: refused.
    assert!(matches!(
        svc.copy_package(&admin(), &rig.app, &source, "r").await,
        Err(ServiceError::Invalid(_))
    ));
    let other = svc
        .create_app(
            &admin(),
            format!(
                r#"{{"name":"other","relationships":{{"space":{{"data":{{"guid":"{}"}}}}}}}}"#,
                rig.space
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let copy = svc
        .copy_package(&admin(), &other.guid, &source, "r")
        .await
        .unwrap();
    assert_eq!(copy.state, PackageState::Copying);
    assert_eq!(rig.job_kinds(&copy.guid).await, ["copy_bits"]);

    let docker = svc
        .create_package(
            &admin(),
            &rig.app,
            br#"{"type":"docker","url":"docker://nginx"}"#,
        )
        .await
        .unwrap();
    let docker_copy = svc
        .copy_package(&admin(), &other.guid, &docker.guid, "r")
        .await
        .unwrap();
    assert_eq!(docker_copy.state, PackageState::Ready);
    assert!(rig.job_kinds(&docker_copy.guid).await.is_empty());
}

#[tokio::test]
async fn a_package_takes_one_upload_at_a_time() {
    let rig = rig().await;
    let svc = &rig.services;
    let p = svc
        .create_package(&admin(), &rig.app, bits())
        .await
        .unwrap();
    let first = svc.prepare_upload(&admin(), &p.guid).await.unwrap();
    assert!(matches!(
        svc.prepare_upload(&admin(), &p.guid).await,
        Err(ServiceError::BitsAlreadyUploaded)
    ));
    // A failed upload gives its claim back at once.
    svc.release_upload(&first).await;
    let second = svc.prepare_upload(&admin(), &p.guid).await.unwrap();
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(tiny_zip()))]);
    let staged = svc.ingest(&second, body, 0).await.unwrap();
    let accepted = svc
        .accept_upload(&second, Some(staged), None, "r")
        .await
        .unwrap();
    assert_eq!(accepted.state, PackageState::ProcessingUpload);
    assert_eq!(rig.job_kinds(&p.guid).await, ["process_upload"]);
    // Accepted: no further upload, claimed or not.
    assert!(matches!(
        svc.prepare_upload(&admin(), &p.guid).await,
        Err(ServiceError::BitsAlreadyUploaded)
    ));
}

#[tokio::test]
async fn an_upload_over_the_limit_stores_nothing_and_frees_the_package() {
    let policy = Policy {
        max_body_bytes: 10,
        ..Policy::default()
    };
    let rig = Rig::without_worker(policy).await;
    let svc = &rig.services;
    let p = svc
        .create_package(&admin(), &rig.app, bits())
        .await
        .unwrap();
    let ticket = svc.prepare_upload(&admin(), &p.guid).await.unwrap();
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(tiny_zip()))]);
    assert!(matches!(
        svc.ingest(&ticket, body, 0).await,
        Err(ServiceError::TooLarge { limit: 10 })
    ));
    svc.release_upload(&ticket).await;
    assert!(rig.blobs.list("staging/").await.unwrap().is_empty());
    assert!(svc.prepare_upload(&admin(), &p.guid).await.is_ok());
}

/// A running upload renews its claim: once the claim has gone to another upload (as a
/// lapsed one does), the next renewal finds it gone and the stalled upload stops, with
/// nothing staged. Tokio's clock is paused, so the renewal comes without waiting for it.
#[tokio::test]
async fn an_upload_that_lost_its_claim_stops_at_the_next_renewal_and_stores_nothing() {
    let rig = rig().await;
    let svc = &rig.services;
    let p = svc
        .create_package(&admin(), &rig.app, bits())
        .await
        .unwrap();
    let first = svc.prepare_upload(&admin(), &p.guid).await.unwrap();
    svc.release_upload(&first).await;
    let _second = svc.prepare_upload(&admin(), &p.guid).await.unwrap();
    // One chunk, then a client that stalls mid-upload.
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"PK"))])
        .chain(futures_util::stream::pending());
    tokio::time::pause();
    let stopped =
        tokio::time::timeout(Duration::from_secs(3600), svc.ingest(&first, body, 0)).await;
    assert!(
        matches!(stopped, Ok(Err(ServiceError::BitsAlreadyUploaded))),
        "{stopped:?}"
    );
    assert!(rig.blobs.list("staging/").await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_a_pending_package_replaces_its_job_with_the_bits_deletion() {
    let rig = rig().await;
    let (guid, _) = rig.accepted_upload(&tiny_zip()).await;
    assert_eq!(rig.job_kinds(&guid).await, ["process_upload"]);
    rig.services
        .delete_package(&admin(), &guid, "r")
        .await
        .unwrap();
    assert!(rig.package(&guid).await.is_none());
    assert_eq!(rig.job_kinds(&guid).await, ["delete_bits"]);
}

#[tokio::test]
async fn retries_are_counted_until_the_attempts_are_spent() {
    let rig = rig().await;
    let (guid, message) = rig.accepted_upload(&tiny_zip()).await;
    let id = message.job_id.to_string();
    let svc = &rig.services;
    let no_delay = |_| Duration::ZERO;
    assert_eq!(
        svc.retry_job(&id, 3, no_delay).await.unwrap(),
        RetryDecision::Rescheduled(1)
    );
    assert_eq!(
        svc.retry_job(&id, 3, no_delay).await.unwrap(),
        RetryDecision::Rescheduled(2)
    );
    assert_eq!(
        svc.retry_job(&id, 3, no_delay).await.unwrap(),
        RetryDecision::GiveUp
    );
    // Failing the package ends its job: a later retry finds nothing.
    let pending = rig.package(&guid).await.unwrap();
    assert!(
        svc.fail_package(&pending, &FailureReason::GaveUp("x".into()))
            .await
            .unwrap()
    );
    assert_eq!(
        svc.retry_job(&id, 3, no_delay).await.unwrap(),
        RetryDecision::Gone
    );
}

#[tokio::test]
async fn runs_that_never_settle_are_what_the_quarantine_counts() {
    let rig = rig().await;
    let (_, message) = rig.accepted_upload(&tiny_zip()).await;
    let id = message.job_id.to_string();
    let svc = &rig.services;
    assert_eq!(svc.begin_job_run(&id).await.unwrap(), Some(0));
    // That run ended on an infrastructure error: it settled.
    svc.retry_job(&id, 10, |_| Duration::ZERO).await.unwrap();
    assert_eq!(svc.begin_job_run(&id).await.unwrap(), Some(0));
    // That one died with its process.
    assert_eq!(svc.begin_job_run(&id).await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_stuck_package_is_redriven_then_failed() {
    let rig = rig().await;
    let (guid, _) = rig.accepted_upload(&tiny_zip()).await;
    let svc = &rig.services;
    let stuck = || async { rig.package(&guid).await.unwrap() };
    assert_eq!(
        svc.unstick(stuck().await, 2).await.unwrap(),
        Stuck::Redriven(1)
    );
    match svc.unstick(stuck().await, 2).await.unwrap() {
        Stuck::Failed { staging_key } => assert!(staging_key.is_some()),
        other => panic!("{other:?}"),
    }
    let p = rig.package(&guid).await.unwrap();
    assert_eq!(p.state, PackageState::Failed);
    assert!(p.error.unwrap().starts_with("Package processing timed out"));
    assert!(rig.job_kinds(&guid).await.is_empty());
}

#[tokio::test]
async fn only_the_newest_ready_packages_of_an_app_are_kept() {
    let policy = Policy {
        max_valid_packages_stored: 2,
        ..Policy::default()
    };
    let rig = Rig::without_worker(policy).await;
    let svc = &rig.services;
    let mut ready: Vec<PackageGuid> = Vec::new();
    for _ in 0..3 {
        let (guid, _) = rig.accepted_upload(&tiny_zip()).await;
        let outcome = packages_domain::Outcome {
            sha1: Some("1".repeat(40)),
            sha256: Some("2".repeat(64)),
            error: None,
        };
        assert!(
            svc.finish_job(&guid, packages_domain::Transition::UploadSucceeded, outcome)
                .await
                .unwrap()
        );
        ready.push(guid);
    }
    let expired = svc.expire_older_packages(&rig.app, "r").await.unwrap();
    assert_eq!(expired, [ready[0].clone()]);
    let oldest = rig.package(&ready[0]).await.unwrap();
    assert_eq!(oldest.state, PackageState::Expired);
    assert_eq!(oldest.sha1, None);
    assert_eq!(
        rig.job_kinds(&ready[0]).await,
        [JobKind::DeleteBits.to_string()]
    );
}
