//! Copying the uploaded entries: three passes over the upload, each sequential.
//!
//! 1. [`Upload::scan`] walks the central directory, decides each entry's fate and finds
//!    collisions, before anything is written;
//! 2. [`Upload::copy_entries`] copies the kept entries' local headers and data, in the
//!    order they lie in the upload, through one large read buffer;
//! 3. [`Upload::write_central`] walks the central directory again and writes each kept
//!    entry's header with its new offset.
//!
//! Walking the directory twice instead of keeping it costs a second read of it (a few
//! MiB at most), and keeps memory at about 56 bytes per entry whatever the names' lengths.

use packages_zipcheck::{CentralDirectory, CheckError, ReadAt};

use crate::AssembleError;
use crate::format::{
    self, CentralHeader, HAS_DESCRIPTOR, LOCAL_LEN, LOCAL_SIG, SATURATED, le16, le32,
};
use crate::output::Output;
use crate::plan::{Fate, Plan};
use crate::source::{Walker, Window, invalid};

/// Central directory reads: enough for any single header (at most 46 + 3 × 64 KiB), and
/// for the whole directory of a typical application in one request.
pub(crate) const DIRECTORY_CHUNK: usize = 1024 * 1024;
/// Entry data reads: each a range request on S3, so large; the kept entries are read in
/// the order they are stored, so consecutive entries share requests.
pub(crate) const DATA_CHUNK: usize = 4 * 1024 * 1024;

/// `new_offset` of an entry a resource replaces.
const SKIPPED: u64 = u64::MAX;

/// What copying an entry and rewriting its central header need, beyond the header itself.
#[derive(Debug, Clone, Copy)]
struct Entry {
    source_offset: u64,
    compressed: u64,
    uncompressed: u64,
    crc: u32,
    flags: u16,
    /// Where the entry starts in the package, once copied; [`SKIPPED`] if replaced.
    new_offset: u64,
}

pub(crate) struct Upload<'a> {
    src: &'a dyn ReadAt,
    dir: CentralDirectory,
    directory: Window<'a>,
    /// One per central directory header, in directory order.
    entries: Vec<Entry>,
    /// `(source offset, index)` of the kept entries, in the order they lie in the upload.
    order: Vec<(u64, usize)>,
    replaced: u64,
    scratch: Vec<u8>,
    extra: Vec<u8>,
}

impl<'a> Upload<'a> {
    /// Pass 1: the fate of every entry, and any collision with a resource.
    pub(crate) fn scan(src: &'a dyn ReadAt, plan: &Plan<'_>) -> Result<Self, AssembleError> {
        let dir = packages_zipcheck::central_directory(src).map_err(|e| match e {
            CheckError::Io(e) => AssembleError::Read(e),
            CheckError::Invalid(problem) => invalid(problem.to_string()),
        })?;
        let mut directory = Window::new(src, dir.offset, dir.end, DIRECTORY_CHUNK);
        // Preallocated up to a point only: the count comes from the archive, and a caller
        // that skipped the check must not make it reserve memory for a claimed count.
        let mut entries =
            Vec::with_capacity(usize::try_from(dir.entries.min(1 << 16)).unwrap_or(0));
        let mut order = Vec::new();
        let mut replaced = 0;
        let mut walker = Walker::new(&dir);
        while let Some(record) = walker.next(&mut directory)? {
            let fate = plan.classify(record.name, record.is_dir())?;
            let new_offset = match fate {
                Fate::Keep => {
                    order.push((record.local_offset, entries.len()));
                    0
                }
                Fate::Replace => {
                    replaced += 1;
                    SKIPPED
                }
            };
            entries.push(Entry {
                source_offset: record.local_offset,
                compressed: record.compressed,
                uncompressed: record.uncompressed,
                crc: record.crc,
                flags: record.flags,
                new_offset,
            });
        }
        order.sort_unstable();
        Ok(Self {
            src,
            dir,
            directory,
            entries,
            order,
            replaced,
            scratch: Vec::new(),
            extra: Vec::new(),
        })
    }

