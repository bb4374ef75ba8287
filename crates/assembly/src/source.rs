//! Reading the uploaded zip: a fixed-size window over [`ReadAt`] that turns header lookups
//! and entry copies into few large sequential reads, and the central directory walk.

use std::io;

use packages_zipcheck::{CentralDirectory, ReadAt};

use crate::AssembleError;
use crate::format::{
    CENTRAL_LEN, CENTRAL_SIG, S_IFDIR, S_IFMT, SATURATED, le16, le32, resolve_zip64,
};
use crate::output::Output;

pub(crate) fn invalid(reason: impl Into<String>) -> AssembleError {
    AssembleError::InvalidUpload(reason.into())
}

/// A buffered view of one region of the archive (the central directory, or the entries
/// before it). The buffer is allocated once, at most `chunk` bytes; each miss reads as
/// much of the region as fits, so a sequential walk costs one `read_at` per buffer.
pub(crate) struct Window<'a> {
    src: &'a dyn ReadAt,
    /// End of the region: nothing at or past it is read.
    limit: u64,
    buf: Vec<u8>,
    /// Archive offset of `buf[0]`.
    start: u64,
    filled: usize,
}

impl<'a> Window<'a> {
    /// A window over `[region_start, limit)`. The buffer never exceeds the region, so a
    /// small archive costs little; callers ask for at most `chunk` bytes at once.
    pub(crate) fn new(src: &'a dyn ReadAt, region_start: u64, limit: u64, chunk: usize) -> Self {
        let len = usize::try_from(limit.saturating_sub(region_start))
            .unwrap_or(usize::MAX)
            .min(chunk);
        Self {
            src,
            limit,
            buf: vec![0; len],
            start: region_start,
            filled: 0,
        }
    }

    /// Index into `buf` of `offset`, if the bytes up to `end` are buffered.
    fn buffered(&self, offset: u64, end: u64) -> Option<usize> {
        let buffered_end = self.start.saturating_add(self.filled as u64);
        if offset >= self.start && end <= buffered_end {
            usize::try_from(offset - self.start).ok()
        } else {
            None
        }
    }

    /// Exactly `n` bytes at `offset`, which must lie inside the region.
    pub(crate) fn get(&mut self, offset: u64, n: usize) -> Result<&[u8], AssembleError> {
        let end = offset
            .checked_add(n as u64)
            .filter(|&end| end <= self.limit)
            .ok_or_else(|| {
                invalid(format!(
                    "{n} bytes at offset {offset} run past the region ending at {}",
                    self.limit
                ))
            })?;
        let from = match self.buffered(offset, end) {
            Some(from) => from,
            None => {
                self.fill(offset, n)?;
                0
            }
        };
        from.checked_add(n)
            .and_then(|to| self.buf.get(from..to))
            .ok_or_else(|| invalid("read buffer out of range"))
    }

    /// Writes the `len` bytes at `offset` to `out`, streaming them through the buffer.
    pub(crate) fn copy_to(
        &mut self,
        mut offset: u64,
        len: u64,
        out: &mut Output<'_>,
    ) -> Result<(), AssembleError> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.limit)
            .ok_or_else(|| {
                invalid(format!(
                    "an entry at offset {offset} runs past the region ending at {}",
                    self.limit
                ))
            })?;
        while offset < end {
            let bytes = self.chunk(offset, end - offset)?;
            out.put(bytes)?;
            offset += bytes.len() as u64;
        }
        Ok(())
    }

    /// The bytes buffered from `offset` on, at least one and at most `max` (which must be
    /// at least one), refilling the buffer when `offset` is not in it: callers that stream
    /// a span take it piece by piece without copying it.
    pub(crate) fn chunk(&mut self, offset: u64, max: u64) -> Result<&[u8], AssembleError> {
        if max == 0 || offset >= self.limit {
            return Err(invalid(format!(
                "offset {offset} lies past the region ending at {}",
                self.limit
            )));
        }
        let max = max.min(self.limit - offset);
        let from = match self.buffered(offset, offset.saturating_add(1)) {
            Some(from) => from,
            None => {
                self.fill(offset, 1)?;
                0
            }
        };
        let available = self.filled.saturating_sub(from);
        let take = usize::try_from(max).map_or(available, |max| max.min(available));
        self.buf
            .get(from..from + take)
            .ok_or_else(|| invalid("read buffer out of range"))
    }

    /// Moves the end of the region. What is buffered stays valid (it is the same archive),
    /// but no read reaches `limit` or past it: a caller that knows how far it will read
    /// keeps refills from fetching bytes it would skip.
    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Refills the buffer from `offset` with as much of the region as fits, keeping the
    /// buffered bytes from `offset` on (a header straddling the old buffer's end) rather
    /// than reading them again.
    fn fill(&mut self, offset: u64, min: usize) -> Result<(), AssembleError> {
        if min > self.buf.len() {
            return Err(invalid("a header is larger than its region"));
        }
        let kept = match self.buffered(offset, offset) {
            Some(from) if from < self.filled => {
                self.buf.copy_within(from..self.filled, 0);
                self.filled - from
            }
            _ => 0,
        };
        self.start = offset;
        self.filled = kept;
        let want = usize::try_from(self.limit.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        while self.filled < want {
            let at = offset.saturating_add(self.filled as u64);
            let Some(dst) = self.buf.get_mut(self.filled..want) else {
                break;
            };
            match self.src.read_at(at, dst) {
                Ok(0) => break,
                // A reader reporting more than it was given is clamped rather than trusted.
                Ok(got) => self.filled = self.filled.saturating_add(got).min(want),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.filled = 0;
                    return Err(AssembleError::Read(e));
                }
            }
        }
        if self.filled < min {
            let at = offset.saturating_add(self.filled as u64);
            self.filled = 0;
            // The archive's own length said these bytes exist: the store changed or
            // misbehaved, which a retry may fix.
            return Err(AssembleError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the uploaded zip ended early, at offset {at}"),
            )));
        }
        Ok(())
    }
}

