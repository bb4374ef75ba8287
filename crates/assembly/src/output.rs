//! The package being written: a buffered sink that knows its offset, and the one reused
//! deflater for resource data.

use std::io::{self, BufWriter, Write};

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::AssembleError;

/// Headers are small and many; batching them keeps the writes into the pipe few. Entry
/// data larger than this passes straight through.
const OUTPUT_BUFFER: usize = 256 * 1024;
/// Deflated bytes are handed on in pieces of at most this size.
const DEFLATE_BUFFER: usize = 64 * 1024;

/// Everything written goes through [`Output::put`], so `position` is the offset the next
/// byte gets in the package: what local header offsets and the end records need.
pub(crate) struct Output<'w> {
    inner: BufWriter<&'w mut dyn Write>,
    position: u64,
}

impl<'w> Output<'w> {
    pub(crate) fn new(out: &'w mut dyn Write) -> Self {
        Self {
            inner: BufWriter::with_capacity(OUTPUT_BUFFER, out),
            position: 0,
        }
    }

    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<(), AssembleError> {
        self.inner.write_all(bytes).map_err(AssembleError::Write)?;
        self.position = self.position.saturating_add(bytes.len() as u64);
        Ok(())
    }

    /// Flushes what is buffered; returns the package's length.
    pub(crate) fn finish(mut self) -> Result<u64, AssembleError> {
        self.inner.flush().map_err(AssembleError::Write)?;
        Ok(self.position)
    }
}

/// Raw deflate (no zlib wrapper), at the fastest level: pool files are at least the pool's
/// minimum size and mostly archives already (jars, wheels, images), where higher levels
/// cost CPU for little. One compressor is reset for each entry rather than made anew, as
/// its tables dwarf a small file.
pub(crate) struct Deflater {
    engine: Compress,
    buf: Vec<u8>,
}

impl Deflater {
    pub(crate) fn new() -> Self {
        Self {
            engine: Compress::new(Compression::fast(), false),
            buf: vec![0; DEFLATE_BUFFER],
        }
    }

    /// Starts a new deflate stream.
    pub(crate) fn reset(&mut self) {
        self.engine.reset();
    }

    pub(crate) fn write(
        &mut self,
        mut input: &[u8],
        out: &mut Output<'_>,
    ) -> Result<(), AssembleError> {
        while !input.is_empty() {
            let (consumed, produced, _) = self.step(input, FlushCompress::None, out)?;
            if consumed == 0 && produced == 0 {
                return Err(stalled());
            }
            input = input.get(consumed..).unwrap_or_default();
        }
        Ok(())
    }

    /// Ends the stream, writing what the compressor still holds.
    pub(crate) fn finish(&mut self, out: &mut Output<'_>) -> Result<(), AssembleError> {
        loop {
            let (_, produced, status) = self.step(&[], FlushCompress::Finish, out)?;
            if status == Status::StreamEnd {
                return Ok(());
            }
            if produced == 0 {
                return Err(stalled());
            }
        }
    }

    /// One call into the compressor; its output goes to `out` at once.
    fn step(
        &mut self,
        input: &[u8],
        flush: FlushCompress,
        out: &mut Output<'_>,
    ) -> Result<(usize, usize, Status), AssembleError> {
        let (in_before, out_before) = (self.engine.total_in(), self.engine.total_out());
        let status = self
            .engine
            .compress(input, &mut self.buf, flush)
            .map_err(|e| AssembleError::Write(io::Error::other(e)))?;
        let consumed = usize::try_from(self.engine.total_in() - in_before).unwrap_or(usize::MAX);
        let produced = usize::try_from(self.engine.total_out() - out_before).unwrap_or(usize::MAX);
        out.put(self.buf.get(..produced).unwrap_or_default())?;
        Ok((consumed, produced, status))
    }
}

fn stalled() -> AssembleError {
    AssembleError::Write(io::Error::other("the deflate stream made no progress"))
}
