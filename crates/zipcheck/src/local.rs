//! Comparison of the local file headers with the central directory, while the archive
//! streams past once from its first byte to its last.
//!
//! Unpackers that stream an archive (Java's `ZipInputStream`, libarchive reading a pipe)
//! never see the central directory: they trust the local headers, and find each next entry
//! where the previous one's data (and data descriptor) ends. An archive is only safe for
//! them when that walk meets exactly the entries the central directory lists, so besides the
//! headers themselves this checks that nothing lies between the entries and that no entry's
//! data runs into the next one.

use std::hash::{BuildHasher, RandomState};

use crate::Problem;
use crate::directory::{Entry, LOCAL_LEN, LOCAL_SIG, zip64_extra};

const LOCAL_SIG_BYTES: [u8; 4] = LOCAL_SIG.to_le_bytes();
const DESCRIPTOR_SIG: [u8; 4] = 0x0807_4b50u32.to_le_bytes();
/// General purpose flag bit 3: CRC and sizes follow the data in a data descriptor, and the
/// local header may hold zeros instead.
const HAS_DESCRIPTOR: u16 = 1 << 3;
const SATURATED: u64 = 0xFFFF_FFFF;
const DEFLATED: u16 = 8;
/// Inflated bytes are only counted, never kept: this much scratch space at a time.
const SCRATCH: usize = 32 * 1024;

/// Longest name shown in a problem text.
const SHOWN_NAME_CHARS: usize = 100;

/// Which part of a local header (or of the data descriptor after the data) disagrees with
/// the central directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalField {
    Name,
    Method,
    Size,
    Crc,
    DataDescriptor,
    /// With flag bit 3, the deflate stream must end exactly where the central directory's
    /// compressed size says and inflate to at most its uncompressed size.
    CompressedData,
}

impl std::fmt::Display for LocalField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Name => "name",
            Self::Method => "compression method",
            Self::Size => "size",
            Self::Crc => "CRC-32",
            Self::DataDescriptor => "data descriptor",
            Self::CompressedData => "compressed data",
        })
    }
}

/// What one local header must say, from its central directory entry: 40 bytes, whatever
/// the name's length.
#[derive(Debug, Clone, Copy)]
struct Expected {
    offset: u64,
    compressed: u64,
    uncompressed: u64,
    /// Keyed hash of the name: the name itself is not kept.
    name_hash: u64,
    crc: u32,
    method: u16,
    name_len: u16,
}

impl Expected {
    /// Where the entry's data ends, assuming the local header repeats the central name and
    /// has no extra field: no local header can make it end sooner.
    fn least_end(&self) -> u64 {
        self.offset
            .saturating_add(LOCAL_LEN as u64 + u64::from(self.name_len))
            .saturating_add(self.compressed)
    }
}

/// Collects the expectations during the central directory walk.
pub(crate) struct Expectations {
    keys: RandomState,
    entries: Vec<Expected>,
}

impl Expectations {
    /// `entries` is the count from the end record, already capped by the entry limit, so
    /// the table is allocated once at its final size.
    pub(crate) fn with_capacity(entries: u64) -> Self {
        Self {
            keys: RandomState::new(),
            entries: Vec::with_capacity(usize::try_from(entries).unwrap_or(0)),
        }
    }

    pub(crate) fn push(&mut self, entry: &Entry<'_>) {
        self.entries.push(Expected {
            offset: entry.local_offset,
            compressed: entry.compressed,
            uncompressed: entry.uncompressed,
            name_hash: self.keys.hash_one(entry.name),
            crc: entry.crc,
            method: entry.method,
            // Central names are at most 0xFFFF bytes long: the field is 16 bits wide.
            name_len: u16::try_from(entry.name.len()).unwrap_or(u16::MAX),
        });
    }

