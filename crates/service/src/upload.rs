//! Uploads: the checks before any byte is stored, streaming the bits into the staging
//! area, and accepting the upload with its job in one transaction. The worker validates,
//! hashes and moves the staged bits.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use packages_blobstore::BlobError;
use packages_domain::resources::Fingerprint;
use packages_domain::upload::BITS_PATH_INVALID;
use packages_domain::validation::Invalid;
use packages_domain::{
    BlobKey, PackageGuid, PackageState, PackageType, Principal, new_guid, staging_key,
};
use packages_jobs::ProcessUpload;
use packages_storage::{metadata, packages};

use crate::lookup::{require_write_role, require_write_scope};
use crate::packages::{NOT_BITS, PackageView};
use crate::{Resource, Result, ServiceError, Services, jobs};

/// Ends the staging name of an upload's fingerprints, next to its bits.
pub const RESOURCES_SUFFIX: &str = ".resources";

/// How long an upload's claim on its package lasts without renewal: the claim of an API
/// process that died lapses after this, so the package can take another upload.
const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// How often a running upload renews its claim.
const CLAIM_RENEWAL: Duration = Duration::from_secs(15);

/// A package that passed every check and is claimed for this upload: no other upload
/// stores a byte for it until this one is accepted or released.
#[derive(Debug, Clone)]
pub struct UploadTicket {
    pub package_guid: PackageGuid,
    claim: String,
}

fn claim_until() -> i64 {
    let lease = i64::try_from(CLAIM_LEASE.as_millis()).unwrap_or(i64::MAX);
    packages_storage::now_millis().saturating_add(lease)
}

impl Services {
    /// Write scope only: the first check of an upload, before the form is validated.
    pub fn authorize_upload(&self, principal: &Principal) -> Result<()> {
        require_write_scope(principal)
    }

    /// The checks after the form: lookup (404), write role (403), type (422), state (400);
    /// then the package is claimed for this upload. A package another upload is storing
    /// bits for answers like one that has its bits (400), before a byte is stored.
    pub async fn prepare_upload(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
    ) -> Result<UploadTicket> {
        let package = self.uploadable_package(principal, guid).await?;
        self.claim_for_upload(&package.guid).await
    }

    /// The checks of an upload, in Cloud Controller's order: scope, lookup (404), write
    /// role (403), type (422), state (400).
    pub(crate) async fn uploadable_package(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
    ) -> Result<packages_domain::Package> {
        require_write_scope(principal)?;
        let (package, membership) = self.readable_package(principal, guid).await?;
        require_write_role(principal, &membership)?;
        if package.package_type != PackageType::Bits {
            return Err(Invalid::one(NOT_BITS).into());
        }
        if package.state != PackageState::AwaitingUpload {
            return Err(ServiceError::BitsAlreadyUploaded);
        }
        Ok(package)
    }

    /// Claims a package for one upload: no other upload stores a byte for it until this
    /// one is accepted or released. A package already claimed answers like one that has
    /// its bits (400).
    pub(crate) async fn claim_for_upload(&self, guid: &PackageGuid) -> Result<UploadTicket> {
        let ticket = UploadTicket {
            package_guid: guid.clone(),
            claim: new_guid(),
        };
        let (guid, claim) = (ticket.package_guid.clone(), ticket.claim.clone());
        let claimed = self
            .db
            .run(move |conn| packages::claim_upload(conn, &guid, &claim, claim_until()))
            .await?;
        if !claimed {
            return Err(ServiceError::BitsAlreadyUploaded);
        }
        Ok(ticket)
    }

