//! Lets the zip checks read a staged blob at random offsets, whichever blobstore holds
//! it. A read at a new offset is one ranged read (a positioned read on disk, an HTTP
//! range request on S3); a read that continues where the last one ended continues one
//! streamed read instead, so walking a large entry costs one request, not one per chunk.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use packages_blobstore::{BlobError, Blobstore, ByteStream};
use packages_zipcheck::ReadAt;
use tokio::runtime::Handle;

/// A blob seen through [`ReadAt`]. Only usable on a blocking thread (it waits on the
/// runtime for each read).
pub(crate) struct BlobReadAt {
    blobs: Arc<dyn Blobstore>,
    key: String,
    size: u64,
    runtime: Handle,
    cursor: Mutex<Cursor>,
}

/// Where the last read ended, and the stream that continues from there once reads turn
/// out to be sequential.
#[derive(Default)]
enum Cursor {
    #[default]
    Idle,
    /// The last read was a ranged read that ended here.
    EndedAt(u64),
    /// A streamed read, at `next`, with `held` bytes received but not yet read.
    Streaming {
        next: u64,
        stream: ByteStream,
        held: Bytes,
    },
}

impl BlobReadAt {
    pub(crate) fn new(blobs: Arc<dyn Blobstore>, key: &str, size: u64) -> Self {
        BlobReadAt {
            blobs,
            key: key.to_owned(),
            size,
            runtime: Handle::current(),
            cursor: Mutex::new(Cursor::Idle),
        }
    }

    /// Fills `buf` from the stream as far as it goes; 0 only at its end.
    fn read_stream(
        &self,
        stream: &mut ByteStream,
        held: &mut Bytes,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            if held.is_empty() {
                match self.runtime.block_on(stream.next()) {
                    Some(chunk) => *held = chunk.map_err(to_io)?,
                    None => break,
                }
                continue;
            }
            let n = held.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&held.split_to(n));
            filled += n;
        }
        Ok(filled)
    }
}

impl ReadAt for BlobReadAt {
    fn len(&self) -> io::Result<u64> {
        Ok(self.size)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let mut cursor = self
            .cursor
            .lock()
            .map_err(|_| io::Error::other("a read of this blob panicked"))?;
        let follows_on = match &*cursor {
            Cursor::Idle => false,
            Cursor::EndedAt(end) => *end == offset,
            Cursor::Streaming { next, .. } => *next == offset,
        };
        if follows_on {
            if !matches!(&*cursor, Cursor::Streaming { .. }) {
                let stream = self
                    .runtime
                    .block_on(self.blobs.read_from(&self.key, offset))
                    .map_err(to_io)?;
                *cursor = Cursor::Streaming {
                    next: offset,
                    stream,
                    held: Bytes::new(),
                };
            }
            if let Cursor::Streaming { next, stream, held } = &mut *cursor {
                let want = usize::try_from(self.size - offset)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let result = self.read_stream(stream, held, &mut buf[..want]);
                match result {
                    Ok(n) => {
                        *next += n as u64;
                        return Ok(n);
                    }
                    Err(e) => {
                        *cursor = Cursor::Idle;
                        return Err(e);
                    }
                }
            }
        }
        *cursor = Cursor::Idle;
        let want = (buf.len() as u64).min(self.size - offset);
        let bytes = self
            .runtime
            .block_on(self.blobs.read_range(&self.key, offset, want))
            .map_err(to_io)?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        *cursor = Cursor::EndedAt(offset + n as u64);
        Ok(n)
    }
}

fn to_io(e: BlobError) -> io::Error {
    match e {
        BlobError::Io(io) => io,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use packages_blobstore::{BlobInfo, BlobWriter, Download, LocalBlobstore};

    use super::*;

    /// A local store that counts the read requests made of it.
    struct Counting {
        inner: LocalBlobstore,
        ranges: AtomicUsize,
        streams: AtomicUsize,
    }

    #[async_trait]
    impl Blobstore for Counting {
        async fn writer(&self, key: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
            self.inner.writer(key).await
        }
        async fn put_stream(
            &self,
            key: &str,
            size: u64,
            body: ByteStream,
        ) -> Result<(), BlobError> {
            self.inner.put_stream(key, size, body).await
        }
        async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
            self.inner.size(key).await
        }
        async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, BlobError> {
            self.ranges.fetch_add(1, Ordering::SeqCst);
            self.inner.read_range(key, offset, len).await
        }
        async fn read(&self, key: &str) -> Result<ByteStream, BlobError> {
            self.inner.read(key).await
        }
        async fn read_from(&self, key: &str, offset: u64) -> Result<ByteStream, BlobError> {
            self.streams.fetch_add(1, Ordering::SeqCst);
            self.inner.read_from(key, offset).await
        }
        async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
            self.inner.copy(from, to).await
        }
        async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError> {
            self.inner.rename(from, to).await
        }
        async fn delete(&self, key: &str) -> Result<(), BlobError> {
            self.inner.delete(key).await
        }
        async fn download(&self, key: &str) -> Result<Download, BlobError> {
            self.inner.download(key).await
        }
        async fn upload_url(
            &self,
            key: &str,
            expiry: Duration,
        ) -> Result<Option<String>, BlobError> {
            self.inner.upload_url(key, expiry).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
            self.inner.list(prefix).await
        }
        async fn check(&self) -> Result<(), BlobError> {
            self.inner.check().await
        }
        fn kind(&self) -> &'static str {
            "counting"
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sequential_reads_share_one_stream_and_jumps_read_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Counting {
            inner: LocalBlobstore::new(dir.path().join("blobs")).unwrap(),
            ranges: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
        });
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put_stream(
                "blob",
                bytes.len() as u64,
                Box::pin(futures_util::stream::iter([Ok(Bytes::from(bytes.clone()))])),
            )
            .await
            .unwrap();
        let blobs: Arc<dyn Blobstore> = store.clone();
        let reader = BlobReadAt::new(blobs, "blob", bytes.len() as u64);
        let expected = bytes.clone();
        let store_seen = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 100_000];
            // A jump, then a walk from there to the end in 100 kB reads.
            let mut at = 1_000_000u64;
            loop {
                let n = reader.read_at(at, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                let start = at as usize;
                assert!(buf[..n] == expected[start..start + n], "at {at}");
                at += n as u64;
            }
            assert_eq!(at, expected.len() as u64);
            assert_eq!(store_seen.ranges.load(Ordering::SeqCst), 1);
            assert_eq!(store_seen.streams.load(Ordering::SeqCst), 1);
            // A jump back reads a range again, and the walk after it streams anew.
            let n = reader.read_at(10, &mut buf[..5]).unwrap();
            assert_eq!(&buf[..n], &expected[10..15]);
            let n = reader.read_at(15, &mut buf[..5]).unwrap();
            assert_eq!(&buf[..n], &expected[15..20]);
            assert_eq!(store_seen.ranges.load(Ordering::SeqCst), 2);
            assert_eq!(store_seen.streams.load(Ordering::SeqCst), 2);
        })
        .await
        .unwrap();
    }
}
