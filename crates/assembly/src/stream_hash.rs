//! The pool candidates' SHA-1s from the package's bytes as they stream past once: the
//! worker reads every byte of an upload anyway (for its SHA-1 and SHA-256), so the pool
//! needs no pass of its own to learn which files it lacks.
//!
//! Push-based and free of I/O: [`StreamHasher::feed`] takes the zip's bytes in order from
//! offset 0, in chunks of any size; the same checks as [`crate::hash_candidates`] apply
//! (local header, length, CRC-32, a deflate stream ending with its data).

use flate2::{Crc, Decompress, FlushDecompress, Status};
use sha1::{Digest, Sha1};

use crate::format::LOCAL_LEN;
use crate::harvest::{Candidate, Compression, Corruption, HarvestError, corrupt};

/// Inflated bytes are hashed from a buffer of this size.
const INFLATE_BUFFER: usize = 256 * 1024;

/// Where the current candidate stands.
enum Stage {
    /// Gathering its fixed local header (30 bytes).
    Header(Vec<u8>),
    /// Hashing its data, which lies in `start..end` of the zip.
    Data {
        start: u64,
        end: u64,
        sha1: Sha1,
        crc: Crc,
        produced: u64,
        stream_ended: bool,
    },
}

/// Hashes candidates (as [`crate::pool_candidates`] lists them: in the order they are
/// stored, none overlapping) from the zip's bytes fed in order.
pub struct StreamHasher {
    candidates: Vec<Candidate>,
    hashes: Vec<(String, u64)>,
    /// Offset in the zip of the next byte fed.
    pos: u64,
    stage: Stage,
    inflater: Option<Decompress>,
    out: Vec<u8>,
    failed: bool,
    /// Per candidate (in stored order): whether its file's bytes are handed out as they
    /// are hashed ([`StreamHasher::feed_some`]).
    tapped: Vec<bool>,
}