    /// Gives the claim back after a failed upload, so the package takes another at once.
    pub async fn release_upload(&self, ticket: &UploadTicket) {
        let (guid, claim) = (ticket.package_guid.clone(), ticket.claim.clone());
        let released = self
            .db
            .run(move |conn| packages::release_upload_claim(conn, &guid, &claim))
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %packages_blobstore::Chain(&e), "releasing an upload claim failed; it lapses by itself");
        }
    }

    async fn renew_claim(&self, ticket: &UploadTicket) -> Result<()> {
        let (guid, claim) = (ticket.package_guid.clone(), ticket.claim.clone());
        let held = self
            .db
            .run(move |conn| packages::renew_upload_claim(conn, &guid, &claim, claim_until()))
            .await?;
        if held {
            Ok(())
        } else {
            Err(ServiceError::BitsAlreadyUploaded)
        }
    }

    /// Opens a proxy-stored upload named by `bits_path`. Honoured only when the request
    /// came from the front proxy (`from_proxy`: it carried `upload.proxy_secret`) and the
    /// name is a regular file inside `upload.bits_path_root` with a single link; anything
    /// else is `Bits path is invalid` and the file is left alone.
    pub async fn open_bits_path(&self, bits_path: &str, from_proxy: bool) -> Result<ProxyFile> {
        let invalid = || ServiceError::Invalid(Invalid::one(BITS_PATH_INVALID));
        let Some(root) = self.policy.bits_path_root.clone() else {
            return Err(invalid());
        };
        if !from_proxy {
            return Err(invalid());
        }
        let requested = PathBuf::from(bits_path);
        tokio::task::spawn_blocking(move || ProxyFile::open(&root, &requested))
            .await
            .map_err(ServiceError::Task)?
            .ok_or_else(invalid)
    }

    /// Streams an upload into a fresh staging key and stops with
    /// `TooLarge` as soon as it passes `upload.max_body_bytes`. Whatever goes wrong, the
    /// partial blob is discarded.
    ///
    /// `at_least` is how many bytes the body announced it has at least (a form's
    /// Content-Length less what can follow its bits), 0 when it announced nothing: the
    /// blobstore may then send them as they come, where it would otherwise buffer parts.
    /// A body that ends short of it is refused.
    pub async fn ingest<S, E>(
        &self,
        ticket: &UploadTicket,
        body: S,
        at_least: u64,
    ) -> Result<ProcessUpload>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Display,
    {
        let staging_key = staging_key(&ticket.package_guid, &new_guid());
        self.ingest_into(ticket, staging_key, body, at_least).await
    }

    /// [`Services::ingest`] into a given staging key.
    pub(crate) async fn ingest_into<S, E>(
        &self,
        ticket: &UploadTicket,
        staging_key: BlobKey,
        body: S,
        at_least: u64,
    ) -> Result<ProcessUpload>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Display,
    {
        let mut writer = self.blobs.writer(&staging_key).await?;
        let limit = self.policy.max_body_bytes;
        if at_least <= limit {
            writer.expect_at_least(at_least);
        }
        let streamed = self
            .holding_claim(ticket, async {
                let mut size: u64 = 0;
                let mut body = std::pin::pin!(body);
                while let Some(chunk) = body.next().await {
                    let chunk =
                        chunk.map_err(|e| ServiceError::UploadInterrupted(e.to_string()))?;
                    size = size.saturating_add(chunk.len() as u64);
                    if size > limit {
                        return Err(ServiceError::TooLarge { limit });
                    }
                    writer.write(chunk).await?;
                }
                if size < at_least {
                    // Whatever the store, so that both backends answer alike.
                    return Err(ServiceError::UploadInterrupted(format!(
                        "the bits ended after {size} bytes; the request's length left room for at least {at_least}"
                    )));
                }
                Ok(size)
            })
            .await;
        let size = match streamed {
            Ok(size) => size,
            Err(failure) => {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %packages_blobstore::Chain(&e), key = %staging_key, "discarding a partial upload failed");
                }
                return Err(failure);
            }
        };
        writer.finish().await?;
        Ok(ProcessUpload::bits(staging_key, size))
    }

    /// Stores a proxy-stored file opened by [`Services::open_bits_path`] in a fresh staging
    /// key. Its length is known, so it goes as one streamed PUT (S3 needs a length for
    /// that; of a form's bits part only a lower bound is known until it ends) and not as
    /// a multipart upload, whose part buffers the API would hold. Refused with `TooLarge`
    /// before a byte moves when it is over `upload.max_body_bytes`.
    pub async fn ingest_file(
        &self,
        ticket: &UploadTicket,
        file: &ProxyFile,
    ) -> Result<ProcessUpload> {
        let reader = file.reader()?;
        let size = reader
            .metadata()
            .await
            .map_err(|e| ServiceError::UploadInterrupted(e.to_string()))?
            .len();
        let limit = self.policy.max_body_bytes;
        if size > limit {
            return Err(ServiceError::TooLarge { limit });
        }
        let staging_key = staging_key(&ticket.package_guid, &new_guid());
        // A read error is the upload's fault, not the blobstore's: kept to say so.
        let unreadable = Arc::new(OnceLock::new());
        let body = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).map({
            let unreadable = unreadable.clone();
            move |chunk| {
                chunk.map_err(|e| {
                    let _ = unreadable.set(e.to_string());
                    BlobError::Io(e)
                })
            }
        });
        let stored = self
            .holding_claim(ticket, async {
                Ok(self
                    .blobs
                    .put_stream(&staging_key, size, Box::pin(body))
                    .await?)
            })
            .await;
        match stored {
            Ok(()) => Ok(ProcessUpload::bits(staging_key, size)),
            Err(e) => Err(match (unreadable.get(), e) {
                (Some(text), _) => ServiceError::UploadInterrupted(text.clone()),
                (None, ServiceError::Blobstore(BlobError::Length { .. })) => {
                    ServiceError::UploadInterrupted(
                        "the uploaded file changed while it was read".into(),
                    )
                }
                (None, e) => e,
            }),
        }
    }

    /// Runs `store` while renewing the upload's claim every [`CLAIM_RENEWAL`], so that a
    /// long store keeps it; a claim lost meanwhile stops the store (dropped mid-way, a
    /// store leaves nothing behind) with `BitsAlreadyUploaded`.
    async fn holding_claim<T>(
        &self,
        ticket: &UploadTicket,
        store: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut store = std::pin::pin!(store);
        let first = tokio::time::Instant::now() + CLAIM_RENEWAL;
        let mut renewal = tokio::time::interval_at(first, CLAIM_RENEWAL);
        loop {
            tokio::select! {
                stored = &mut store => return stored,
                _ = renewal.tick() => self.renew_claim(ticket).await?,
            }
        }
    }

    /// Stores an upload's `resources` fingerprints (GA) in the staging area, as JSON, for
    /// the worker that assembles the package.
    pub async fn stage_resources(
        &self,
        ticket: &UploadTicket,
        resources: &[Fingerprint],
    ) -> Result<BlobKey> {
        let key = staging_key(
            &ticket.package_guid,
            &format!("{}{RESOURCES_SUFFIX}", new_guid()),
        );
        let json = serde_json::to_vec(resources).map_err(|e| {
            ServiceError::UploadInterrupted(format!("cannot store the resources: {e}"))
        })?;
        let size = json.len() as u64;
        let body = futures_util::stream::once(async move { Ok(Bytes::from(json)) });
        self.blobs.put_stream(&key, size, Box::pin(body)).await?;
        Ok(key)
    }

    /// Accepts a stored upload: AWAITING_UPLOAD → PROCESSING_UPLOAD with its job, in one
    /// transaction. `bits` and `resources` are what [`Services::ingest`] and
    /// [`Services::stage_resources`] stored (at least one of them). Of several concurrent
    /// uploads exactly one gets here first; the others get `BitsAlreadyUploaded` and what
    /// they staged is removed.
    pub async fn accept_upload(
        &self,
        ticket: &UploadTicket,
        bits: Option<ProcessUpload>,
        resources: Option<BlobKey>,
        request_id: &str,
    ) -> Result<PackageView> {
        let guid = ticket.package_guid.clone();
        let claim = ticket.claim.clone();
        let staged = match bits {
            Some(bits) => ProcessUpload {
                resources_key: resources,
                ..bits
            },
            None => ProcessUpload {
                // Names the attempt; nothing is stored there.
                staging_key: staging_key(&guid, &new_guid()),
                size: 0,
                resources_key: resources,
                bits: false,
            },
        };
        let staged_keys: Vec<BlobKey> = std::iter::once(staged.staging_key.clone())
            .filter(|_| staged.bits)
            .chain(staged.resources_key.clone())
            .collect();
        let job = jobs::process_upload(&guid, request_id, staged);
        let outcome = self
            .db
            .run(move |conn| {
                let accepted = packages::accept_upload(conn, &guid, &claim, &job)?;
                let view = match packages::find(conn, &guid)? {
                    Some(package) => Some(PackageView {
                        metadata: metadata::load(conn, &guid)?,
                        package,
                    }),
                    None => None,
                };
                Ok((accepted, view))
            })
            .await;
        match outcome {
            Ok((true, Some(view))) => {
                // Tests crash here to show that a committed upload is not lost when the
                // process dies before its job reaches the queue.
                fail::fail_point!("upload-accepted-before-publish", |_| std::process::abort());
                self.job_recorded();
                Ok(view)
            }
            Ok((accepted, package)) => {
                self.discard_all(&staged_keys).await;
                match (accepted, package) {
                    (_, None) => Err(ServiceError::NotFound(Resource::Package)),
                    _ => Err(ServiceError::BitsAlreadyUploaded),
                }
            }
            Err(e) => {
                // Not recorded: the staged bits would never be picked up.
                self.discard_all(&staged_keys).await;
                Err(e.into())
            }
        }
    }

    async fn discard_all(&self, keys: &[BlobKey]) {
        for key in keys {
            self.discard_staged(key).await;
        }
    }

    /// Removes staged bits that no job will use.
    pub async fn discard_staged(&self, staging_key: &str) {
        if let Err(e) = self.blobs.delete(staging_key).await {
            tracing::warn!(error = %packages_blobstore::Chain(&e), key = %staging_key, "removing staged bits failed");
        }
    }
}

