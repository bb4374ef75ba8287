//! Building job rows: the message a worker will receive, stored in the outbox in the
//! transaction that makes the job necessary.

use packages_domain::{Package, PackageGuid};
use packages_jobs::{CopyBits, DeleteBits, JobMessage, JobPayload, ProcessUpload};
use packages_storage::jobs::NewJob;

pub fn new_job(package_guid: &PackageGuid, request_id: &str, payload: JobPayload) -> NewJob {
    let id = uuid::Uuid::new_v4();
    let message = JobMessage::new(id, package_guid.clone(), request_id.to_owned(), payload);
    let body = String::from_utf8_lossy(&message.encode()).into_owned();
    NewJob::new(
        id.to_string(),
        package_guid.to_string(),
        message.kind(),
        body,
    )
}

pub fn process_upload(
    package_guid: &PackageGuid,
    request_id: &str,
    staged: ProcessUpload,
) -> NewJob {
    new_job(package_guid, request_id, JobPayload::ProcessUpload(staged))
}

/// Copies the bits of `source` into `package_guid`.
pub fn copy_bits(package_guid: &PackageGuid, request_id: &str, source: &PackageGuid) -> NewJob {
    new_job(
        package_guid,
        request_id,
        JobPayload::CopyBits(CopyBits {
            source_package_guid: source.clone(),
        }),
    )
}

/// Deletes the bits of a package that is gone or expired.
pub fn delete_bits(package: &Package, request_id: &str) -> NewJob {
    new_job(
        &package.guid,
        request_id,
        JobPayload::DeleteBits(DeleteBits {
            blob_key: package.blob_key(),
        }),
    )
}