/// One central directory header, Zip64 values applied, with its raw parts.
pub(crate) struct Record<'a> {
    pub(crate) made_by: u16,
    pub(crate) needed: u16,
    pub(crate) flags: u16,
    pub(crate) method: u16,
    pub(crate) time: u16,
    pub(crate) date: u16,
    pub(crate) crc: u32,
    pub(crate) compressed: u64,
    pub(crate) uncompressed: u64,
    pub(crate) local_offset: u64,
    pub(crate) internal: u16,
    pub(crate) external: u32,
    pub(crate) name: &'a [u8],
    pub(crate) extra: &'a [u8],
    pub(crate) comment: &'a [u8],
}

impl Record<'_> {
    /// A directory by its name (as unpackers decide) or by its Unix file type. Taking
    /// either as a directory can only turn a replacement into a path collision.
    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.name.last(), Some(b'/' | b'\\')) || (self.external >> 16) & S_IFMT == S_IFDIR
    }

    fn parse(bytes: &[u8]) -> Option<Record<'_>> {
        let name_len = usize::from(le16(bytes, 28)?);
        let extra_len = usize::from(le16(bytes, 30)?);
        let comment_len = usize::from(le16(bytes, 32)?);
        let name = bytes.get(CENTRAL_LEN..CENTRAL_LEN + name_len)?;
        let extra = bytes.get(CENTRAL_LEN + name_len..CENTRAL_LEN + name_len + extra_len)?;
        let comment = bytes.get(
            CENTRAL_LEN + name_len + extra_len..CENTRAL_LEN + name_len + extra_len + comment_len,
        )?;
        let mut compressed = u64::from(le32(bytes, 20)?);
        let mut uncompressed = u64::from(le32(bytes, 24)?);
        let mut local_offset = u64::from(le32(bytes, 42)?);
        if [compressed, uncompressed, local_offset].contains(&SATURATED) {
            resolve_zip64(
                extra,
                [&mut uncompressed, &mut compressed, &mut local_offset],
            )?;
        }
        Some(Record {
            made_by: le16(bytes, 4)?,
            needed: le16(bytes, 6)?,
            flags: le16(bytes, 8)?,
            method: le16(bytes, 10)?,
            time: le16(bytes, 12)?,
            date: le16(bytes, 14)?,
            crc: le32(bytes, 16)?,
            compressed,
            uncompressed,
            local_offset,
            internal: le16(bytes, 36)?,
            external: le32(bytes, 38)?,
            name,
            extra,
            comment,
        })
    }
}

/// A walk over the central directory headers, in order, lending each one out of the
/// window. The directory passed `zipcheck::check`, so any surprise here means the archive
/// changed under us or was not checked; it is reported, never guessed around.
pub(crate) struct Walker {
    pos: u64,
    remaining: u64,
}

impl Walker {
    pub(crate) fn new(dir: &CentralDirectory) -> Self {
        Self {
            pos: dir.offset,
            remaining: dir.entries,
        }
    }

    pub(crate) fn next<'w>(
        &mut self,
        window: &'w mut Window<'_>,
    ) -> Result<Option<Record<'w>>, AssembleError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let pos = self.pos;
        let total = {
            let fixed = window.get(pos, CENTRAL_LEN)?;
            if le32(fixed, 0) != Some(CENTRAL_SIG) {
                return Err(invalid(format!(
                    "no central directory header at offset {pos}"
                )));
            }
            let len = |at| le16(fixed, at).map_or(0, usize::from);
            CENTRAL_LEN + len(28) + len(30) + len(32)
        };
        self.pos = pos.saturating_add(total as u64);
        self.remaining -= 1;
        let bytes = window.get(pos, total)?;
        Record::parse(bytes).map(Some).ok_or_else(|| {
            invalid(format!(
                "the central directory header at offset {pos} is malformed"
            ))
        })
    }
}
