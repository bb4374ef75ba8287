//! The worker's side of the resource pool: reading pool files for an assembly, and
//! filling the pool from a package that is about to become READY (GA spec 10.1).
//!
//! The zip work is synchronous (`packages-assembly`) and runs on blocking threads; these
//! adapters let it read and write the blobstore, which is async, through bounded
//! channels, so memory stays a few buffers whatever the sizes.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use packages_assembly::{Candidate, Compression, HarvestError, Pool, StreamHasher};
use packages_blobstore::{BlobError, Blobstore};
use packages_domain::{new_guid, staging_key};
use packages_service::Services;
use packages_service::resource_pool::pool_key;
use sha1::Digest;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::zipread::BlobReadAt;

/// Chunks a blocking writer hands to the blobstore at a time.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between a blocking writer and the blobstore.
const IN_FLIGHT: usize = 4;

/// A blocking [`Write`] whose bytes go to a blobstore writer, chunk by chunk, through a
/// bounded channel. The async half ([`BlobSink::store`]) runs next to the blocking task.
pub(crate) struct ChannelWriter {
    buffer: Vec<u8>,
    sender: mpsc::Sender<Bytes>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the blob writer stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// The receiving half: stores what a [`ChannelWriter`] sends under one key.
pub(crate) struct BlobSink {
    receiver: mpsc::Receiver<Bytes>,
}

pub(crate) fn channel() -> (ChannelWriter, BlobSink) {
    let (sender, receiver) = mpsc::channel(IN_FLIGHT);
    (
        ChannelWriter {
            buffer: Vec::with_capacity(CHUNK),
            sender,
        },
        BlobSink { receiver },
    )
}

impl BlobSink {
    /// Writes everything received under `key` once the sender is done; `commit` decides,
    /// after the last chunk, whether the blob is kept (the producer succeeded) or dropped.
    /// Returns the bytes stored.
    pub(crate) async fn store(
        mut self,
        blobs: &Arc<dyn Blobstore>,
        key: &str,
        commit: impl std::future::Future<Output = bool>,
    ) -> Result<u64, BlobError> {
        let mut writer = blobs.writer(key).await?;
        let mut written = 0u64;
        while let Some(chunk) = self.receiver.recv().await {
            written += chunk.len() as u64;
            if let Err(e) = writer.write(chunk).await {
                // Closing the channel makes the producer's next send fail at once.
                self.receiver.close();
                let _ = writer.abort().await;
                return Err(e);
            }
        }
        if commit.await {
            writer.finish().await?;
        } else {
            writer.abort().await?;
        }
        Ok(written)
    }
}

impl BlobSink {
    /// Like [`BlobSink::store`] for a blob of known `size`: one streamed request where the
    /// store allows it (S3: a single PUT, no part buffers), so the pool costs the worker no
    /// more memory than the channel. The last chunk is held back until `commit` says the
    /// producer succeeded; otherwise the body ends in an error and nothing is stored.
    /// Only pool files are stored this way, so the write does not wait for the disk:
    /// [`sync`] follows once the package is READY.
    pub(crate) async fn store_sized(
        self,
        blobs: &Arc<dyn Blobstore>,
        key: &str,
        size: u64,
        commit: tokio::sync::oneshot::Receiver<bool>,
    ) -> Result<(), BlobError> {
        let state = (self.receiver, None::<Bytes>, Some(commit));
        let body = futures_util::stream::unfold(
            state,
            |(mut receiver, mut held, mut commit)| async move {
                loop {
                    match receiver.recv().await {
                        Some(chunk) => match held.replace(chunk) {
                            Some(previous) => {
                                return Some((Ok(previous), (receiver, held, commit)));
                            }
                            None => continue,
                        },
                        None => {
                            let last = held.take()?;
                            let succeeded = match commit.take() {
                                Some(verdict) => verdict.await.unwrap_or(false),
                                None => false,
                            };
                            let item = if succeeded {
                                Ok(last)
                            } else {
                                Err(BlobError::Stopped("the pool file did not check out".into()))
                            };
                            return Some((item, (receiver, None, None)));
                        }
                    }
                }
            },
        );
        blobs.put_stream_unsynced(key, size, Box::pin(body)).await
    }
}

/// Pool files read from the blobstore for an assembly, on a blocking thread.
pub(crate) struct BlobPool {
    pub blobs: Arc<dyn Blobstore>,
    pub runtime: Handle,
}

impl Pool for BlobPool {
    fn open(&self, sha1: &str) -> io::Result<Box<dyn Read + '_>> {
        let stream = self
            .runtime
            .block_on(self.blobs.read(&pool_key(sha1)))
            .map_err(blob_to_io)?;
        Ok(Box::new(StreamRead {
            stream,
            current: Bytes::new(),
            runtime: &self.runtime,
        }))
    }
}

