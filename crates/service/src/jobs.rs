//! Building job rows: the message a worker will receive, stored in the outbox in the
//! transaction that makes the job necessary.

use packages_domain::Package;
use packages_jobs::{CopyBits, DeleteBits, JobMessage, JobPayload, ProcessUpload};
use packages_storage::jobs::NewJob;

pub fn new_job(package_guid: &str, request_id: &str, payload: JobPayload) -> NewJob {
    let id = uuid::Uuid::new_v4();
    let message = JobMessage::new(id, package_guid.to_owned(), request_id.to_owned(), payload);
    let body = String::from_utf8_lossy(&message.encode()).into_owned();
    NewJob::new(
        id.to_string(),
        package_guid.to_owned(),
        message.kind().as_str(),
        body,
    )
}

pub fn process_upload(package_guid: &str, request_id: &str, staged: ProcessUpload) -> NewJob {
    new_job(package_guid, request_id, JobPayload::ProcessUpload(staged))
}

pub fn copy_bits(package_guid: &str, request_id: &str, source_package_guid: &str) -> NewJob {
    new_job(
        package_guid,
        request_id,
        JobPayload::CopyBits(CopyBits {
            source_package_guid: source_package_guid.to_owned(),
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

/// Kinds of the jobs that end a package's pending state.
pub const PACKAGE_JOB_KINDS: [&str; 2] = ["process_upload", "copy_bits"];