/// A file a front proxy stored, opened once: what was checked is what is read.
#[derive(Debug)]
pub struct ProxyFile {
    file: std::fs::File,
    /// The path as named (inside the root); the only path ever removed.
    named: PathBuf,
}

impl ProxyFile {
    /// Opens `requested` (relative paths against `root`) without following a final symlink,
    /// then checks the open file itself: a regular file with one link, whose real path
    /// lies strictly inside `root`. `None` when any of it fails.
    fn open(root: &Path, requested: &Path) -> Option<ProxyFile> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let root = std::fs::canonicalize(root).ok()?;
        let named = root.join(requested);
        // O_NONBLOCK: a FIFO planted under the name must not hang the open.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&named)
            .ok()?;
        let meta = file.metadata().ok()?;
        // A second link could be a name outside the root for the same bytes.
        if !meta.file_type().is_file() || meta.nlink() != 1 {
            return None;
        }
        let real = real_path(&file)?;
        (real.starts_with(&root) && real != root).then_some(ProxyFile { file, named })
    }

    fn reader(&self) -> Result<tokio::fs::File> {
        let file = self.file.try_clone().map_err(|e| {
            ServiceError::UploadInterrupted(format!("cannot read the uploaded file: {e}"))
        })?;
        Ok(tokio::fs::File::from_std(file))
    }

    /// Removes the named path (a link now standing there goes, not what it points to).
    pub async fn remove(self) {
        let named = self.named;
        if let Err(e) = tokio::fs::remove_file(&named).await {
            tracing::warn!(error = %packages_blobstore::Chain(&e), path = %named.display(), "removing the proxy's upload file failed");
        }
    }
}