    /// Orders the entries as they lie in the archive and rejects those that must overlap
    /// whatever their local headers say: two entries at one offset, or data running into
    /// the next entry or into the central directory at `directory_offset`.
    pub(crate) fn finish(self, directory_offset: u64) -> Result<LocalHeaders, Problem> {
        let Self { keys, mut entries } = self;
        entries.sort_unstable_by_key(|e| e.offset);
        let bounds = entries
            .iter()
            .skip(1)
            .map(|e| e.offset)
            .chain(std::iter::once(directory_offset));
        for (entry, bound) in entries.iter().zip(bounds) {
            if entry.least_end() > bound {
                return Err(Problem::OverlappingEntries {
                    offset: entry.offset,
                });
            }
        }
        let state = if entries.is_empty() {
            State::Done
        } else {
            State::Prefix
        };
        Ok(LocalHeaders {
            keys,
            expected: entries,
            directory_offset,
            pos: 0,
            next: 0,
            state,
            buf: Vec::new(),
            prefix_match: 0,
            current_name: String::new(),
            inflater: None,
            scratch: Vec::new(),
            stream_ended: false,
            failed: None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first entry (a self-extractor's stub, say).
    Prefix,
    /// Buffering the local header of the next expected entry.
    Header,
    /// Inside the current entry's data, which ends at `end`; `inflate` when the data's
    /// length is only known by inflating it (deflated, with a data descriptor).
    Data {
        end: u64,
        descriptor: bool,
        inflate: bool,
    },
    /// Buffering the data descriptor that runs up to `end`.
    Descriptor { end: u64 },
    /// Every entry was seen; the central directory and end records follow.
    Done,
}

/// Checks the local headers of an archive that passed [`check`](crate::check) as its bytes
/// stream past, so the single sequential read that hashes the archive verifies them too.
///
/// Memory is one 40-byte record per entry, sorted by offset, plus the header being read
/// (at most 30 bytes + 64 KiB name + 64 KiB extra field) and, for deflated entries with a
/// data descriptor, one reused inflater with 32 KiB of scratch space; entry data is never
/// buffered. Work is linear in the bytes fed, plus inflating those entries, which stops as
/// soon as one inflates past the size the central directory claims for it (so it is
/// bounded by [`Limits::max_uncompressed_bytes`](crate::Limits)).
///
/// Feed every byte of the archive in order with [`update`](Self::update), then call
/// [`finish`](Self::finish). The archive passes when:
/// * a local header starts at each offset the central directory gives, and its name,
///   compression method, sizes and CRC-32 agree with the central directory's (with flag
///   bit 3, the local CRC and sizes may be zero, and a data descriptor that agrees must
///   follow the data);
/// * each entry's header and data end exactly where the next entry, or the central
///   directory, begins (after the data descriptor, if any), so no entry overlaps another and
///   nothing hides between them;
/// * a deflated entry with a data descriptor, whose end a streaming unpacker finds by
///   inflating, has a deflate stream that ends exactly at the compressed size the central
///   directory gives (else a header hidden in its data would be read as the next entry);
/// * bytes before the first entry hold no local header signature;
/// * the archive does not end before its last entry does.
///
/// Names are compared through a hash keyed at random for each check, so a different local
/// name could pass only by a chance collision (2^-64), which no archive can be built to
/// provoke.
pub struct LocalHeaders {
    keys: RandomState,
    expected: Vec<Expected>,
    directory_offset: u64,
    /// Offset of the next byte to be fed.
    pos: u64,
    /// Index into `expected` of the entry being read or awaited.
    next: usize,
    state: State,
    /// The header or data descriptor being read.
    buf: Vec<u8>,
    /// How many leading bytes of the local header signature the prefix read so far ends
    /// with.
    prefix_match: usize,
    /// The current entry's name, shortened, while its data descriptor is awaited.
    current_name: String,
    /// Reused for every deflated entry with a data descriptor; made on first use.
    inflater: Option<Box<flate2::Decompress>>,
    scratch: Vec<u8>,
    /// Whether the current entry's deflate stream has ended.
    stream_ended: bool,
    failed: Option<Problem>,
}

impl std::fmt::Debug for LocalHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHeaders")
            .field("entries", &self.expected.len())
            .field("directory_offset", &self.directory_offset)
            .field("pos", &self.pos)
            .field("next", &self.next)
            .field("state", &self.state)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl LocalHeaders {
    /// Feeds the archive's next bytes, in order from offset 0, in chunks of any size. Once
    /// a problem is found, every later call returns it again.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), Problem> {
        if let Some(problem) = &self.failed {
            return Err(problem.clone());
        }
        let result = self.consume(chunk);
        if let Err(problem) = &result {
            self.failed = Some(problem.clone());
        }
        result
    }

    /// After the archive's last byte: whether every expected local header was seen and
    /// matched.
    pub fn finish(mut self) -> Result<(), Problem> {
        if let Some(problem) = self.failed.take() {
            return Err(problem);
        }
        self.settle()?;
        if self.state == State::Done {
            return Ok(());
        }
        let offset = self.current().map_or(self.directory_offset, |e| e.offset);
        Err(Problem::NotAZip(format!(
            "the archive ends at byte {} inside or before the entry at offset {offset}",
            self.pos
        )))
    }

    fn current(&self) -> Option<&Expected> {
        self.expected.get(self.next)
    }

    /// Where the current entry must end: at the next entry's header, or at the central
    /// directory after the last entry.
    fn bound(&self) -> u64 {
        self.expected
            .get(self.next + 1)
            .map_or(self.directory_offset, |e| e.offset)
    }

    fn consume(&mut self, mut chunk: &[u8]) -> Result<(), Problem> {
        self.settle()?;
        while !chunk.is_empty() {
            let taken = match self.state {
                State::Done => chunk.len(),
                State::Prefix => self.scan_prefix(chunk)?,
                State::Data { end, inflate, .. } => {
                    let take = self.skip_to(end, chunk.len());
                    if inflate {
                        self.inflate(chunk.get(..take).unwrap_or_default())?;
                    }
                    take
                }
                State::Header => self.read_header(chunk)?,
                State::Descriptor { end } => {
                    let take = self.skip_to(end, chunk.len());
                    self.buf
                        .extend_from_slice(chunk.get(..take).unwrap_or_default());
                    take
                }
            };
            chunk = chunk.get(taken..).unwrap_or_default();
            self.pos = self.pos.saturating_add(taken as u64);
            self.settle()?;
        }
        Ok(())
    }

    /// How many of `available` bytes lie before `end`.
    fn skip_to(&self, end: u64, available: usize) -> usize {
        usize::try_from(end.saturating_sub(self.pos)).map_or(available, |n| n.min(available))
    }

    /// Makes the state transitions that take no bytes: reaching the end of a region.
    fn settle(&mut self) -> Result<(), Problem> {
        loop {
            match self.state {
                State::Prefix => {
                    let first = self.current().map_or(0, |e| e.offset);
                    if self.pos < first {
                        return Ok(());
                    }
                    self.state = State::Header;
                }
                State::Data {
                    end,
                    descriptor,
                    inflate,
                } => {
                    if self.pos < end {
                        return Ok(());
                    }
                    if inflate {
                        self.inflate(&[])?;
                        if !self.stream_ended {
                            return Err(self.current_mismatch(LocalField::CompressedData));
                        }
                    }
                    if descriptor {
                        self.state = State::Descriptor { end: self.bound() };
                    } else {
                        self.next_entry();
                    }
                }
                State::Descriptor { end } => {
                    if self.pos < end {
                        return Ok(());
                    }
                    self.check_descriptor()?;
                    self.buf.clear();
                    self.next_entry();
                }
                State::Header | State::Done => return Ok(()),
            }
        }
    }

    fn next_entry(&mut self) {
        self.next += 1;
        self.state = if self.next < self.expected.len() {
            State::Header
        } else {
            State::Done
        };
    }

    /// Looks for a local header signature in the bytes before the first entry: a streaming
    /// unpacker that searches for the first header would take it for an entry.
    fn scan_prefix(&mut self, chunk: &[u8]) -> Result<usize, Problem> {
        let first = self.current().map_or(0, |e| e.offset);
        let take = self.skip_to(first, chunk.len());
        for (i, &b) in chunk.get(..take).unwrap_or_default().iter().enumerate() {
            self.prefix_match = if LOCAL_SIG_BYTES.get(self.prefix_match) == Some(&b) {
                self.prefix_match + 1
            } else if b == LOCAL_SIG_BYTES[0] {
                1
            } else {
                0
            };
            if self.prefix_match == LOCAL_SIG_BYTES.len() {
                let end = self.pos.saturating_add(i as u64 + 1);
                return Err(Problem::UnlistedData {
                    offset: end.saturating_sub(LOCAL_SIG_BYTES.len() as u64),
                });
            }
        }
        Ok(take)
    }

    /// Buffers the header; checks it once complete. Returns how many bytes it took.
    fn read_header(&mut self, chunk: &[u8]) -> Result<usize, Problem> {
        let Some(&expected) = self.current() else {
            return Ok(0);
        };
        let mut taken = 0;
        loop {
            let need = header_len(&self.buf).unwrap_or(LOCAL_LEN);
            let rest = chunk.get(taken..).unwrap_or_default();
            let take = need.saturating_sub(self.buf.len()).min(rest.len());
            self.buf
                .extend_from_slice(rest.get(..take).unwrap_or_default());
            taken += take;
            if self.buf.len() < need {
                return Ok(taken);
            }
            if need == LOCAL_LEN && self.buf.get(..4) != Some(&LOCAL_SIG_BYTES[..]) {
                return Err(Problem::MissingLocalHeader {
                    offset: expected.offset,
                });
            }
            if header_len(&self.buf) == Some(self.buf.len()) {
                break;
            }
        }
        let (data_end, descriptor) = self.check_header(&expected)?;
        let inflate = descriptor && expected.method == DEFLATED;
        if descriptor {
            self.current_name = self.buf.get(LOCAL_LEN..).map_or_else(String::new, |rest| {
                shown_name(rest.get(..usize::from(expected.name_len)).unwrap_or(rest))
            });
        }
        if inflate {
            match &mut self.inflater {
                Some(inflater) => inflater.reset(false),
                None => self.inflater = Some(Box::new(flate2::Decompress::new(false))),
            }
            self.scratch.resize(SCRATCH, 0);
            self.stream_ended = false;
        }
        self.buf.clear();
        self.state = State::Data {
            end: data_end,
            descriptor,
            inflate,
        };
        Ok(taken)
    }

    fn current_mismatch(&self, what: LocalField) -> Problem {
        Problem::LocalHeaderMismatch {
            name: self.current_name.clone(),
            offset: self.current().map_or(0, |e| e.offset),
            what,
        }
    }

    /// Inflates the current entry's next data bytes, only to find where its deflate stream
    /// ends; an empty `input` drains what is pending at the end of the data.
    fn inflate(&mut self, mut input: &[u8]) -> Result<(), Problem> {
        let claimed = self.current().map_or(0, |e| e.uncompressed);
        let mismatch = self.current_mismatch(LocalField::CompressedData);
        let Some(inflater) = self.inflater.as_mut() else {
            return Err(mismatch);
        };
        loop {
            if self.stream_ended {
                // Data after the end of the stream: a streaming unpacker would look for the
                // data descriptor and the next entry there.
                return if input.is_empty() {
                    Ok(())
                } else {
                    Err(mismatch)
                };
            }
            let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
            let status = inflater
                .decompress(input, &mut self.scratch, flate2::FlushDecompress::None)
                .map_err(|_| mismatch.clone())?;
            let read = usize::try_from(inflater.total_in() - before_in).unwrap_or(usize::MAX);
            let wrote = inflater.total_out() - before_out;
            input = input.get(read..).unwrap_or_default();
            if inflater.total_out() > claimed {
                return Err(mismatch);
            }
            match status {
                flate2::Status::StreamEnd => self.stream_ended = true,
                _ if read == 0 && wrote == 0 => {
                    // No progress: all input is in, nothing is pending.
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    /// Compares the complete header in `buf` with the central directory's entry; returns
    /// where the entry's data ends and whether a data descriptor follows it.
    fn check_header(&self, expected: &Expected) -> Result<(u64, bool), Problem> {
        let header = self.buf.as_slice();
        let field = |at: usize, width: usize| -> u64 {
            header
                .get(at..at + width)
                .map_or(0, |b| b.iter().rev().fold(0, |v, &x| v << 8 | u64::from(x)))
        };
        let flags = field(6, 2) as u16;
        let method = field(8, 2) as u16;
        let crc = field(14, 4) as u32;
        let name_len = field(26, 2) as usize;
        let name = header
            .get(LOCAL_LEN..LOCAL_LEN + name_len)
            .unwrap_or_default();
        let extra = header.get(LOCAL_LEN + name_len..).unwrap_or_default();
        let mismatch = |what| Problem::LocalHeaderMismatch {
            name: shown_name(name),
            offset: expected.offset,
            what,
        };

        if name.len() != usize::from(expected.name_len)
            || self.keys.hash_one(name) != expected.name_hash
        {
            return Err(mismatch(LocalField::Name));
        }
        if method != expected.method {
            return Err(mismatch(LocalField::Method));
        }

        // Sizes as the local header gives them; `None` where saturated without a Zip64
        // field to say more. A local Zip64 field must hold both sizes, uncompressed first;
        // one holding only the saturated ones, as in the central directory, is tolerated.
        let mut uncompressed = Some(field(22, 4));
        let mut compressed = Some(field(18, 4));
        if uncompressed == Some(SATURATED) || compressed == Some(SATURATED) {
            let zip64 = zip64_extra(extra).unwrap_or_default();
            let value = |at: usize| {
                zip64
                    .get(at..at + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
            };
            let (first, second) = (value(0), value(8));
            let both = second.is_some();
            if uncompressed == Some(SATURATED) {
                uncompressed = first;
                if compressed == Some(SATURATED) {
                    compressed = second;
                }
            } else if compressed == Some(SATURATED) {
                compressed = if both { second } else { first };
            }
        }

        let agrees = |local: Option<u64>, central: u64| {
            if flags & HAS_DESCRIPTOR != 0 {
                // The real values follow the data; zero (or nothing) stands for unknown.
                local.is_none_or(|v| v == 0 || v == central)
            } else {
                local == Some(central)
            }
        };
        if !agrees(compressed, expected.compressed) || !agrees(uncompressed, expected.uncompressed)
        {
            return Err(mismatch(LocalField::Size));
        }
        if !agrees(Some(u64::from(crc)), u64::from(expected.crc)) {
            return Err(mismatch(LocalField::Crc));
        }

        let data_end = expected
            .offset
            .saturating_add(header.len() as u64)
            .saturating_add(expected.compressed);
        let bound = self.bound();
        if data_end > bound {
            return Err(Problem::OverlappingEntries {
                offset: expected.offset,
            });
        }
        // A streaming unpacker looks for the next header right after the data (and the
        // data descriptor): anything else there is either hidden from this check or
        // hides the next entry from the unpacker.
        let gap = bound - data_end;
        let allowed = if flags & HAS_DESCRIPTOR != 0 {
            matches!(gap, 12 | 16 | 20 | 24)
        } else {
            gap == 0
        };
        if !allowed {
            return Err(Problem::UnlistedData { offset: data_end });
        }
        Ok((data_end, gap > 0))
    }

    /// Checks the data descriptor in `buf` against the central directory. Its length was
    /// checked with the header: 12 or 20 bytes without the optional signature, 16 or 24
    /// with it, the longer forms holding 8-byte sizes.
    fn check_descriptor(&self) -> Result<(), Problem> {
        let Some(expected) = self.current() else {
            return Ok(());
        };
        let d = self.buf.as_slice();
        let signed = d.get(..4) == Some(&DESCRIPTOR_SIG[..]);
        // Readers tell the forms apart by the signature: a descriptor whose length says
        // otherwise would be read with the wrong length.
        let (body, wide) = match (d.len(), signed) {
            (16, true) => (d.get(4..), false),
            (24, true) => (d.get(4..), true),
            (12, false) => (Some(d), false),
            (20, false) => (Some(d), true),
            _ => (None, false),
        };
        let width = if wide { 8 } else { 4 };
        let value = |at: usize| -> Option<u64> {
            body?
                .get(at..at + width)
                .map(|b| b.iter().rev().fold(0, |v, &x| v << 8 | u64::from(x)))
        };
        let crc = body
            .and_then(|b| b.get(..4))
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes);
        let agrees = crc == Some(expected.crc)
            && value(4) == Some(expected.compressed)
            && value(4 + width) == Some(expected.uncompressed);
        if agrees {
            Ok(())
        } else {
            Err(self.current_mismatch(LocalField::DataDescriptor))
        }
    }
}

/// Total length of the local header whose fixed part `buf` starts with.
fn header_len(buf: &[u8]) -> Option<usize> {
    let u16_at = |at: usize| {
        buf.get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    Some(LOCAL_LEN + usize::from(u16_at(26)?) + usize::from(u16_at(28)?))
}

/// A name for a problem text: lossy UTF-8, cut to [`SHOWN_NAME_CHARS`] characters.
pub(crate) fn shown_name(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.char_indices().nth(SHOWN_NAME_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.into_owned(),
    }
}
