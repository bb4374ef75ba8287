//! Where package bits live: a small trait with a local-disk and an S3 implementation.
//!
//! Keys are plain strings such as `gu/id/guid-…` (package bits) or
//! `staging/<package guid>/<upload id>` (uploads waiting for the worker). The logic above
//! this crate never knows which implementation it talks to.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

mod error;
mod local;
mod redact;
#[cfg(feature = "s3")]
mod s3;

pub use error::{BlobError, Chain};
pub use local::LocalBlobstore;
pub use redact::redact_urls;
#[cfg(feature = "s3")]
pub use s3::{S3Blobstore, S3Settings, S3Writer};

/// A stream of bytes read from a blob.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BlobError>> + Send>>;

/// How a blob reaches a client.
pub enum Download {
    /// The service streams the bytes itself (local store).
    Stream { length: u64, body: ByteStream },
    /// The client fetches a presigned URL from the store (S3).
    Redirect { url: String },
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Download::Stream { length, .. } => f
                .debug_struct("Stream")
                .field("length", length)
                .finish_non_exhaustive(),
            Download::Redirect { url } => f.debug_struct("Redirect").field("url", url).finish(),
        }
    }
}

/// One blob in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
}

#[async_trait]
pub trait Blobstore: Send + Sync + 'static {
    /// Starts a new blob under `key`. Nothing is visible under `key` until
    /// [`BlobWriter::finish`] returns; an aborted or dropped writer leaves nothing behind.
    async fn writer(&self, key: &str) -> Result<Box<dyn BlobWriter>, BlobError>;

    /// Stores exactly `size` bytes from `body` under `key`, streaming: one request where
    /// the store allows it (a presigned S3 PUT, nothing buffered), else a writer. Nothing
    /// is visible under `key` unless the body brought exactly `size` bytes.
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<(), BlobError>;

    /// Like [`put_stream`], for a blob the caller makes durable later with [`sync`]: until
    /// then a stop of the machine (not of the process) may lose or cut it. Meant for the
    /// resource pool, whose entries are checked against their SHA-1 wherever their bytes
    /// are used, so that a package need not wait on the disk for them. Stores whose
    /// writes are durable once acknowledged (S3) just put.
    ///
    /// [`put_stream`]: Blobstore::put_stream
    /// [`sync`]: Blobstore::sync
    async fn put_stream_unsynced(
        &self,
        key: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<(), BlobError> {
        self.put_stream(key, size, body).await
    }

    /// Makes the blob at `key`, written by [`put_stream_unsynced`], durable; nothing to
    /// do where every write already is, or where there is no blob.
    ///
    /// [`put_stream_unsynced`]: Blobstore::put_stream_unsynced
    async fn sync(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)
    }

    /// Size of the blob, or `None` when there is none.
    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError>;

    /// Reads `len` bytes starting at `offset` (fewer only at the end of the blob).
    async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, BlobError>;

    /// Streams the whole blob.
    async fn read(&self, key: &str) -> Result<ByteStream, BlobError>;

    /// Streams the blob from `offset` to its end (nothing when `offset` is at or past
    /// it): one request for a sequential read of any length, where [`read_range`] costs
    /// one per range.
    ///
    /// [`read_range`]: Blobstore::read_range
    async fn read_from(&self, key: &str, offset: u64) -> Result<ByteStream, BlobError>;

    /// Copies a blob inside the store without passing its bytes through this process
    /// where the store allows it (S3 server-side copy). Overwrites `to`.
    async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError>;

    /// Whether [`copy_range`] runs inside the store, the bytes never passing through this
    /// process (S3's UploadPartCopy). Where it does not, a caller that reads the bytes
    /// anyway does better to write them on the way.
    ///
    /// [`copy_range`]: Blobstore::copy_range
    fn copies_ranges(&self) -> bool {
        false
    }

    /// Stores under `to` the `len` bytes of the blob `from` that start at `offset`:
    /// inside the store where [`copies_ranges`] says so, else read and written through
    /// this process, streaming. Overwrites `to`; nothing is visible there unless every
    /// byte was copied, and a blob shorter than the range copies nothing.
    ///
    /// [`copies_ranges`]: Blobstore::copies_ranges
    async fn copy_range(
        &self,
        from: &str,
        offset: u64,
        len: u64,
        to: &str,
    ) -> Result<(), BlobError> {
        validate_key(to)?;
        let body = self.read_from(from, offset).await?;
        self.put_stream(to, len, first_bytes(body, len)).await
    }

    /// Moves a blob: a rename on disk, copy-then-delete on S3. Overwrites `to`.
    async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError>;

    /// Deletes a blob; deleting a missing blob succeeds.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;

    /// How a client gets the bytes of `key`: a stream or a presigned URL valid for the
    /// configured expiry.
    async fn download(&self, key: &str) -> Result<Download, BlobError>;

    /// A URL a client can PUT the bytes of `key` to itself, valid for `expiry`, where the
    /// store offers one (a presigned S3 PUT); `None` where it does not (local disk).
    async fn upload_url(&self, key: &str, expiry: Duration) -> Result<Option<String>, BlobError> {
        let _ = (key, expiry);
        Ok(None)
    }

    /// Blobs whose keys start with `prefix`, sorted by key (byte order). A prefix that no
    /// valid key can start with, because a segment it names completely (before its last
    /// `/`) is not valid in a key, such as `../`, is refused as [`BlobError::InvalidKey`].
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError>;

    /// Cheap reachability check for readiness probes.
    async fn check(&self) -> Result<(), BlobError>;

    /// Short name for logs and readiness bodies: `local` or `s3`.
    fn kind(&self) -> &'static str;
}