    pub(crate) fn copied(&self) -> u64 {
        self.order.len() as u64
    }

    pub(crate) fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Pass 2: each kept entry's local header and compressed data, byte for byte; for an
    /// entry with a data descriptor, a new descriptor from the central directory's values
    /// (the original's length is ambiguous without the next entry's offset, the values
    /// are not: `zipcheck` checked they agree).
    pub(crate) fn copy_entries(&mut self, out: &mut Output<'_>) -> Result<(), AssembleError> {
        let mut data = Window::new(self.src, 0, self.dir.offset, DATA_CHUNK);
        for &(offset, index) in &self.order {
            let Some(entry) = self.entries.get_mut(index) else {
                continue;
            };
            entry.new_offset = out.position();
            let (header_len, local_zip64) = {
                let fixed = data.get(offset, LOCAL_LEN)?;
                if le32(fixed, 0) != Some(LOCAL_SIG) {
                    return Err(invalid(format!("no local header at offset {offset}")));
                }
                let len = |at| le16(fixed, at).map_or(0, usize::from);
                let (name_len, extra_len) = (len(26), len(28));
                let header = data.get(offset, LOCAL_LEN + name_len + extra_len)?;
                let extra = header.get(LOCAL_LEN + name_len..).unwrap_or_default();
                (header.len(), format::zip64_extra(extra).is_some())
            };
            let span = (header_len as u64)
                .checked_add(entry.compressed)
                .ok_or_else(|| invalid(format!("the entry at offset {offset} is too large")))?;
            data.copy_to(offset, span, out)?;
            if entry.flags & HAS_DESCRIPTOR != 0 {
                // Readers take 8-byte sizes when the local header has a Zip64 block.
                let wide =
                    local_zip64 || entry.compressed >= SATURATED || entry.uncompressed >= SATURATED;
                self.scratch.clear();
                format::descriptor(
                    &mut self.scratch,
                    entry.crc,
                    entry.compressed,
                    entry.uncompressed,
                    wide,
                );
                out.put(&self.scratch)?;
            }
        }
        Ok(())
    }

    /// Pass 3: the kept entries' central headers as they were, but for the new offset and
    /// a Zip64 block rebuilt to fit it.
    pub(crate) fn write_central(&mut self, out: &mut Output<'_>) -> Result<(), AssembleError> {
        let mut walker = Walker::new(&self.dir);
        let mut index = 0;
        while let Some(record) = walker.next(&mut self.directory)? {
            let entry = self.entries.get(index).copied();
            index += 1;
            let Some(entry) = entry.filter(|e| e.new_offset != SKIPPED) else {
                continue;
            };
            if (
                record.local_offset,
                record.compressed,
                record.uncompressed,
                record.crc,
            ) != (
                entry.source_offset,
                entry.compressed,
                entry.uncompressed,
                entry.crc,
            ) {
                return Err(invalid(
                    "the uploaded zip changed while it was being copied",
                ));
            }
            self.extra.clear();
            format::extra_without_zip64(record.extra, &mut self.extra);
            self.scratch.clear();
            CentralHeader {
                made_by: record.made_by,
                needed: record.needed,
                flags: record.flags,
                method: record.method,
                time: record.time,
                date: record.date,
                crc: record.crc,
                compressed: record.compressed,
                uncompressed: record.uncompressed,
                offset: entry.new_offset,
                internal: record.internal,
                external: record.external,
                name: record.name,
                extra: &self.extra,
                comment: record.comment,
            }
            .encode(&mut self.scratch)
            .map_err(|_| AssembleError::Unrepresentable {
                path: String::from_utf8_lossy(record.name).into_owned(),
                reason: "its extra field leaves no room for the Zip64 record its new offset needs",
            })?;
            out.put(&self.scratch)?;
        }
        Ok(())
    }
}