/// A blob's byte stream read synchronously, one chunk at a time.
struct StreamRead<'a> {
    stream: packages_blobstore::ByteStream,
    current: Bytes,
    runtime: &'a Handle,
}

impl Read for StreamRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(chunk) => self.current = chunk.map_err(blob_to_io)?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

pub(crate) fn blob_to_io(e: BlobError) -> io::Error {
    match e {
        BlobError::Io(io) => io,
        BlobError::NotFound(key) => io::Error::new(io::ErrorKind::NotFound, key),
        other => io::Error::other(other),
    }
}

/// Why filling the pool stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FillError {
    /// The package's own data is damaged (an entry's CRC-32 or length is wrong): it would
    /// not unpack.
    #[error("{0}")]
    Corrupt(HarvestError),
    /// Reading the package or writing the pool failed; another attempt may get past it.
    #[error("filling the resource pool failed")]
    Infrastructure(#[source] io::Error),
    #[error("filling the resource pool failed")]
    Service(#[from] packages_service::ServiceError),
}

impl From<HarvestError> for FillError {
    fn from(e: HarvestError) -> Self {
        match e {
            HarvestError::Read(io) => FillError::Infrastructure(io),
            other => FillError::Corrupt(other),
        }
    }
}

/// The files of the zip at `key` that the pool's size window takes (GA spec 10.1): read
/// from its central directory only. Their SHA-1s come from the pass that hashes the whole
/// package ([`packages_assembly::StreamHasher`]), so the pool costs no read of its own to
/// learn which files it lacks.
pub(crate) async fn candidates(
    services: &Services,
    key: &str,
    size: u64,
    whole: Option<&Bytes>,
) -> Result<Vec<Candidate>, FillError> {
    let bounds = services.policy().resource_pool;
    // A small upload already read whole is not asked for again.
    if let Some(bytes) = whole {
        return Ok(packages_assembly::pool_candidates(
            &&bytes[..],
            bounds.minimum_size,
            bounds.maximum_size,
        )?);
    }
    let zip = BlobReadAt::new(services.blobs().clone(), key, size);
    Ok(blocking(move || {
        packages_assembly::pool_candidates(&zip, bounds.minimum_size, bounds.maximum_size)
    })
    .await??)
}

/// Files at least this large are written into the pool while the package is read, when
/// the pool holds no file of their size (so it certainly lacks them): reading them again
/// afterwards would cost more than the server-side move that puts them under their
/// SHA-1. Smaller files are stored after the pass, and only those the pool lacks.
pub(crate) const WRITE_AHEAD_MIN: u64 = 1 << 20;

/// Whether a large file's pool entry is made by the store itself from its range of the
/// package: a stored (uncompressed) entry's bytes are the file, and a store that copies
/// ranges inside itself (S3) then moves none of them through the worker, where writing
/// them ahead would upload them all a second time.
fn copied_in_store(blobs: &dyn Blobstore, candidate: &Candidate) -> bool {
    blobs.copies_ranges()
        && candidate.size() >= WRITE_AHEAD_MIN
        && candidate.compression() == Compression::Stored
}

/// Picks the candidates to write while the package at `source` is read (see
/// [`WRITE_AHEAD_MIN`]): those the store copies from their range of the package, the
/// others streamed as the pass inflates them. `None` when there are none.
pub(crate) async fn choose_write_ahead(
    services: &Services,
    hasher: &mut StreamHasher,
    package_guid: &str,
    source: &str,
) -> Result<Option<WriteAhead>, FillError> {
    let large: Vec<u64> = hasher
        .candidates()
        .iter()
        .map(Candidate::size)
        .filter(|size| *size >= WRITE_AHEAD_MIN)
        .collect();
    if large.is_empty() {
        return Ok(None);
    }
    let held = services.pool_sizes_held(large).await?;
    let blobs = services.blobs().clone();
    let ahead = |c: &Candidate| c.size() >= WRITE_AHEAD_MIN && !held.contains(&c.size());
    let copies: Vec<bool> = hasher
        .candidates()
        .iter()
        .map(|c| ahead(c) && copied_in_store(blobs.as_ref(), c))
        .collect();
    hasher.tap(|c| ahead(c) && !copied_in_store(blobs.as_ref(), c));
    Ok(Some(WriteAhead {
        blobs,
        package_guid: package_guid.to_owned(),
        source: source.to_owned(),
        active: None,
        written: HashMap::new(),
        copies,
        located: 0,
        copying: None,
    }))
}

/// Pool files written while the package is read: each goes to a key in the package's
/// staging area until the pass has hashed and checked it whole; [`fill`] then moves it
/// under its SHA-1, or drops it when the pool turns out to hold it. Keys left behind by a
/// process that died go with the staging sweep.
///
/// A file the store copies (see [`copied_in_store`]) is copied from the package as soon
/// as the pass has read its local header, beside the pass rather than after it: the
/// bytes are the staged package's, which nothing changes, so the pass's checks of them
/// hold for the copy too, and a file the pass refuses is dropped with the rest.
pub(crate) struct WriteAhead {
    blobs: Arc<dyn Blobstore>,
    package_guid: String,
    /// The staged package the pass reads.
    source: String,
    active: Option<Active>,
    /// By candidate position: where that file lies, whole.
    written: HashMap<usize, Ahead>,
    /// By candidate position: whether the store copies it.
    copies: Vec<bool>,
    /// Candidates whose copy was started or passed over.
    located: usize,
    /// The copies, one after another: the task that runs them and where it takes them.
    copying: Option<Copying>,
}

/// A pool file put in the package's staging area during the pass.
pub(crate) struct Ahead {
    key: String,
    /// Copied by the store, rather than written by the worker.
    copied: bool,
}

struct Copying {
    queue: mpsc::UnboundedSender<(usize, u64, u64)>,
    task: tokio::task::JoinHandle<Vec<(usize, Result<String, BlobError>)>>,
}

/// The file being written.
struct Active {
    position: usize,
    key: String,
    sender: mpsc::Sender<Bytes>,
    commit: tokio::sync::oneshot::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), BlobError>>,
}