/// The first `len` bytes of `body` (all of it when shorter), the last chunk cut to fit.
fn first_bytes(body: ByteStream, len: u64) -> ByteStream {
    use futures_util::StreamExt as _;
    Box::pin(futures_util::stream::unfold(
        (body, len),
        |(mut body, left)| async move {
            if left == 0 {
                return None;
            }
            match body.next().await? {
                Ok(mut chunk) => {
                    let keep = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                    chunk.truncate(keep);
                    Some((Ok(chunk), (body, left - keep as u64)))
                }
                Err(e) => Some((Err(e), (body, 0))),
            }
        },
    ))
}

/// [`Blobstore::put_stream`] through a writer, for stores without a streaming put.
pub(crate) async fn put_through_writer(
    mut writer: Box<dyn BlobWriter>,
    size: u64,
    mut body: ByteStream,
) -> Result<(), BlobError> {
    use futures_util::StreamExt;
    let mut written: u64 = 0;
    while let Some(chunk) = body.next().await {
        let outcome = match chunk {
            Ok(chunk) => {
                written += chunk.len() as u64;
                writer.write(chunk).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            let _ = writer.abort().await;
            return Err(e);
        }
    }
    if written != size {
        let _ = writer.abort().await;
        return Err(BlobError::Length {
            expected: size,
            actual: written,
        });
    }
    writer.finish().await.map(|_| ())
}

#[async_trait]
pub trait BlobWriter: Send {
    /// Appends a chunk. Implementations keep memory bounded (S3: one part buffering and at
    /// most three parts in flight), whatever the total size.
    async fn write(&mut self, chunk: Bytes) -> Result<(), BlobError>;

    /// Before the first write: at least `bytes` will be written. A store may then send
    /// that many as they come instead of buffering them; if fewer arrive, `finish` fails
    /// with [`BlobError::Length`] and nothing is stored. Stores that do not buffer ignore it.
    fn expect_at_least(&mut self, _bytes: u64) {}

    /// Makes the blob visible under its key; returns its size in bytes.
    async fn finish(self: Box<Self>) -> Result<u64, BlobError>;

    /// Discards everything written so far.
    async fn abort(self: Box<Self>) -> Result<(), BlobError>;
}

/// Longest key accepted; S3 allows 1024 bytes.
const MAX_KEY_LEN: usize = 1024;

/// Checks a key the same way for every store, so a key that works locally also works on
/// S3 and cannot step outside the local root: relative `/`-separated segments, none empty,
/// `.` or `..`, no backslashes or control characters.
pub(crate) fn validate_key(key: &str) -> Result<(), BlobError> {
    let invalid = |reason| {
        Err(BlobError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return invalid("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return invalid("absolute");
    }
    if key.contains('\\') {
        return invalid("contains a backslash");
    }
    if key.chars().any(char::is_control) {
        return invalid("contains a control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return invalid("empty path segment"),
            "." | ".." => return invalid("relative path segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a list prefix the same way for every store: the segments it names completely
/// (those before its last `/`) must be valid in a key.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), BlobError> {
    let complete = prefix.rfind('/').map_or("", |idx| &prefix[..idx]);
    if complete.is_empty() || validate_key(complete).is_ok() {
        return Ok(());
    }
    Err(BlobError::InvalidKey {
        key: prefix.to_string(),
        reason: "not a valid list prefix",
    })
}

#[cfg(test)]
mod key_tests {
    use super::{BlobError, validate_key, validate_prefix};

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "gu/id/guid-1",
            "staging/p/u",
            "a b/c+d.zip",
            ".hidden/x",
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn refuses_bad_keys() {
        for key in [
            "", "/abs", "a/../b", "..", ".", "a/./b", "a//b", "a/", "a\\b", "a\nb", "a\0b",
        ] {
            assert!(
                matches!(validate_key(key), Err(BlobError::InvalidKey { .. })),
                "{key:?}"
            );
        }
        assert!(matches!(
            validate_key(&"k".repeat(1025)),
            Err(BlobError::InvalidKey { .. })
        ));
    }

    #[test]
    fn list_prefixes() {
        for prefix in [
            "",
            "staging",
            "staging/",
            "staging/p1/u",
            "a b/",
            ".hidden/x",
        ] {
            assert!(validate_prefix(prefix).is_ok(), "{prefix:?}");
        }
        for prefix in ["../", "a//", "a/../b/", "./x", "a\\b/c", "/abs/x"] {
            assert!(
                matches!(validate_prefix(prefix), Err(BlobError::InvalidKey { .. })),
                "{prefix:?}"
            );
        }
    }
}
