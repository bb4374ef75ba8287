//! Lets the zip checks read a staged blob at random offsets, whichever blobstore holds
//! it: each read is one ranged read (a positioned read on disk, an HTTP range request on
//! S3), and the checks read only the central directory.

use std::io;
use std::sync::Arc;

use packages_blobstore::{BlobError, Blobstore};
use packages_zipcheck::ReadAt;
use tokio::runtime::Handle;

/// A blob seen through [`ReadAt`]. Only usable on a blocking thread (it waits on the
/// runtime for each read).
pub(crate) struct BlobReadAt {
    pub blobs: Arc<dyn Blobstore>,
    pub key: String,
    pub size: u64,
    pub runtime: Handle,
}

impl ReadAt for BlobReadAt {
    fn len(&self) -> io::Result<u64> {
        Ok(self.size)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.size - offset);
        let bytes = self
            .runtime
            .block_on(self.blobs.read_range(&self.key, offset, want))
            .map_err(|e| match e {
                BlobError::Io(io) => io,
                other => io::Error::other(other.to_string()),
            })?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }
}