impl WriteAhead {
    /// The next bytes of the candidate at `position` (of `size` bytes in all).
    pub(crate) async fn send(
        &mut self,
        position: usize,
        size: u64,
        bytes: Bytes,
    ) -> Result<(), BlobError> {
        if self.active.as_ref().is_some_and(|a| a.position != position) {
            // Only a file the pass finished makes way for the next.
            return Err(BlobError::Bug("a pool file was left unfinished"));
        }
        let active = match &mut self.active {
            Some(active) => active,
            None => {
                let key = staging_key(&self.package_guid, &format!("pool-{}", new_guid()));
                let (sender, receiver) = mpsc::channel(IN_FLIGHT);
                let (commit, verdict) = tokio::sync::oneshot::channel();
                let (blobs, task_key) = (self.blobs.clone(), key.to_string());
                let task = tokio::spawn(async move {
                    BlobSink { receiver }
                        .store_sized(&blobs, &task_key, size, verdict)
                        .await
                });
                self.active.insert(Active {
                    position,
                    key: key.to_string(),
                    sender,
                    commit,
                    task,
                })
            }
        };
        if active.sender.send(bytes).await.is_err() {
            // The store stopped reading: its error says why.
            let Some(active) = self.active.take() else {
                return Err(BlobError::Bug("no pool file is being written"));
            };
            return Err(match active.task.await {
                Ok(Err(e)) => e,
                _ => BlobError::Stopped("writing a pool file stopped".into()),
            });
        }
        Ok(())
    }

