//! The worker's side of the resource pool: reading pool files for an assembly, and
//! filling the pool from a package that is about to become READY (GA spec 10.1).
//!
//! The zip work is synchronous (`packages-assembly`) and runs on blocking threads; these
//! adapters let it read and write the blobstore, which is async, through bounded
//! channels, so memory stays a few buffers whatever the sizes.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use packages_assembly::{Candidate, HarvestError, Pool};
use packages_blobstore::{BlobError, Blobstore};
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
        blobs.put_stream(key, size, Box::pin(body)).await
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
) -> Result<Vec<Candidate>, FillError> {
    let bounds = services.policy().resource_pool;
    let zip = BlobReadAt::new(services.blobs().clone(), key, size);
    Ok(blocking(move || {
        packages_assembly::pool_candidates(&zip, bounds.minimum_size, bounds.maximum_size)
    })
    .await??)
}

/// Adds the hashed candidates of the stored package at `key` that the pool does not hold
/// yet: one query finds the missing ones, and each missing file streams into the pool,
/// its SHA-1 checked again on the way. Returns how many files were added.
pub(crate) async fn fill(
    services: &Services,
    key: &str,
    size: u64,
    hashed: Vec<(Candidate, String, u64)>,
) -> Result<u64, FillError> {
    if hashed.is_empty() {
        return Ok(0);
    }
    let zip = Arc::new(BlobReadAt::new(services.blobs().clone(), key, size));
    let hashes: Vec<(String, u64)> = hashed
        .iter()
        .map(|(_, sha1, size)| (sha1.clone(), *size))
        .collect();
    let held = services.pool_holds(hashes).await?;
    let mut added = 0;
    let mut seen = std::collections::HashSet::new();
    for ((candidate, sha1, size), held) in hashed.into_iter().zip(held) {
        if held || !seen.insert(sha1.clone()) {
            continue;
        }
        store_candidate(services, &zip, candidate, &sha1, size).await?;
        services.pool_added(&sha1, size).await?;
        added += 1;
    }
    Ok(added)
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