impl std::fmt::Debug for StreamHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHasher")
            .field("candidates", &self.candidates.len())
            .field("hashed", &self.hashes.len())
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl StreamHasher {
    /// Candidates in any order; they are hashed in the order they are stored, and
    /// [`StreamHasher::finish`] returns them in that order with their hashes.
    pub fn new(mut candidates: Vec<Candidate>) -> Self {
        candidates.sort_unstable_by_key(Candidate::offset);
        let hashes = Vec::with_capacity(candidates.len());
        StreamHasher {
            candidates,
            hashes,
            pos: 0,
            stage: Stage::Header(Vec::with_capacity(LOCAL_LEN)),
            inflater: None,
            out: Vec::new(),
            failed: false,
            tapped: Vec::new(),
        }
    }

    /// The candidates in the order they are stored: positions in this list are what
    /// [`StreamHasher::feed_some`] and [`StreamHasher::hashed`] speak of.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Hands out the file bytes of the candidates `tap` picks, as they are hashed.
    pub fn tap(&mut self, tap: impl Fn(&Candidate) -> bool) {
        self.tapped = self.candidates.iter().map(tap).collect();
    }

    /// How many candidates (the first ones in stored order) are hashed and checked.
    pub fn hashed(&self) -> usize {
        self.hashes.len()
    }

    /// How many candidates (the first ones in stored order) had their local header read,
    /// so that [`Candidate::stored_bytes`] knows where a stored one's bytes lie (they are
    /// checked only once [`StreamHasher::hashed`] counts them).
    pub fn located(&self) -> usize {
        match self.stage {
            Stage::Data { .. } => self.hashes.len() + 1,
            Stage::Header(_) => self.hashes.len(),
        }
    }

    /// The next bytes of the zip. Memory: one inflater and a 256 KiB buffer at most,
    /// whatever the chunk or the files.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), HarvestError> {
        loop {
            self.feed_some(&mut chunk, &mut |_, _| {})?;
            if chunk.is_empty() {
                return Ok(());
            }
        }
    }

    /// Like [`StreamHasher::feed`], but stops once it handed out some bytes of a tapped
    /// file (at most 256 KiB) to `emit` with the candidate's position, and leaves the rest
    /// of `chunk` for the next call: a caller can pass them on before more come, so an
    /// entry that inflates a thousandfold never piles up in memory.
    pub fn feed_some(
        &mut self,
        chunk: &mut &[u8],
        emit: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<(), HarvestError> {
        if self.failed {
            return Err(HarvestError::InvalidZip(
                "an earlier part of the zip was refused".into(),
            ));
        }
        let result = (|| {
            while self.hashes.len() < self.candidates.len() {
                let emitted = match self.step(chunk, emit)? {
                    Step::NeedsInput => return Ok(()),
                    Step::Moved { emitted } => emitted,
                };
                if emitted {
                    return Ok(());
                }
            }
            // The rest lies after the last candidate.
            self.pos = self.pos.saturating_add(chunk.len() as u64);
            *chunk = &[];
            Ok(())
        })();
        self.failed = result.is_err();
        result
    }

    /// The SHA-1 (lowercase hex) and size of every candidate, in the order they are
    /// stored, once the whole zip was fed.
    pub fn finish(self) -> Result<Vec<(Candidate, String, u64)>, HarvestError> {
        if self.failed {
            return Err(HarvestError::InvalidZip(
                "an earlier part of the zip was refused".into(),
            ));
        }
        if let Some(missing) = self.candidates.get(self.hashes.len()) {
            return Err(HarvestError::InvalidZip(format!(
                "the zip ended before the entry at offset {} did",
                missing.offset()
            )));
        }
        Ok(self
            .candidates
            .into_iter()
            .zip(self.hashes)
            .map(|(candidate, (sha1, size))| (candidate, sha1, size))
            .collect())
    }

    /// Moves the current candidate on with bytes from the front of `chunk`.
    fn step(
        &mut self,
        chunk: &mut &[u8],
        emit: &mut dyn FnMut(usize, &[u8]),
    ) -> Result<Step, HarvestError> {
        let position = self.hashes.len();
        let Some(candidate) = self.candidates.get(position) else {
            return Ok(Step::NeedsInput);
        };
        let tapped = self.tapped.get(position).copied().unwrap_or(false);
        let mut emitted = false;
        match &mut self.stage {
            Stage::Header(fixed) => {
                skip_to(&mut self.pos, chunk, candidate.offset());
                let want = LOCAL_LEN - fixed.len();
                let n = want.min(chunk.len());
                fixed.extend_from_slice(chunk.get(..n).unwrap_or_default());
                advance(&mut self.pos, chunk, n);
                if fixed.len() < LOCAL_LEN {
                    return Ok(Step::NeedsInput);
                }
                let (start, end) = candidate.data_span(fixed)?;
                let compression = candidate.compression();
                if let Some(hashing) = self.candidates.get_mut(position) {
                    hashing.data_start = Some(start);
                }
                if compression == Compression::Deflated {
                    match &mut self.inflater {
                        Some(inflater) => inflater.reset(false),
                        None => self.inflater = Some(Decompress::new(false)),
                    }
                    if self.out.is_empty() {
                        self.out = vec![0; INFLATE_BUFFER];
                    }
                }
                self.stage = Stage::Data {
                    start,
                    end,
                    sha1: Sha1::new(),
                    crc: Crc::new(),
                    produced: 0,
                    stream_ended: false,
                };
                Ok(Step::Moved { emitted })
            }
            Stage::Data {
                start,
                end,
                sha1,
                crc,
                produced,
                stream_ended,
            } => {
                skip_to(&mut self.pos, chunk, *start);
                if self.pos < *start {
                    return Ok(Step::NeedsInput);
                }
                let mut take = usize::try_from(*end - self.pos)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                if tapped {
                    take = take.min(INFLATE_BUFFER);
                }
                let data = chunk.get(..take).unwrap_or_default();
                let consumed = match candidate.compression() {
                    Compression::Stored => {
                        sha1.update(data);
                        crc.update(data);
                        *produced = produced.saturating_add(data.len() as u64);
                        if tapped && !data.is_empty() && *produced <= candidate.size() {
                            emit(position, data);
                            emitted = true;
                        }
                        take
                    }
                    Compression::Deflated => {
                        let Some(inflater) = self.inflater.as_mut() else {
                            return Err(HarvestError::InvalidZip("no inflater was readied".into()));
                        };
                        let mut input = data;
                        while !input.is_empty() && !emitted {
                            if *stream_ended {
                                // Bytes after the stream would be another entry's for a
                                // streaming unpacker.
                                return Err(corrupt(candidate, Corruption::Deflate));
                            }
                            let (before_in, before_out) =
                                (inflater.total_in(), inflater.total_out());
                            let status = inflater
                                .decompress(input, &mut self.out, FlushDecompress::None)
                                .map_err(|_| corrupt(candidate, Corruption::Deflate))?;
                            let read = usize::try_from(inflater.total_in() - before_in)
                                .unwrap_or(usize::MAX);
                            let wrote = usize::try_from(inflater.total_out() - before_out)
                                .unwrap_or(usize::MAX);
                            let inflated = self.out.get(..wrote).unwrap_or_default();
                            sha1.update(inflated);
                            crc.update(inflated);
                            *produced = produced.saturating_add(wrote as u64);
                            // Checked as the bytes come, so a stream that inflates without
                            // end stops here.
                            if *produced > candidate.size() {
                                return Err(corrupt(candidate, Corruption::Length));
                            }
                            if tapped && !inflated.is_empty() {
                                emit(position, inflated);
                                emitted = true;
                            }
                            input = input.get(read..).unwrap_or_default();
                            if status == Status::StreamEnd {
                                *stream_ended = true;
                            } else if read == 0 && wrote == 0 {
                                return Err(corrupt(candidate, Corruption::Deflate));
                            }
                        }
                        // Stopped early after handing bytes out: the rest comes next call.
                        take - input.len()
                    }
                };
                if *produced > candidate.size() {
                    return Err(corrupt(candidate, Corruption::Length));
                }
                advance(&mut self.pos, chunk, consumed);
                if self.pos < *end {
                    return Ok(if emitted {
                        Step::Moved { emitted }
                    } else {
                        Step::NeedsInput
                    });
                }
                let deflate_open =
                    candidate.compression() == Compression::Deflated && !*stream_ended;
                if deflate_open {
                    // The data ended before the stream did.
                    return Err(corrupt(candidate, Corruption::Deflate));
                }
                if *produced != candidate.size() {
                    return Err(corrupt(candidate, Corruption::Length));
                }
                if crc.sum() != candidate.crc32() {
                    return Err(corrupt(candidate, Corruption::Crc));
                }
                let digest = format!("{:x}", std::mem::take(sha1).finalize());
                self.hashes.push((digest, candidate.size()));
                self.stage = Stage::Header(Vec::with_capacity(LOCAL_LEN));
                Ok(Step::Moved { emitted })
            }
        }
    }
}

/// What one step did.
enum Step {
    /// It used up the chunk (or there is nothing left to hash).
    NeedsInput,
    /// It got somewhere (a header read, a file finished, bytes handed out) and may go on
    /// with what is left of the chunk.
    Moved { emitted: bool },
}

/// Drops the bytes of `chunk` that lie before `target`.
fn skip_to(pos: &mut u64, chunk: &mut &[u8], target: u64) {
    if *pos < target {
        let n = usize::try_from(target - *pos)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        advance(pos, chunk, n);
    }
}

fn advance(pos: &mut u64, chunk: &mut &[u8], n: usize) {
    *chunk = chunk.get(n..).unwrap_or_default();
    *pos = pos.saturating_add(n as u64);
}