    /// Completes the file being written once the pass has hashed `hashed` candidates and
    /// so checked it whole.
    pub(crate) async fn complete_below(&mut self, hashed: usize) -> Result<(), BlobError> {
        if self.active.as_ref().is_none_or(|a| a.position >= hashed) {
            return Ok(());
        }
        let Some(Active {
            position,
            key,
            sender,
            commit,
            task,
        }) = self.active.take()
        else {
            return Ok(());
        };
        drop(sender);
        let _ = commit.send(true);
        match task.await {
            Ok(Ok(())) => {
                let ahead = Ahead { key, copied: false };
                self.written.insert(position, ahead);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(BlobError::Stopped(format!(
                "writing a pool file failed: {e}"
            ))),
        }
    }

    /// Starts the store's copy of each file it copies whose local header the pass has
    /// read by now.
    pub(crate) fn start_copies(&mut self, hasher: &StreamHasher) {
        while self.located < hasher.located() {
            let position = self.located;
            self.located += 1;
            let span = hasher
                .candidates()
                .get(position)
                .and_then(Candidate::stored_bytes);
            let (true, Some((offset, len))) = (self.copies.get(position) == Some(&true), span)
            else {
                continue;
            };
            let copying = self.copying.get_or_insert_with(|| {
                let (queue, mut files) = mpsc::unbounded_channel::<(usize, u64, u64)>();
                let (blobs, source) = (self.blobs.clone(), self.source.clone());
                let guid = self.package_guid.clone();
                let task = tokio::spawn(async move {
                    let mut copied = Vec::new();
                    while let Some((position, offset, len)) = files.recv().await {
                        let key = staging_key(&guid, &format!("pool-{}", new_guid())).to_string();
                        let result = blobs.copy_range(&source, offset, len, &key).await;
                        copied.push((position, result.map(|()| key)));
                    }
                    copied
                });
                Copying { queue, task }
            });
            // The task ends only once the queue is dropped, so it still takes this.
            let _ = copying.queue.send((position, offset, len));
        }
    }

    /// Waits for the store's copies and adds those that succeeded to the files written.
    /// One that failed is left out: [`fill`] then tries it again from the package.
    async fn finish_copies(&mut self) {
        let Some(Copying { queue, task }) = self.copying.take() else {
            return;
        };
        drop(queue);
        let copied = match task.await {
            Ok(copied) => copied,
            Err(e) => {
                tracing::warn!(error = %e, "the pool's copy task failed");
                return;
            }
        };
        for (position, result) in copied {
            match result {
                Ok(key) => {
                    let ahead = Ahead { key, copied: true };
                    self.written.insert(position, ahead);
                }
                Err(e) => {
                    tracing::warn!(error = %packages_blobstore::Chain(&e), "the store did not copy a pool file during the pass");
                }
            }
        }
    }

    /// The files written whole, by candidate position, once the copies are done.
    pub(crate) async fn into_written(mut self) -> HashMap<usize, Ahead> {
        self.finish_copies().await;
        self.written
    }

    /// Stops the file being written (nothing of it is stored) and removes those written
    /// and copied.
    pub(crate) async fn abandon(mut self) {
        if let Some(active) = self.active.take() {
            drop(active.sender);
            let _ = active.commit.send(false);
            let _ = active.task.await;
        }
        self.finish_copies().await;
        for ahead in self.written.values() {
            let _ = self.blobs.delete(&ahead.key).await;
        }
    }
}

/// Adds the hashed candidates of the stored package at `key` that the pool does not hold
/// yet: one query finds the missing ones; each missing file is moved in from where the
/// pass wrote it (`written`, by position), or else streams into the pool from the
/// package, its SHA-1 checked again on the way. Written files the pool turns out to hold
/// are dropped. Returns the keys of the files added, for [`sync`] once the package is
/// READY: the entries are there for matching at once, and on disk before long.
pub(crate) async fn fill(
    services: &Services,
    key: &str,
    size: u64,
    hashed: Vec<(Candidate, String, u64)>,
    mut written: HashMap<usize, Ahead>,
) -> Result<Vec<String>, FillError> {
    let mut added = Vec::new();
    if hashed.is_empty() {
        return Ok(added);
    }
    let zip = Arc::new(BlobReadAt::new(services.blobs().clone(), key, size));
    let hashes: Vec<(String, u64)> = hashed
        .iter()
        .map(|(_, sha1, size)| (sha1.clone(), *size))
        .collect();
    let held = services.pool_holds(hashes).await?;
    let (mut moved_in, mut copied) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    for (position, ((candidate, sha1, size), held)) in hashed.into_iter().zip(held).enumerate() {
        let ahead = written.remove(&position);
        if held || !seen.insert(sha1.clone()) {
            if let Some(ahead) = ahead {
                let _ = services.blobs().delete(&ahead.key).await;
            }
            continue;
        }
        match ahead {
            Some(ahead) => {
                services
                    .blobs()
                    .rename(&ahead.key, &pool_key(&sha1))
                    .await
                    .map_err(|e| FillError::Infrastructure(blob_to_io(e)))?;
                if ahead.copied {
                    copied += 1;
                } else {
                    moved_in += 1;
                }
            }
            None => match candidate.stored_bytes() {
                Some((start, len)) if copied_in_store(services.blobs().as_ref(), &candidate) => {
                    copy_candidate(services, &zip, key, candidate, (start, len), &sha1).await?;
                    copied += 1;
                }
                _ => store_candidate(services, &zip, candidate, &sha1, size).await?,
            },
        }
        services.pool_added(&sha1, size).await?;
        added.push(pool_key(&sha1).to_string());
    }
    if !added.is_empty() {
        tracing::info!(
            added = added.len(),
            written_ahead = moved_in,
            copied_in_store = copied,
            "resource pool filled"
        );
    }
    Ok(added)
}

/// Makes the pool files [`fill`] added durable. They were stored without waiting for the
/// disk (`put_stream_unsynced`) so that the package's READY does not wait on a second
/// full write; a file the machine loses before this runs fails the SHA-1 check of the
/// assembly that uses it, which drops it from the pool and asks the client to push again
/// (spec 10.5). A failure here is therefore logged, not the job's.
pub(crate) async fn sync(services: &Services, keys: &[String]) {
    for key in keys {
        if let Err(e) = services.blobs().sync(key).await {
            tracing::warn!(key, error = %packages_blobstore::Chain(&e), "a resource pool file could not be synced");
        }
    }
    if !keys.is_empty() {
        tracing::info!(files = keys.len(), "resource pool synced");
    }
}

/// Puts a stored candidate into the pool under its SHA-1 by the store's copy of its range
/// of the package at `key` (`(offset, length)`), which the pass hashed in place. A store
/// that refuses the copy gets the file streamed through the worker instead.
async fn copy_candidate(
    services: &Services,
    zip: &Arc<BlobReadAt>,
    key: &str,
    candidate: Candidate,
    (offset, len): (u64, u64),
    sha1: &str,
) -> Result<(), FillError> {
    let pooled = pool_key(sha1);
    match services.blobs().copy_range(key, offset, len, &pooled).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(key = %pooled, error = %packages_blobstore::Chain(&e), "the store did not copy a pool file; streaming it instead");
            store_candidate(services, zip, candidate, sha1, len).await
        }
    }
}

