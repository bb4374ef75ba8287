//! Uploads with resources (GA spec 10.5): the package zip is built from the uploaded
//! entries and the named pool files, streaming, then validated and hashed like any
//! upload. Every rule that fails ends the package FAILED with Cloud Controller's text.

use packages_assembly::{AssembleError, Resource};
use packages_domain::resources::{CheckedResource, UnsafeResource, check_all};
use packages_domain::{BlobKey, FailureReason, Package, new_guid, staging_key};
use packages_jobs::ProcessUpload;
use packages_service::ServiceError;
use packages_zipcheck::CheckError;
use tokio::runtime::Handle;

use crate::pipeline::{Pipeline, Retry, failure_for};
use crate::pool::{BlobPool, channel};
use crate::zipread::BlobReadAt;

/// What came of an assembly.
pub(crate) enum Assembly {
    /// The package zip is staged here, to be validated and stored like an upload.
    Staged { key: BlobKey, size: u64 },
    /// A rule failed; the package must end FAILED for this reason.
    Refused(FailureReason),
}

impl Pipeline {
    pub(crate) async fn assemble(
        &self,
        package: &Package,
        job: &ProcessUpload,
        resources_key: &str,
    ) -> Result<Assembly, Retry> {
        // 1. The uploaded zip, checked as any upload.
        let mut uploaded = None;
        let mut uploaded_bytes = 0u64;
        if job.bits {
            let Some(size) = self.blobs().size(&job.staging_key).await? else {
                return Ok(Assembly::Refused(FailureReason::GaveUp(
                    "the uploaded bits are missing from the staging area".into(),
                )));
            };
            match self.check_zip(&job.staging_key, size).await {
                Ok(checked) => uploaded_bytes = checked.summary.uncompressed_bytes,
                Err(CheckError::Invalid(problem)) => {
                    return Ok(Assembly::Refused(failure_for(problem)));
                }
                Err(CheckError::Io(e)) => return Err(Retry::Read(e)),
            }
            uploaded = Some(BlobReadAt::new(
                self.blobs().clone(),
                &job.staging_key,
                size,
            ));
        }
        // 2. Paths and modes, before any pool read.
        let fingerprints = match self.services.staged_resources(resources_key).await {
            Ok(fingerprints) => fingerprints,
            Err(ServiceError::Invalid(_)) => {
                return Ok(Assembly::Refused(FailureReason::GaveUp(
                    "the upload's resources list could not be read back".into(),
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let checked = match check_all(&fingerprints) {
            Ok(checked) => checked,
            Err(unsafe_resource) => {
                return Ok(Assembly::Refused(FailureReason::UnsafeResource(
                    unsafe_resource.to_string(),
                )));
            }
        };
        // 3. Every file in the pool with its size.
        let mut keys = Vec::with_capacity(checked.len());
        for resource in &checked {
            match &resource.pool_key {
                Some(key) => keys.push(key.clone()),
                None => {
                    return Ok(Assembly::Refused(FailureReason::UnknownResource(
                        resource.not_found(),
                    )));
                }
            }
        }
        let held = self.services.pool_holds(keys).await?;
        if let Some((resource, _)) = checked.iter().zip(&held).find(|(_, held)| !**held) {
            return Ok(Assembly::Refused(FailureReason::UnknownResource(
                resource.not_found(),
            )));
        }
        // 4. The whole package within the size limit, before anything is written.
        let total = checked
            .iter()
            .filter_map(|r| r.pool_key.as_ref().map(|(_, size)| *size))
            .fold(uploaded_bytes, u64::saturating_add);
        if total > self.services.policy().max_package_size {
            return Ok(Assembly::Refused(FailureReason::TooLarge));
        }
        // 5. Write it.
        let resources: Vec<Resource> = checked.iter().filter_map(to_resource).collect();
        let key = staging_key(&package.guid, &format!("{}.assembled", new_guid()));
        let (mut out, sink) = channel();
        let (verdict, succeeded) = tokio::sync::oneshot::channel();
        let pool = BlobPool {
            blobs: self.blobs().clone(),
            runtime: Handle::current(),
        };
        let producer = tokio::task::spawn_blocking(move || {
            let outcome = packages_assembly::assemble(
                uploaded
                    .as_ref()
                    .map(|u| u as &dyn packages_zipcheck::ReadAt),
                &resources,
                &pool,
                &mut out,
            );
            let _ = verdict.send(outcome.is_ok());
            outcome
        });
        let stored = sink
            .store(self.blobs(), &key, async {
                succeeded.await.unwrap_or(false)
            })
            .await;
        let outcome = producer
            .await
            .map_err(|e| Retry::Read(std::io::Error::other(e)))?;
        match outcome {
            Ok(assembled) => {
                let size = stored?;
                tracing::info!(
                    entries = assembled.entries,
                    resources = assembled.resources,
                    replaced = assembled.replaced,
                    bytes = size,
                    "package assembled"
                );
                Ok(Assembly::Staged { key, size })
            }
            Err(e) => self.refused_assembly(e, &checked).await,
        }
    }

    async fn refused_assembly(
        &self,
        error: AssembleError,
        checked: &[CheckedResource],
    ) -> Result<Assembly, Retry> {
        let as_given = |sha1: &str| {
            checked
                .iter()
                .find(|r| r.pool_key.as_ref().is_some_and(|(s, _)| s == sha1))
                .map_or_else(
                    || format!("Could not find object '{sha1}'"),
                    |r| r.not_found(),
                )
        };
        let refused = match error {
            AssembleError::UnsafePath { path } | AssembleError::Unrepresentable { path, .. } => {
                FailureReason::UnsafeResource(UnsafeResource::Path { path }.to_string())
            }
            AssembleError::ChecksumMismatch { sha1s } => {
                for sha1 in &sha1s {
                    self.services.pool_remove(sha1).await?;
                }
                tracing::warn!(entries = ?sha1s, "corrupt resource pool entries removed");
                FailureReason::ResourceChecksum
            }
            AssembleError::Pool { sha1, source }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                // Indexed but gone: the index must not name it any more.
                self.services.pool_remove(&sha1).await?;
                FailureReason::UnknownResource(as_given(&sha1))
            }
            AssembleError::InvalidUpload(detail) => FailureReason::InconsistentZip(detail),
            AssembleError::Pool { source, .. }
            | AssembleError::Read(source)
            | AssembleError::Write(source) => return Err(Retry::Read(source)),
        };
        Ok(Assembly::Refused(refused))
    }
}

fn to_resource(checked: &CheckedResource) -> Option<Resource> {
    let (sha1, size) = checked.pool_key.clone()?;
    Some(Resource {
        path: checked.path.clone(),
        mode: checked.mode & 0o7777,
        sha1,
        size,
    })
}
