//! Uploads: the checks before any byte is stored, streaming the bits into the staging
//! area, and accepting the upload with its job in one transaction. The worker validates,
//! hashes and moves the staged bits.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use packages_domain::upload::BITS_PATH_INVALID;
use packages_domain::validation::Invalid;
use packages_domain::{Package, PackageState, PackageType, Principal, new_guid, staging_key};
use packages_jobs::ProcessUpload;
use packages_storage::packages;

use crate::lookup::{require_write_role, require_write_scope};
use crate::packages::NOT_BITS;
use crate::{Resource, Result, ServiceError, Services, jobs};

/// A package that passed every check and may receive bits.
#[derive(Debug, Clone)]
pub struct UploadTicket {
    pub package_guid: String,
}

impl Services {
    /// Write scope only: the first check of an upload, before the form is validated.
    pub fn authorize_upload(&self, principal: &Principal) -> Result<()> {
        require_write_scope(principal)
    }

    /// The checks after the form: lookup (404), write role (403), type (422), state (400).
    pub async fn prepare_upload(&self, principal: &Principal, guid: &str) -> Result<UploadTicket> {
        require_write_scope(principal)?;
        let (package, membership) = self.readable_package(principal, guid).await?;
        require_write_role(principal, &membership)?;
        if package.package_type != PackageType::Bits {
            return Err(Invalid::one(NOT_BITS).into());
        }
        if package.state != PackageState::AwaitingUpload {
            return Err(ServiceError::BitsAlreadyUploaded);
        }
        Ok(UploadTicket {
            package_guid: package.guid,
        })
    }

    /// Resolves a proxy-stored upload: only a regular file inside `upload.bits_path_root`,
    /// after resolving `..` and symlinks, is accepted. Nothing is opened here.
    pub async fn resolve_bits_path(&self, bits_path: &str) -> Result<PathBuf> {
        let Some(root) = self.policy.bits_path_root.clone() else {
            return Err(Invalid::one(BITS_PATH_INVALID).into());
        };
        let requested = PathBuf::from(bits_path);
        tokio::task::spawn_blocking(move || confine(&root, &requested))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .ok_or_else(|| Invalid::one(BITS_PATH_INVALID).into())
    }

    /// Streams an upload into a fresh staging key and stops with
    /// `TooLarge` as soon as it passes `upload.max_body_bytes`. Whatever goes wrong, the
    /// partial blob is discarded.
    pub async fn ingest<S, E>(&self, ticket: &UploadTicket, body: S) -> Result<ProcessUpload>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Display,
    {
        let staging_key = staging_key(&ticket.package_guid, &new_guid());
        let mut writer = self.blobs.writer(&staging_key).await?;
        let limit = self.policy.max_body_bytes;
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let failure = match chunk {
                Err(e) => Some(ServiceError::UploadInterrupted(e.to_string())),
                Ok(chunk) => {
                    size = size.saturating_add(chunk.len() as u64);
                    if size > limit {
                        Some(ServiceError::TooLarge { limit })
                    } else {
                        writer.write(chunk).await.err().map(ServiceError::from)
                    }
                }
            };
            if let Some(failure) = failure {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %e, key = %staging_key, "discarding a partial upload failed");
                }
                return Err(failure);
            }
        }
        writer.finish().await?;
        Ok(ProcessUpload { staging_key, size })
    }

    /// Streams a proxy-stored file (already confined by [`Services::resolve_bits_path`]).
    pub async fn ingest_file(&self, ticket: &UploadTicket, path: &Path) -> Result<ProcessUpload> {
        let file = tokio::fs::File::open(path).await.map_err(|e| {
            ServiceError::UploadInterrupted(format!("cannot open the uploaded file: {e}"))
        })?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        self.ingest(ticket, stream).await
    }

    /// Accepts a stored upload: AWAITING_UPLOAD → PROCESSING_UPLOAD with its job, in one
    /// transaction. Of several concurrent uploads exactly one gets here first; the others
    /// get `BitsAlreadyUploaded` and their staged bits are removed.
    pub async fn accept_upload(
        &self,
        ticket: &UploadTicket,
        staged: ProcessUpload,
        request_id: &str,
    ) -> Result<Package> {
        let guid = ticket.package_guid.clone();
        let staging_key = staged.staging_key.clone();
        let job = jobs::process_upload(&guid, request_id, staged);
        let outcome = self
            .db
            .run(move |conn| {
                let accepted = packages::accept_upload(conn, &guid, &job)?;
                Ok((accepted, packages::find(conn, &guid)?))
            })
            .await;
        match outcome {
            Ok((true, Some(package))) => {
                // Tests crash here to show that a committed upload is not lost when the
                // process dies before its job reaches the queue.
                fail::fail_point!("upload-accepted-before-publish", |_| std::process::abort());
                self.job_recorded();
                Ok(package)
            }
            Ok((accepted, package)) => {
                self.discard_staged(&staging_key).await;
                match (accepted, package) {
                    (_, None) => Err(ServiceError::NotFound(Resource::Package)),
                    _ => Err(ServiceError::BitsAlreadyUploaded),
                }
            }
            Err(e) => {
                // Not recorded: the staged bits would never be picked up.
                self.discard_staged(&staging_key).await;
                Err(e.into())
            }
        }
    }

    /// Removes staged bits that no job will use.
    pub async fn discard_staged(&self, staging_key: &str) {
        if let Err(e) = self.blobs.delete(staging_key).await {
            tracing::warn!(error = %e, key = %staging_key, "removing staged bits failed");
        }
    }
}

/// `requested` resolved (relative paths against `root`), if it is a regular file strictly
/// inside `root`.
fn confine(root: &Path, requested: &Path) -> Option<PathBuf> {
    let root = std::fs::canonicalize(root).ok()?;
    let resolved = std::fs::canonicalize(root.join(requested)).ok()?;
    let inside = resolved.starts_with(&root) && resolved != root;
    let regular = std::fs::metadata(&resolved).ok()?.file_type().is_file();
    (inside && regular).then_some(resolved)
}

#[cfg(test)]
mod tests {
    use super::confine;

    #[test]
    fn only_regular_files_inside_the_root_pass() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("uploads");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/app.zip"), b"zip").unwrap();
        std::fs::write(dir.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/app.zip"), root.join("inner-link")).unwrap();

        let ok = confine(&root, &root.join("sub/app.zip")).unwrap();
        assert!(ok.ends_with("sub/app.zip"));
        assert!(confine(&root, "sub/app.zip".as_ref()).is_some());
        assert!(confine(&root, &root.join("inner-link")).is_some());
        assert!(confine(&root, &root.join("sub/../sub/app.zip")).is_some());

        assert!(confine(&root, &root.join("../secret")).is_none());
        assert!(confine(&root, &dir.path().join("secret")).is_none());
        assert!(confine(&root, &root.join("link")).is_none());
        assert!(confine(&root, &root.join("sub")).is_none());
        assert!(confine(&root, &root).is_none());
        assert!(confine(&root, &root.join("missing.zip")).is_none());
        assert!(confine(&root, "/etc/passwd".as_ref()).is_none());
    }
}