/// Where an open file really is, from the kernel's record of the descriptor.
fn real_path(file: &std::fs::File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(test)]
mod tests {
    use super::ProxyFile;

    #[test]
    fn only_single_link_regular_files_inside_the_root_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("uploads");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/app.zip"), b"zip").unwrap();
        std::fs::write(dir.path().join("secret"), b"no").unwrap();
        std::fs::write(root.join("linked.zip"), b"zip").unwrap();
        std::fs::hard_link(root.join("linked.zip"), dir.path().join("outside-name")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/app.zip"), root.join("inner-link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("dir-link")).unwrap();

        let open = |p: &std::path::Path| ProxyFile::open(&root, p);
        assert!(open(&root.join("sub/app.zip")).is_some());
        assert!(open("sub/app.zip".as_ref()).is_some());
        assert!(open(&root.join("sub/../sub/app.zip")).is_some());

        assert!(open(&root.join("../secret")).is_none());
        assert!(open(&dir.path().join("secret")).is_none());
        assert!(open(&root.join("link")).is_none());
        assert!(
            open(&root.join("inner-link")).is_none(),
            "no symlink, even inside"
        );
        assert!(open(&root.join("dir-link/secret")).is_none());
        assert!(
            open(&root.join("linked.zip")).is_none(),
            "hard links refused"
        );
        assert!(open(&root.join("sub")).is_none());
        assert!(open(&root).is_none());
        assert!(open(&root.join("missing.zip")).is_none());
        assert!(open("/etc/passwd".as_ref()).is_none());
    }

    #[tokio::test]
    async fn removing_takes_the_named_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("uploads");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("app.zip"), b"zip").unwrap();
        let file = ProxyFile::open(&root, "app.zip".as_ref()).unwrap();
        // Swapped for a link after the open: the link goes, its target stays.
        std::fs::remove_file(root.join("app.zip")).unwrap();
        std::fs::write(dir.path().join("victim"), b"keep").unwrap();
        std::os::unix::fs::symlink(dir.path().join("victim"), root.join("app.zip")).unwrap();
        file.remove().await;
        assert!(std::fs::symlink_metadata(root.join("app.zip")).is_err());
        assert_eq!(std::fs::read(dir.path().join("victim")).unwrap(), b"keep");
    }
}
