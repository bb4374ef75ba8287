//! The files of a package zip that go into the resource pool (spec 10.1): which entries
//! they are, their SHA-1s in one sequential pass, and each one's bytes streamed on its
//! own, to be stored under its SHA-1.
//!
//! The zip passed `zipcheck::check`, local headers included, before this runs, so the
//! central directory is trusted for where entries lie and what they claim; the data itself
//! is not (`zipcheck` never inflates most of it), so every read verifies the size and
//! CRC-32 the central directory gives.

use std::fmt;
use std::io::{self, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};
use packages_zipcheck::{CheckError, ReadAt};
use sha1::{Digest, Sha1};

use crate::AssembleError;
use crate::format::{
    DEFLATED, ENCRYPTED, LOCAL_LEN, LOCAL_SIG, S_IFMT, S_IFREG, STORED, le16, le32,
};
use crate::source::{Record, Walker, Window};
use crate::upload::{DATA_CHUNK, DIRECTORY_CHUNK};

/// Inflated bytes are hashed from a buffer of this size.
const HASH_BUFFER: usize = 256 * 1024;
/// Bytes between two candidates that the hashing pass reads through rather than skips:
/// fetching them costs less than the extra request a skip makes.
const READ_THROUGH: u64 = 1024 * 1024;
/// Longest name a [`Candidate`] keeps, in bytes: names serve logs only, and up to 250,000
/// names of up to 4 KiB each would not be small.
const KEPT_NAME_BYTES: usize = 96;

/// How a candidate's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Method 0: the bytes as they are.
    Stored,
    /// Method 8: raw deflate.
    Deflated,
}

/// An entry of a package zip that the resource pool takes: what reading its data needs.
///
/// Only [`pool_candidates`] makes them, so each knows where the next entry starts and
/// reads never run past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    name: Box<str>,
    offset: u64,
    compressed: u64,
    size: u64,
    crc32: u32,
    compression: Compression,
    /// Where the next entry (or the central directory) starts: this entry's local header,
    /// data and data descriptor lie before it.
    region_end: u64,
    /// Where the entry's data starts, once a pass read its local header.
    pub(crate) data_start: Option<u64>,
}

impl Candidate {
    /// Where the file's bytes lie in the zip as they are, `(offset, length)`: only for a
    /// stored entry whose local header a [`crate::StreamHasher`] pass read. A copy of
    /// that range is the file; the pass hashes and CRC-checks the same bytes in place,
    /// so once it has counted the entry hashed, the copy is checked too.
    pub fn stored_bytes(&self) -> Option<(u64, u64)> {
        match self.compression {
            Compression::Stored => self.data_start.map(|start| (start, self.size)),
            Compression::Deflated => None,
        }
    }

    /// The entry's name for logs: lossy UTF-8, and for names longer than 96 bytes their
    /// end (the file name, rather than the directories above it) after `…`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Offset of the entry's local header.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length of the entry's data as stored.
    pub fn compressed_size(&self) -> u64 {
        self.compressed
    }

    /// Length of the file: what the pool stores.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// CRC-32 of the file, from the central directory.
    pub fn crc32(&self) -> u32 {
        self.crc32
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Where the file's data lies, from its first byte to the byte after its last, given
    /// the fixed part of its local header (`LOCAL_LEN` bytes): the local name and extra
    /// field may differ in length from the central ones, and the data must end before the
    /// next entry. Both hashing passes and the streamed read find the data through this.
    pub(crate) fn data_span(&self, fixed: &[u8]) -> Result<(u64, u64), HarvestError> {
        let offset = self.offset;
        if le32(fixed, 0) != Some(LOCAL_SIG) {
            return Err(HarvestError::InvalidZip(format!(
                "no local header at offset {offset}"
            )));
        }
        let len = |at| le16(fixed, at).map_or(0, u64::from);
        let variable = len(26) + len(28);
        offset
            .checked_add(LOCAL_LEN as u64 + variable)
            .and_then(|start| Some((start, start.checked_add(self.compressed)?)))
            .filter(|&(_, end)| end <= self.region_end)
            .ok_or_else(|| {
                HarvestError::InvalidZip(format!(
                    "the entry at offset {offset} runs into the next one"
                ))
            })
    }
}

/// How an entry's data disagrees with its central directory header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The bytes have another CRC-32.
    Crc,
    /// There are more or fewer bytes than claimed.
    Length,
    /// The deflate stream is invalid, or does not end exactly where the data does.
    Deflate,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Crc => "its CRC-32 does not match",
            Self::Length => "its length does not match",
            Self::Deflate => "its deflate stream is invalid or does not end with its data",
        })
    }
}