/// Streams one candidate's bytes into the pool under its SHA-1, checking the SHA-1 while
/// it streams; the blob is kept only when it matches.
async fn store_candidate(
    services: &Services,
    zip: &Arc<BlobReadAt>,
    candidate: Candidate,
    sha1: &str,
    size: u64,
) -> Result<(), FillError> {
    let (mut writer, sink) = channel();
    let (verdict, verified) = tokio::sync::oneshot::channel();
    let (zip, expected) = (zip.clone(), sha1.to_owned());
    let producer = tokio::task::spawn_blocking(move || {
        let outcome = (|| {
            let mut reader = packages_assembly::open_candidate(zip.as_ref(), &candidate)?;
            let mut hasher = sha1::Sha1::new();
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let n = reader
                    .read(&mut buffer)
                    .map_err(HarvestError::from_read_error)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                writer.write_all(&buffer[..n]).map_err(HarvestError::Read)?;
            }
            writer.flush().map_err(HarvestError::Read)?;
            Ok::<_, HarvestError>(hex::encode(hasher.finalize()) == expected)
        })();
        let _ = verdict.send(matches!(outcome, Ok(true)));
        outcome
    });
    let stored = sink
        .store_sized(services.blobs(), &pool_key(sha1), size, verified)
        .await;
    let matched = producer
        .await
        .map_err(|e| FillError::Infrastructure(io::Error::other(e)))??;
    stored.map_err(|e| FillError::Infrastructure(blob_to_io(e)))?;
    if !matched {
        // The bytes changed between the two reads: the package is not what was hashed.
        return Err(FillError::Infrastructure(io::Error::other(
            "a package file changed while it was added to the resource pool",
        )));
    }
    Ok(())
}

/// Runs `f` on a blocking thread; a task that did not finish counts as an I/O failure.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, FillError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FillError::Infrastructure(io::Error::other(e)))
}
