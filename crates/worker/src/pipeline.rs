//! What each job does. Every step tolerates running twice: the final state change is a
//! conditional update, and a job for a package that is already finished or gone is
//! acknowledged and ignored.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use packages_blobstore::{BlobError, Blobstore};
use packages_domain::{FailureReason, Outcome, Package, PackageState, Transition, blob_key};
use packages_jobs::{CopyBits, DeleteBits, JobMessage, ProcessUpload};
use packages_service::{ServiceError, Services};
use packages_telemetry::Metrics;
use packages_zipcheck::{CheckError, Checked, Limits, LocalHeaders, Problem};
use sha1::Digest;

use packages_assembly::{HarvestError, StreamHasher};

use crate::assemble::Assembly;
use crate::pool::FillError;
use crate::pool::WriteAhead;
use crate::zipread::BlobReadAt;

/// Largest staged upload read whole into memory (see `read_whole_if_small`): small apps
/// gain most from fewer round trips, and a worker's jobs in flight hold at most this each.
const READ_WHOLE_MAX: u64 = 256 * 1024;

/// How a job ended, when it ended.
#[derive(Debug)]
pub(crate) enum Done {
    Succeeded,
    /// The package's own fault (bad zip, too large, nothing to copy): FAILED for good.
    Failed(FailureReason),
    /// Nothing to do any more (package finished or deleted meanwhile).
    Ignored(&'static str),
}

/// An infrastructure failure (blobstore, database): the job did not end, and a later
/// attempt may get past it if [`Retry::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Retry {
    #[error("the blobstore failed")]
    Blob(#[from] BlobError),
    #[error("the store failed")]
    Service(#[from] ServiceError),
    #[error("reading the staged upload failed")]
    Read(#[source] std::io::Error),
}

impl Retry {
    /// Whether another attempt may succeed; otherwise the job gives up at once (bad
    /// credentials, a request the store refuses).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Retry::Blob(e) => e.is_retryable(),
            Retry::Service(e) => e.is_retryable(),
            Retry::Read(_) => true,
        }
    }
}

/// Why the pass over the bits stopped.
#[derive(Debug)]
pub(crate) enum Moved {
    /// The zip is at fault: its local headers disagree with its central directory.
    Refused(Problem),
    /// A file the resource pool would take does not decode to what the zip claims.
    Pool(HarvestError),
    Blob(BlobError),
}

impl From<BlobError> for Moved {
    fn from(e: BlobError) -> Self {
        Moved::Blob(e)
    }
}

/// Bytes a digest takes per blocking task: large enough that the hop costs nothing next
/// to the hashing, small enough that a pass holds a few MiB at most.
const DIGEST_BATCH: usize = 1 << 20;

/// The bits' SHA-1 and SHA-256, computed in the pass that reads the bits. For a large
/// package each digest runs on blocking threads, one batch at a time, side by side with
/// the other and with the rest of the pass (local headers, the pool's hashes and
/// writes) instead of after them; a small one is hashed in place.
struct Digests {
    sha1: DigestLane<sha1::Sha1>,
    sha256: DigestLane<sha2::Sha256>,
}

impl Digests {
    fn new(size: u64) -> Self {
        let offload = size >= crate::LARGE_JOB_BYTES;
        Digests {
            sha1: DigestLane::new(offload),
            sha256: DigestLane::new(offload),
        }
    }

    async fn update(&mut self, chunk: &Bytes) -> Result<(), Moved> {
        self.sha1.update(chunk).await?;
        self.sha256.update(chunk).await
    }

    async fn finish(self) -> Result<(String, String), Moved> {
        Ok((self.sha1.finish().await?, self.sha256.finish().await?))
    }
}

/// One digest, fed batch by batch. Each batch is hashed by a blocking task that only
/// computes, and the next waits for it: no blocking thread ever waits on the pass, so
/// however many passes run, they cannot hold every blocking thread waiting on each
/// other.
struct DigestLane<D> {
    /// `None` while a task holds it.
    digest: Option<D>,
    running: Option<tokio::task::JoinHandle<D>>,
    offload: bool,
    /// Chunks not hashed yet (shared with the read, not copied).
    batch: Vec<Bytes>,
    batched: usize,
}

impl<D: Digest + Send + 'static> DigestLane<D> {
    fn new(offload: bool) -> Self {
        DigestLane {
            digest: Some(D::new()),
            running: None,
            offload,
            batch: Vec::new(),
            batched: 0,
        }
    }