/// Why candidates could not be listed, hashed or read.
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    /// Reading the zip failed, or it ended before the length it reported (infrastructure;
    /// a retry may succeed).
    #[error("reading the package zip failed: {0}")]
    Read(#[source] io::Error),
    /// The zip's structure is not what `zipcheck::check` passed: it was not checked, or it
    /// changed while being read.
    #[error("the package zip cannot be read: {0}")]
    InvalidZip(String),
    /// An entry's data does not decode to what its central directory header claims: the
    /// zip is damaged, and unpacking it would fail too. `name` is as
    /// [`Candidate::name`] gives it.
    #[error("entry '{name}' at offset {offset} is damaged: {what}")]
    Corrupt {
        name: String,
        offset: u64,
        what: Corruption,
    },
}

impl HarvestError {
    /// Whether the failure lies with the infrastructure, so that trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Read(_))
    }

    /// What an error returned by a [`CandidateReader`] stands for: the reader hands its
    /// [`HarvestError`] inside an [`io::Error`] (as `Read` must), and a caller that copied
    /// it with `io::copy` gets it back here. Any other error is a [`HarvestError::Read`].
    pub fn from_read_error(error: io::Error) -> Self {
        if !error.get_ref().is_some_and(|inner| inner.is::<Self>()) {
            return Self::Read(error);
        }
        let kind = error.kind();
        match error.into_inner().map(|inner| inner.downcast::<Self>()) {
            Some(Ok(harvest)) => *harvest,
            Some(Err(other)) => Self::Read(io::Error::new(kind, other)),
            None => Self::Read(io::Error::from(kind)),
        }
    }

    /// The error as [`Read`] returns it: a read failure as it came, anything else wrapped
    /// (see [`HarvestError::from_read_error`]).
    fn into_io(self) -> io::Error {
        match self {
            Self::Read(error) => error,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// The errors of the shared reading code, in this module's terms.
fn from_source(error: AssembleError) -> HarvestError {
    match error {
        AssembleError::Read(error) => HarvestError::Read(error),
        AssembleError::InvalidUpload(reason) => HarvestError::InvalidZip(reason),
        other => HarvestError::InvalidZip(other.to_string()),
    }
}

/// The entries of `zip` that the resource pool takes, in the order they are stored: the
/// regular files whose uncompressed size is within `min..=max`.
///
/// Skipped, besides files outside the size window:
/// * directories (a name ending in `/` or `\`, or the Unix directory type);
/// * symlinks and any other non-regular Unix type (fifos, devices) in the high half of the
///   external attributes, whichever host made the entry, as `zipcheck` decides what is a
///   link: an entry it checked as a link must not be served as a file;
/// * encrypted entries, and methods other than stored and deflate: their bytes cannot be
///   hashed here. `zipcheck` accepts any method for files (an unpacker may know it), so
///   such an entry belongs to a valid package, and the pool merely does without it:
///   failing the package for it would turn a cache miss into an error.
///
/// Reads only the end records and the central directory, in chunks of up to 1 MiB. Keeps
/// about 56 bytes per candidate plus its name (at most 96 bytes), and 8 bytes per entry
/// while it runs.
pub fn pool_candidates(
    zip: &dyn ReadAt,
    min: u64,
    max: u64,
) -> Result<Vec<Candidate>, HarvestError> {
    let dir = packages_zipcheck::central_directory(zip).map_err(|error| match error {
        CheckError::Io(error) => HarvestError::Read(error),
        CheckError::Invalid(problem) => HarvestError::InvalidZip(problem.to_string()),
    })?;
    let mut window = Window::new(zip, dir.offset, dir.end, DIRECTORY_CHUNK);
    // Preallocated up to a point only: the count comes from the archive.
    let mut offsets = Vec::with_capacity(usize::try_from(dir.entries.min(1 << 16)).unwrap_or(0));
    let mut candidates = Vec::new();
    let mut walker = Walker::new(&dir);
    while let Some(record) = walker.next(&mut window).map_err(from_source)? {
        offsets.push(record.local_offset);
        if let Some(compression) = pool_compression(&record, min, max) {
            candidates.push(Candidate {
                name: kept_name(record.name),
                offset: record.local_offset,
                compressed: record.compressed,
                size: record.uncompressed,
                crc32: record.crc,
                compression,
                region_end: 0,
                data_start: None,
            });
        }
    }
    // Every entry's offset, not only the candidates', bounds the reads: the entry after a
    // candidate may be one the pool does not take.
    offsets.sort_unstable();
    candidates.sort_unstable_by_key(|c| c.offset);
    for candidate in &mut candidates {
        let next = offsets.partition_point(|&o| o <= candidate.offset);
        candidate.region_end = offsets.get(next).map_or(dir.offset, |&o| o.min(dir.offset));
    }
    Ok(candidates)
}

/// How the entry's data is stored, if the pool takes the entry.
fn pool_compression(record: &Record<'_>, min: u64, max: u64) -> Option<Compression> {
    // Hosts other than Unix leave the type bits zero: such an entry is a plain file too.
    // Any other type (a link, whose data is its target, a fifo, a device) is not.
    let file_type = (record.external >> 16) & S_IFMT;
    let regular = file_type == 0 || file_type == S_IFREG;
    if record.is_dir() || !regular || !(min..=max).contains(&record.uncompressed) {
        return None;
    }
    if record.flags & ENCRYPTED != 0 {
        return None;
    }
    match record.method {
        STORED => Some(Compression::Stored),
        DEFLATED => Some(Compression::Deflated),
        _ => None,
    }
}

/// The name as [`Candidate::name`] describes it.
fn kept_name(name: &[u8]) -> Box<str> {
    let name = String::from_utf8_lossy(name);
    if name.len() <= KEPT_NAME_BYTES {
        return name.into();
    }
    let mut cut = name.len() - KEPT_NAME_BYTES;
    while !name.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", name.get(cut..).unwrap_or_default()).into_boxed_str()
}

/// The SHA-1 (lowercase hex) and size of each candidate's file, in the order given.
///
/// One pass over the zip in the order the entries are stored, through one 4 MiB read
/// buffer, one inflater and one 256 KiB buffer of inflated bytes: consecutive candidates
/// share reads, and the bytes between two of them are read through when there are less
/// than 1 MiB of them, skipped otherwise (a large file outside the size window costs
/// nothing). Each file's length and CRC-32 are checked against the central directory, so
/// the sizes returned are the files' true lengths; the first that disagrees ends the pass
/// with [`HarvestError::Corrupt`].
pub fn hash_candidates(
    zip: &dyn ReadAt,
    candidates: &[Candidate],
) -> Result<Vec<(String, u64)>, HarvestError> {
    let mut order: Vec<(u64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(index, c)| (c.offset, index))
        .collect();
    order.sort_unstable();
    let mut hashes = vec![(String::new(), 0); candidates.len()];
    let (Some(&(start, _)), Some(end)) =
        (order.first(), candidates.iter().map(|c| c.region_end).max())
    else {
        return Ok(hashes);
    };
    let mut window = Window::new(zip, start, end, DATA_CHUNK);
    let mut inflater = None;
    let mut buf = vec![0; HASH_BUFFER];
    let mut runs = order.as_slice();
    while let Some(&(_, first)) = runs.first() {
        // A run: candidates close enough to read as one span, which bounds the refills.
        let mut run_end = candidates.get(first).map_or(0, |c| c.region_end);
        let mut len = 1;
        for &(offset, index) in runs.get(1..).unwrap_or_default() {
            if offset > run_end.saturating_add(READ_THROUGH) {
                break;
            }
            run_end = run_end.max(candidates.get(index).map_or(0, |c| c.region_end));
            len += 1;
        }
        window.set_limit(run_end);
        let (run, rest) = runs.split_at(len);
        for &(_, index) in run {
            let (Some(candidate), Some(slot)) = (candidates.get(index), hashes.get_mut(index))
            else {
                continue;
            };
            let sha1 = hash_one(candidate, &mut window, &mut inflater, &mut buf)?;
            *slot = (sha1, candidate.size);
        }
        runs = rest;
    }
    Ok(hashes)
}

fn hash_one(
    candidate: &Candidate,
    window: &mut Window<'_>,
    inflater: &mut Option<Decompress>,
    buf: &mut [u8],
) -> Result<String, HarvestError> {
    let mut decode = Decode::start(candidate, window, inflater)?;
    let mut sha1 = Sha1::new();
    loop {
        let n = decode.read(candidate, window, inflater, buf)?;
        if n == 0 {
            return Ok(format!("{:x}", sha1.finalize()));
        }
        sha1.update(buf.get(..n).unwrap_or_default());
    }
}

/// The file of `candidate`, streamed: for copying one pool entry at a time, independently
/// of [`hash_candidates`].
///
/// Reads the local header (to find where the data starts), then the data in chunks of up
/// to 4 MiB, never past the next entry. The end of the data is reported only once the
/// length and CRC-32 are found right; an error is an [`io::Error`] that
/// [`HarvestError::from_read_error`] turns back into what happened. Memory: at most 4 MiB
/// of read buffer and, for deflated data, one inflater.
pub fn open_candidate<'a>(
    zip: &'a dyn ReadAt,
    candidate: &Candidate,
) -> Result<CandidateReader<'a>, HarvestError> {
    let mut window = Window::new(zip, candidate.offset, candidate.region_end, DATA_CHUNK);
    let mut inflater = None;
    let decode = Decode::start(candidate, &mut window, &mut inflater)?;
    Ok(CandidateReader {
        candidate: candidate.clone(),
        window,
        inflater,
        decode,
        failed: false,
    })
}

