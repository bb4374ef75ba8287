//! Random access to the archive and the small cache that keeps the number of reads low.

use std::io;
use std::sync::Arc;

use crate::{CheckError, Problem};

/// Random access to the archive bytes.
///
/// Implementations may be slow per call (one HTTP range request for an object store), so the
/// checker asks for large chunks and as few of them as it can.
pub trait ReadAt {
    /// Total length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Reads up to `buf.len()` bytes at `offset`; returns bytes read (0 only at/after end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Whether the archive has no bytes at all.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl ReadAt for std::fs::File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let available = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..))
            .unwrap_or_default();
        let n = available.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), available.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> io::Result<u64> {
        ReadAt::len(self.as_slice())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.as_slice().read_at(offset, buf)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(offset, buf)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(offset, buf)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        (**self).read_at(offset, buf)
    }
}

/// First read size of a region; small enough to be cheap for tiny archives.
const MIN_CHUNK: u64 = 64 * 1024;
/// Sequential reads double up to this size, so a large central directory over HTTP costs a
/// few requests rather than one per 64 KiB.
const MAX_CHUNK: u64 = 1024 * 1024;

/// Which cached region a read should replace on a miss. The central directory walk and the
/// symlink target reads jump between two distant areas; one region each keeps them from
/// evicting each other.
#[derive(Clone, Copy)]
pub(crate) enum Region {
    Directory = 0,
    Data = 1,
}

#[derive(Default)]
struct Cache {
    start: u64,
    bytes: Vec<u8>,
    chunk: u64,
}

impl Cache {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.bytes.len() as u64)
    }

    fn holds(&self, offset: u64, end: u64) -> bool {
        offset >= self.start && end <= self.end()
    }
}

/// Buffered view over a [`ReadAt`]: every lookup is served from one of two cached regions,
/// and a miss reads a whole chunk.
pub(crate) struct Source<'a, R: ?Sized> {
    inner: &'a R,
    len: u64,
    caches: [Cache; 2],
}

impl<'a, R: ReadAt + ?Sized> Source<'a, R> {
    pub(crate) fn new(inner: &'a R) -> Result<Self, CheckError> {
        let len = inner.len().map_err(CheckError::Io)?;
        Ok(Self {
            inner,
            len,
            caches: Default::default(),
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Returns exactly `n` bytes at `offset`. `hint_end` is where the caller expects to stop
    /// reading soon (e.g. the end of the central directory), so a miss does not fetch far
    /// beyond what is needed. Bytes beyond the archive's end mean the archive is cut short.
    pub(crate) fn get(
        &mut self,
        region: Region,
        offset: u64,
        n: usize,
        hint_end: u64,
    ) -> Result<&[u8], CheckError> {
        let end = offset
            .checked_add(n as u64)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| not_a_zip("the archive ends unexpectedly"))?;
        let index = match self.caches.iter().position(|c| c.holds(offset, end)) {
            Some(index) => index,
            None => {
                self.fill(region, offset, n, hint_end)?;
                region as usize
            }
        };
        let cache = self
            .caches
            .get(index)
            .ok_or_else(|| not_a_zip("internal cache index out of range"))?;
        let from = usize::try_from(offset.saturating_sub(cache.start))
            .map_err(|_| not_a_zip("offset out of range"))?;
        from.checked_add(n)
            .and_then(|to| cache.bytes.get(from..to))
            .ok_or_else(|| not_a_zip("the archive ends unexpectedly"))
    }

    fn fill(
        &mut self,
        region: Region,
        offset: u64,
        n: usize,
        hint_end: u64,
    ) -> Result<(), CheckError> {
        let inner = self.inner;
        let len = self.len;
        let cache = self
            .caches
            .get_mut(region as usize)
            .ok_or_else(|| not_a_zip("internal cache index out of range"))?;
        // Reading on from where the last chunk ended is a sequential walk: grow the chunk.
        let sequential = cache.chunk > 0 && offset >= cache.start && offset <= cache.end();
        cache.chunk = if sequential {
            cache.chunk.saturating_mul(2).min(MAX_CHUNK)
        } else {
            MIN_CHUNK
        };
        let wanted = cache
            .chunk
            .min(hint_end.saturating_sub(offset))
            .max(n as u64)
            .min(len.saturating_sub(offset));
        let wanted =
            usize::try_from(wanted).map_err(|_| not_a_zip("read size does not fit in memory"))?;

        cache.start = offset;
        cache.bytes.clear();
        cache.bytes.resize(wanted, 0);
        let mut filled = 0usize;
        while filled < wanted {
            let Some(buf) = cache.bytes.get_mut(filled..) else {
                break;
            };
            match inner.read_at(offset.saturating_add(filled as u64), buf) {
                Ok(0) => break,
                // A reader reporting more than it was given is clamped rather than trusted.
                Ok(got) => filled = filled.saturating_add(got).min(wanted),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    cache.bytes.clear();
                    return Err(CheckError::Io(e));
                }
            }
        }
        cache.bytes.truncate(filled);
        if filled < n {
            cache.bytes.clear();
            // The reader's own length said these bytes exist: the backing store changed or
            // misbehaved, which a retry may fix, so this is not the archive's fault.
            return Err(CheckError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "archive reader returned end of data at offset {} of {len}",
                    offset.saturating_add(filled as u64)
                ),
            )));
        }
        Ok(())
    }
}

pub(crate) fn not_a_zip(reason: impl Into<String>) -> CheckError {
    CheckError::Invalid(Problem::NotAZip(reason.into()))
}