    async fn update(&mut self, chunk: &Bytes) -> Result<(), Moved> {
        if !self.offload {
            self.digest.get_or_insert_with(D::new).update(chunk);
            return Ok(());
        }
        self.batch.push(chunk.clone());
        self.batched += chunk.len();
        if self.batched >= DIGEST_BATCH {
            self.dispatch().await?;
        }
        Ok(())
    }

    /// The digest back from the task that holds it, if one does.
    async fn take(&mut self) -> Result<D, Moved> {
        match self.running.take() {
            Some(task) => task.await.map_err(|e| {
                Moved::Blob(BlobError::Stopped(format!("hashing the bits failed: {e}")))
            }),
            None => Ok(self.digest.take().unwrap_or_else(D::new)),
        }
    }

    async fn dispatch(&mut self) -> Result<(), Moved> {
        let mut digest = self.take().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        self.running = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                digest.update(chunk);
            }
            digest
        }));
        Ok(())
    }

    async fn finish(mut self) -> Result<String, Moved> {
        if !self.batch.is_empty() {
            self.dispatch().await?;
        }
        Ok(hex::encode(self.take().await?.finalize()))
    }
}

/// `part` of `chunk` as its own `Bytes`: shared with the chunk when it lies inside it (a
/// stored file's bytes), copied when it does not (an inflated file's).
fn piece_of(chunk: &Bytes, part: &[u8]) -> Bytes {
    let (start, end) = (
        chunk.as_ptr() as usize,
        chunk.as_ptr() as usize + chunk.len(),
    );
    let at = part.as_ptr() as usize;
    if !part.is_empty() && at >= start && at + part.len() <= end {
        chunk.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

pub(crate) struct Pipeline {
    pub services: Services,
    pub metrics: Metrics,
}

impl Pipeline {
    pub(crate) fn blobs(&self) -> &Arc<dyn Blobstore> {
        self.services.blobs()
    }

    async fn find(&self, guid: &str) -> Result<Option<Package>, Retry> {
        Ok(self.services.find_package(guid).await?)
    }

    /// Applies a job's final transition and removes the package's job rows, together.
    async fn finish(
        &self,
        guid: &str,
        transition: Transition,
        outcome: Outcome,
    ) -> Result<bool, Retry> {
        Ok(self.services.finish_job(guid, transition, outcome).await?)
    }

    async fn discard(&self, key: &str) {
        if let Err(e) = self.blobs().delete(key).await {
            tracing::warn!(error = %packages_blobstore::Chain(&e), key, "deleting a blob failed; the staging sweep will retry");
        }
    }

    /// Marks the package FAILED (if it is still pending in `state`) and removes the
    /// staged bits.
    async fn fail(
        &self,
        package: &Package,
        reason: FailureReason,
        staging_key: Option<&str>,
    ) -> Result<Done, Retry> {
        if Transition::failure_from(package.state).is_none() {
            return Ok(Done::Ignored("package no longer pending"));
        }
        let applied = self.services.fail_package(package, &reason).await?;
        if let Some(key) = staging_key {
            self.discard(key).await;
        }
        if applied {
            tracing::info!(reason = %reason.message(), "package FAILED");
            Ok(Done::Failed(reason))
        } else {
            Ok(Done::Ignored("package finished meanwhile"))
        }
    }

    /// Keeps the app's newest READY packages; older ones expire and lose their bits.
    async fn expire(&self, app_guid: &str, request_id: &str) {
        match self
            .services
            .expire_older_packages(app_guid, request_id)
            .await
        {
            Ok(expired) if !expired.is_empty() => {
                tracing::info!(expired = ?expired, "older packages expired");
            }
            Ok(_) => {}
            // The package itself is READY; expiration runs again after the next upload.
            Err(e) => {
                tracing::warn!(error = %packages_blobstore::Chain(&e), "expiring older packages failed")
            }
        }
    }

    /// After a final update found the package changed: bits we wrote for a package that
    /// is gone or did not become READY must not stay behind.
    async fn drop_orphaned_bits(&self, guid: &str) -> Result<(), Retry> {
        match self.find(guid).await? {
            Some(p) if p.state == PackageState::Ready => {}
            _ => self.discard(&blob_key(guid)).await,
        }
        Ok(())
    }

    pub(crate) async fn process_upload(
        &self,
        message: &JobMessage,
        job: &ProcessUpload,
    ) -> Result<Done, Retry> {
        // What this upload staged: its bits, and the fingerprints of its resources.
        let uploaded: Vec<&str> = std::iter::once(job.staging_key.as_str())
            .filter(|_| job.bits)
            .chain(job.resources_key.as_deref())
            .collect();
        let Some(package) = self.find(&message.package_guid).await? else {
            self.discard_all(&uploaded).await;
            return Ok(Done::Ignored("package deleted"));
        };
        if package.state != PackageState::ProcessingUpload {
            self.discard_all(&uploaded).await;
            return Ok(Done::Ignored("package already finished"));
        }
        // An upload with resources is first assembled into a zip of its own.
        let assembled = match &job.resources_key {
            Some(resources_key) => match self.assemble(&package, job, resources_key).await? {
                Assembly::Staged { key, size } => Some((key, size)),
                Assembly::Refused(reason) => {
                    let done = self.fail(&package, reason, None).await?;
                    self.discard_all(&uploaded).await;
                    return Ok(done);
                }
            },
            None => None,
        };
        let (staging, expected_size) = match &assembled {
            Some((key, size)) => (key.as_str(), *size),
            None => (job.staging_key.as_str(), job.size),
        };
        let finished = self
            .store_upload(message, &package, staging, expected_size)
            .await;
        // A retry assembles again from the inputs: they stay until the job ended, and
        // this attempt's zip goes at once.
        match (&assembled, &finished) {
            (Some(_), Ok(_)) => self.discard_all(&uploaded).await,
            (Some((key, _)), Err(_)) => self.discard(key).await,
            (None, _) => {}
        }
        finished
    }

    async fn discard_all(&self, keys: &[&str]) {
        for key in keys {
            self.discard(key).await;
        }
    }

    /// Validates the zip staged at `staging`, stores it as the package's bits while
    /// hashing it, fills the resource pool from it, and makes the package READY.
    async fn store_upload(
        &self,
        message: &JobMessage,
        package: &Package,
        staging: &str,
        expected_size: u64,
    ) -> Result<Done, Retry> {
        let package = package.clone();
        let bits_key = package.blob_key();
        // The checked bits become the package's by rename. An attempt that died after
        // the rename left them at the package's key: a retry checks them there.
        let whole = self.read_whole_if_small(staging, expected_size).await?;
        let (source, size) = match &whole {
            Some(bytes) => (staging, bytes.len() as u64),
            None => match self.blobs().size(staging).await? {
                Some(size) => (staging, size),
                None => match self.blobs().size(&bits_key).await? {
                    Some(size) => (bits_key.as_str(), size),
                    None => return self.staged_bits_missing(&package).await,
                },
            },
        };
        let checked = match &whole {
            Some(bytes) => packages_zipcheck::check(&bytes[..], &self.zip_limits()),
            None => self.check_zip(source, size).await,
        };
        let (local_headers, largest_file) = match checked {
            Ok(checked) => {
                tracing::info!(
                    entries = checked.summary.entries,
                    uncompressed = checked.summary.uncompressed_bytes,
                    "zip checked"
                );
                (checked.local_headers, checked.summary.largest_file_bytes)
            }
            Err(CheckError::Invalid(problem)) => {
                self.discard(source).await;
                return self
                    .fail(&package, failure_for(problem), Some(staging))
                    .await;
            }
            Err(CheckError::Io(e)) => return Err(Retry::Read(e)),
        };
        // The files the resource pool may take are hashed in the same pass: before READY
        // (a client that sees READY can match them at once), without a read of their own.
        // An archive whose files are all below the pool's minimum has nothing for it, and
        // the check already read its central directory: no second read.
        let mut pool_hasher = if largest_file >= self.services.policy().resource_pool.minimum_size {
            match crate::pool::candidates(&self.services, source, size, whole.as_ref()).await {
                Ok(candidates) => Some(StreamHasher::new(candidates)),
                Err(FillError::Corrupt(corrupt)) => {
                    return self
                        .refuse_inconsistent(&package, source, staging, corrupt)
                        .await;
                }
                Err(FillError::Service(e)) => return Err(e.into()),
                Err(FillError::Infrastructure(e)) => return Err(Retry::Read(e)),
            }
        } else {
            None
        };
        let mut write_ahead = match &mut pool_hasher {
            Some(hasher) => {
                match crate::pool::choose_write_ahead(&self.services, hasher, &package.guid, source)
                    .await
                {
                    Ok(write_ahead) => write_ahead,
                    Err(FillError::Service(e)) => return Err(e.into()),
                    Err(FillError::Corrupt(corrupt)) => {
                        return self
                            .refuse_inconsistent(&package, source, staging, corrupt)
                            .await;
                    }
                    Err(FillError::Infrastructure(e)) => return Err(Retry::Read(e)),
                }
            }
            None => None,
        };
        // Tests pause here to cut the blobstore between the check and the move.
        fail::fail_point!("worker-before-move");
        let hashed = self
            .hash_checking(
                source,
                whole,
                size,
                local_headers,
                pool_hasher.as_mut(),
                write_ahead.as_mut(),
            )
            .await;
        if hashed.is_err()
            && let Some(write_ahead) = write_ahead.take()
        {
            write_ahead.abandon().await;
        }
        // The store's copies read the staged package: done before it is renamed.
        let written = match write_ahead {
            Some(write_ahead) => write_ahead.into_written().await,
            None => std::collections::HashMap::new(),
        };
        let (sha1, sha256, moved) = match hashed {
            Ok(done) => done,
            Err(Moved::Refused(problem)) => {
                self.discard(source).await;
                return self
                    .fail(&package, failure_for(problem), Some(staging))
                    .await;
            }
            Err(Moved::Pool(corrupt)) => {
                return self
                    .refuse_inconsistent(&package, source, staging, corrupt)
                    .await;
            }
            Err(Moved::Blob(BlobError::NotFound(_))) => {
                return self.staged_bits_missing(&package).await;
            }
            Err(Moved::Blob(e)) => return Err(e.into()),
        };
        // Read once, written never again: a rename on local disk, a server-side move on
        // S3 (its write happens inside the S3 server).
        tracing::info!(bytes = moved, "bits hashed");
        if bits_key != source {
            match self.blobs().rename(source, &bits_key).await {
                Ok(()) => {}
                Err(BlobError::NotFound(_)) => return self.staged_bits_missing(&package).await,
                Err(e) => return Err(e.into()),
            }
            tracing::info!("bits renamed");
        }
        if moved != expected_size {
            tracing::warn!(
                staged = expected_size,
                moved,
                "staged upload changed size since it was accepted"
            );
        }
        let fill = match pool_hasher.map(StreamHasher::finish) {
            None => Ok(Vec::new()),
            Some(Ok(hashed)) => {
                crate::pool::fill(&self.services, &bits_key, moved, hashed, written).await
            }
            Some(Err(e)) => Err(FillError::from(e)),
        };
        let pooled = match fill {
            Ok(pooled) => pooled,
            Err(FillError::Corrupt(corrupt)) => {
                return self
                    .refuse_inconsistent(&package, &bits_key, staging, corrupt)
                    .await;
            }
            Err(FillError::Service(e)) => return Err(e.into()),
            Err(FillError::Infrastructure(e)) => return Err(Retry::Read(e)),
        };
        let outcome = Outcome {
            sha1: Some(sha1),
            sha256: Some(sha256),
            error: None,
        };
        if !self
            .finish(&package.guid, Transition::UploadSucceeded, outcome)
            .await?
        {
            self.drop_orphaned_bits(&package.guid).await?;
            self.discard(staging).await;
            crate::pool::sync(&self.services, &pooled).await;
            return Ok(Done::Ignored("package finished or deleted meanwhile"));
        }
        self.discard(staging).await;
        tracing::info!(bytes = moved, "package READY");
        crate::pool::sync(&self.services, &pooled).await;
        self.expire(&package.app_guid, &message.request_id).await;
        Ok(Done::Succeeded)
    }

    /// A file of the package does not decode to what its central directory claims: the
    /// package would not unpack, so it is FAILED and its bits at `bits` go.
    async fn refuse_inconsistent(
        &self,
        package: &Package,
        bits: &str,
        staging: &str,
        corrupt: HarvestError,
    ) -> Result<Done, Retry> {
        self.discard(bits).await;
        self.fail(
            package,
            FailureReason::InconsistentZip(corrupt.to_string()),
            Some(staging),
        )
        .await
    }

    /// The staged bits vanished while the package still waits for them: a duplicate job
    /// may have just finished, otherwise nothing can bring them back.
    async fn staged_bits_missing(&self, package: &Package) -> Result<Done, Retry> {
        match self.find(&package.guid).await? {
            Some(p) if p.state == PackageState::ProcessingUpload => {
                self.fail(
                    &p,
                    FailureReason::GaveUp(
                        "the uploaded bits are missing from the staging area".into(),
                    ),
                    None,
                )
                .await
            }
            _ => Ok(Done::Ignored("package finished meanwhile")),
        }
    }

    /// Reads only the central directory, on a blocking thread (each read waits on the
    /// runtime). The local headers are checked later, in the pass that hashes the bits.
    pub(crate) async fn check_zip(&self, key: &str, size: u64) -> Result<Checked, CheckError> {
        let reader = BlobReadAt::new(self.blobs().clone(), key, size);
        let limits = self.zip_limits();
        tokio::task::spawn_blocking(move || packages_zipcheck::check(&reader, &limits))
            .await
            .map_err(|e| CheckError::Io(std::io::Error::other(e.to_string())))?
    }

    fn zip_limits(&self) -> Limits {
        let policy = self.services.policy();
        Limits {
            max_uncompressed_bytes: policy.max_package_size,
            max_entries: policy.max_zip_entries,
            max_name_bytes: policy.max_zip_name_bytes,
            max_symlinks: policy.max_zip_symlinks,
        }
    }

    /// A staged upload of at most [`READ_WHOLE_MAX`] bytes, read in one request: its
    /// check and its hashing then read memory, where each would be a request of its own
    /// (with the size's, three round trips to the blobstore instead of one). `None` for
    /// a larger or empty upload, or one no longer staged, which take the general path.
    async fn read_whole_if_small(
        &self,
        staging: &str,
        expected_size: u64,
    ) -> Result<Option<Bytes>, Retry> {
        if expected_size == 0 || expected_size > READ_WHOLE_MAX {
            return Ok(None);
        }
        match self
            .blobs()
            .read_range(staging, 0, READ_WHOLE_MAX + 1)
            .await
        {
            Ok(bytes) if bytes.len() as u64 <= READ_WHOLE_MAX => Ok(Some(bytes)),
            Ok(_) | Err(BlobError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the `size` bytes at `key` once (or takes them `whole`, already read),
    /// hashing every byte and checking the local headers on the way, and hands the pool's
    /// hasher and writes their share; memory stays a few read chunks. A local header at
    /// odds with the central directory stops the read.
    async fn hash_checking(
        &self,
        key: &str,
        whole: Option<Bytes>,
        size: u64,
        mut local_headers: LocalHeaders,
        mut pool_hasher: Option<&mut StreamHasher>,
        mut write_ahead: Option<&mut WriteAhead>,
    ) -> Result<(String, String, u64), Moved> {
        let mut digests = Digests::new(size);
        let mut read = 0u64;
        let mut chunks = match whole {
            Some(bytes) => Box::pin(futures_util::stream::iter([Ok(bytes)])),
            None => self.blobs().read(key).await?,
        };
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            digests.update(&chunk).await?;
            local_headers.update(&chunk).map_err(Moved::Refused)?;
            if let Some(hasher) = pool_hasher.as_deref_mut() {
                let mut rest: &[u8] = &chunk;
                loop {
                    let mut piece = None;
                    hasher
                        .feed_some(&mut rest, &mut |position, bytes| {
                            piece = Some((position, piece_of(&chunk, bytes)));
                        })
                        .map_err(Moved::Pool)?;
                    if let Some(writes) = write_ahead.as_deref_mut() {
                        writes.start_copies(hasher);
                        if let Some((position, bytes)) = piece {
                            let size = hasher.candidates().get(position).map_or(0, |c| c.size());
                            writes.send(position, size, bytes).await?;
                        }
                        writes.complete_below(hasher.hashed()).await?;
                    }
                    if rest.is_empty() {
                        break;
                    }
                }
            }
            read += chunk.len() as u64;
            self.metrics.bits_hashed(chunk.len() as u64);
        }
        local_headers.finish().map_err(Moved::Refused)?;
        let (sha1, sha256) = digests.finish().await?;
        Ok((sha1, sha256, read))
    }

    pub(crate) async fn copy_bits(
        &self,
        message: &JobMessage,
        job: &CopyBits,
    ) -> Result<Done, Retry> {
        let Some(package) = self.find(&message.package_guid).await? else {
            return Ok(Done::Ignored("package deleted"));
        };
        if package.state != PackageState::Copying {
            return Ok(Done::Ignored("package already finished"));
        }
        let source = match self.find(&job.source_package_guid).await? {
            None => {
                return self
                    .fail(
                        &package,
                        FailureReason::CopyFailed("source package does not exist".into()),
                        None,
                    )
                    .await;
            }
            Some(source) if source.state != PackageState::Ready || source.sha1.is_none() => {
                let detail = format!("source package has no bits (it is {})", source.state);
                return self
                    .fail(&package, FailureReason::CopyFailed(detail), None)
                    .await;
            }
            Some(source) => source,
        };
        match self
            .blobs()
            .copy(&source.blob_key(), &package.blob_key())
            .await
        {
            Ok(()) => {}
            Err(BlobError::NotFound(_)) => {
                let detail = "the source package's bits are missing from the blobstore".to_owned();
                return self
                    .fail(&package, FailureReason::CopyFailed(detail), None)
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
        let outcome = Outcome {
            sha1: source.sha1.clone(),
            sha256: source.sha256.clone(),
            error: None,
        };
        if !self
            .finish(&package.guid, Transition::CopySucceeded, outcome)
            .await?
        {
            self.drop_orphaned_bits(&package.guid).await?;
            return Ok(Done::Ignored("package finished or deleted meanwhile"));
        }
        tracing::info!(source = %source.guid, "package copied, READY");
        self.expire(&package.app_guid, &message.request_id).await;
        Ok(Done::Succeeded)
    }

    pub(crate) async fn delete_bits(
        &self,
        message: &JobMessage,
        job: &DeleteBits,
    ) -> Result<Done, Retry> {
        self.blobs().delete(&job.blob_key).await?;
        self.services
            .forget_job(&message.job_id.to_string())
            .await?;
        tracing::info!(key = %job.blob_key, "bits deleted");
        Ok(Done::Succeeded)
    }

    /// Gives up on a job (retries spent, or quarantined): the package becomes FAILED with
    /// `reason` (delete jobs just stop).
    pub(crate) async fn give_up(
        &self,
        message: &JobMessage,
        reason: FailureReason,
    ) -> Result<Option<FailureReason>, Retry> {
        match &message.payload {
            packages_jobs::JobPayload::DeleteBits(_) => {
                self.services
                    .forget_job(&message.job_id.to_string())
                    .await?;
                Ok(None)
            }
            payload => {
                let staging = match payload {
                    packages_jobs::JobPayload::ProcessUpload(u) => Some(u.staging_key.as_str()),
                    _ => None,
                };
                let Some(package) = self.find(&message.package_guid).await? else {
                    return Ok(None);
                };
                match self.fail(&package, reason, staging).await? {
                    Done::Failed(reason) => Ok(Some(reason)),
                    _ => Ok(None),
                }
            }
        }
    }
}

pub(crate) fn failure_for(problem: Problem) -> FailureReason {
    match problem {
        Problem::NotAZip(_) | Problem::Empty => FailureReason::InvalidZip,
        Problem::TooLarge { .. } => FailureReason::TooLarge,
        unsafe_entry @ (Problem::UnsafePath { .. } | Problem::UnsafeSymlink { .. }) => {
            FailureReason::UnsafeEntry(unsafe_entry.to_string())
        }
        limit @ (Problem::TooManyEntries { .. }
        | Problem::NameTooLong { .. }
        | Problem::TooManySymlinks { .. }) => FailureReason::ZipLimit(limit.to_string()),
        inconsistent @ (Problem::LocalHeaderMismatch { .. }
        | Problem::MissingLocalHeader { .. }
        | Problem::OverlappingEntries { .. }
        | Problem::UnlistedData { .. }) => FailureReason::InconsistentZip(inconsistent.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Batched on blocking threads or hashed in place, in chunks of any size, the digests
    /// are those of the bytes in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn digests_are_the_same_however_they_run() {
        let data: Vec<u8> = (0..3 * DIGEST_BATCH + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let expected = (
            hex::encode(sha1::Sha1::digest(&data)),
            hex::encode(sha2::Sha256::digest(&data)),
        );
        for size in [0, crate::LARGE_JOB_BYTES] {
            for chunk in [1_000, 64 * 1024, DIGEST_BATCH + 1, data.len()] {
                let mut digests = Digests::new(size);
                for piece in data.chunks(chunk) {
                    digests
                        .update(&Bytes::copy_from_slice(piece))
                        .await
                        .unwrap();
                }
                assert_eq!(
                    digests.finish().await.unwrap(),
                    expected,
                    "size {size}, chunks of {chunk}"
                );
            }
        }
        let empty = Digests::new(crate::LARGE_JOB_BYTES).finish().await.unwrap();
        assert_eq!(empty.0, hex::encode(sha1::Sha1::digest(b"")));
    }
}