/// A candidate's file, as [`open_candidate`] streams it.
pub struct CandidateReader<'a> {
    candidate: Candidate,
    window: Window<'a>,
    inflater: Option<Decompress>,
    decode: Decode,
    /// Set by the first error: the stream is not resumable, and a later read must not pass
    /// for a clean end.
    failed: bool,
}

impl fmt::Debug for CandidateReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CandidateReader")
            .field("candidate", &self.candidate)
            .field("produced", &self.decode.produced)
            .finish_non_exhaustive()
    }
}

impl Read for CandidateReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("an earlier read of this entry failed"));
        }
        self.decode
            .read(&self.candidate, &mut self.window, &mut self.inflater, buf)
            .map_err(|error| {
                self.failed = true;
                error.into_io()
            })
    }
}

/// Where one candidate's decoding stands. The window and inflater are passed in, so the
/// hashing pass reuses one of each for all candidates.
struct Decode {
    /// Next byte of stored data to read.
    pos: u64,
    /// End of the stored data.
    end: u64,
    /// Bytes of the file produced so far.
    produced: u64,
    crc: Crc,
    /// The deflate stream has ended; nothing more comes out.
    stream_ended: bool,
    /// The length and CRC-32 were checked: reads return 0 from now on.
    done: bool,
}

impl Decode {
    /// Finds the data after the candidate's local header, and readies the inflater.
    fn start(
        candidate: &Candidate,
        window: &mut Window<'_>,
        inflater: &mut Option<Decompress>,
    ) -> Result<Self, HarvestError> {
        let fixed = window
            .get(candidate.offset, LOCAL_LEN)
            .map_err(from_source)?;
        let (start, end) = candidate.data_span(fixed)?;
        if candidate.compression == Compression::Deflated {
            match inflater {
                Some(inflater) => inflater.reset(false),
                None => *inflater = Some(Decompress::new(false)),
            }
        }
        Ok(Self {
            pos: start,
            end,
            produced: 0,
            crc: Crc::new(),
            stream_ended: false,
            done: false,
        })
    }

    /// The next bytes of the file into `out`; 0 once all of it came out and its length and
    /// CRC-32 matched.
    fn read(
        &mut self,
        candidate: &Candidate,
        window: &mut Window<'_>,
        inflater: &mut Option<Decompress>,
        out: &mut [u8],
    ) -> Result<usize, HarvestError> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        let n = match candidate.compression {
            Compression::Stored => self.copy(window, out)?,
            Compression::Deflated => self.inflate(candidate, window, inflater, out)?,
        };
        if n > 0 {
            self.crc.update(out.get(..n).unwrap_or_default());
            self.produced = self.produced.saturating_add(n as u64);
            // Checked as the bytes come, so a stream that inflates without end stops here.
            if self.produced > candidate.size {
                return Err(corrupt(candidate, Corruption::Length));
            }
            return Ok(n);
        }
        if self.produced != candidate.size {
            return Err(corrupt(candidate, Corruption::Length));
        }
        if self.crc.sum() != candidate.crc32 {
            return Err(corrupt(candidate, Corruption::Crc));
        }
        self.done = true;
        Ok(0)
    }

    fn copy(&mut self, window: &mut Window<'_>, out: &mut [u8]) -> Result<usize, HarvestError> {
        if self.pos >= self.end {
            return Ok(0);
        }
        let want = (self.end - self.pos).min(out.len() as u64);
        let bytes = window.chunk(self.pos, want).map_err(from_source)?;
        let n = bytes.len();
        out.get_mut(..n)
            .ok_or_else(|| HarvestError::InvalidZip("read buffer out of range".into()))?
            .copy_from_slice(bytes);
        self.pos += n as u64;
        Ok(n)
    }

    fn inflate(
        &mut self,
        candidate: &Candidate,
        window: &mut Window<'_>,
        inflater: &mut Option<Decompress>,
        out: &mut [u8],
    ) -> Result<usize, HarvestError> {
        if self.stream_ended {
            return Ok(0);
        }
        let Some(inflater) = inflater.as_mut() else {
            return Err(HarvestError::InvalidZip("no inflater was readied".into()));
        };
        loop {
            let input = if self.pos < self.end {
                window
                    .chunk(self.pos, self.end - self.pos)
                    .map_err(from_source)?
            } else {
                &[]
            };
            let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
            let status = inflater
                .decompress(input, out, FlushDecompress::None)
                .map_err(|_| corrupt(candidate, Corruption::Deflate))?;
            let read = inflater.total_in() - before_in;
            let wrote = usize::try_from(inflater.total_out() - before_out).unwrap_or(usize::MAX);
            self.pos = self.pos.saturating_add(read);
            if status == Status::StreamEnd {
                // Bytes left after the stream would be another entry's for a streaming
                // unpacker; `zipcheck` checks this only for entries with a descriptor.
                if self.pos != self.end {
                    return Err(corrupt(candidate, Corruption::Deflate));
                }
                self.stream_ended = true;
                return Ok(wrote);
            }
            if wrote > 0 {
                return Ok(wrote);
            }
            if read == 0 {
                // No progress with room to write: the data ended before the stream did.
                return Err(corrupt(candidate, Corruption::Deflate));
            }
        }
    }
}

pub(crate) fn corrupt(candidate: &Candidate, what: Corruption) -> HarvestError {
    HarvestError::Corrupt {
        name: candidate.name.to_string(),
        offset: candidate.offset,
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_their_end_on_a_char_boundary() {
        assert_eq!(&*kept_name(b"lib/app.jar"), "lib/app.jar");
        let long = format!("{}é/tail.jar", "d/".repeat(60));
        let kept = kept_name(long.as_bytes());
        assert!(kept.starts_with('…'), "{kept}");
        assert!(kept.ends_with("/tail.jar"));
        assert!(kept.len() <= KEPT_NAME_BYTES + '…'.len_utf8());
    }

    #[test]
    fn reader_errors_come_back_as_what_they_were() {
        let corrupt = HarvestError::Corrupt {
            name: "a".into(),
            offset: 7,
            what: Corruption::Crc,
        };
        let back = HarvestError::from_read_error(corrupt.into_io());
        assert!(matches!(
            back,
            HarvestError::Corrupt {
                offset: 7,
                what: Corruption::Crc,
                ..
            }
        ));
        let read = io::Error::new(io::ErrorKind::TimedOut, "slow");
        let back = HarvestError::from_read_error(HarvestError::Read(read).into_io());
        assert!(back.is_transient());
        assert!(matches!(back, HarvestError::Read(e) if e.kind() == io::ErrorKind::TimedOut));
    }
}
