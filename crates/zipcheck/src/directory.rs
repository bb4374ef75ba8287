//! End-of-central-directory location and the central directory walk.

use crate::source::{Region, Source, not_a_zip};
use crate::{CheckError, ReadAt};

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const MAX_COMMENT: usize = 0xFFFF;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_EOCD_LEN: usize = 56;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
pub(crate) const LOCAL_SIG: u32 = 0x0403_4b50;
pub(crate) const LOCAL_LEN: usize = 30;
const ZIP64_EXTRA_ID: u16 = 0x0001;

/// Each candidate may cost a couple of reads (Zip64 records); a tail stuffed with fake
/// signatures must not turn into thousands of requests.
const MAX_EOCD_CANDIDATES: usize = 16;

/// Where the central directory lives, as the end records describe it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Directory {
    pub(crate) offset: u64,
    pub(crate) end: u64,
    pub(crate) entries: u64,
}

/// One central directory header, with Zip64 values already applied.
pub(crate) struct Entry<'a> {
    pub(crate) flags: u16,
    pub(crate) method: u16,
    pub(crate) crc: u32,
    pub(crate) compressed: u64,
    pub(crate) uncompressed: u64,
    pub(crate) local_offset: u64,
    pub(crate) external_attributes: u32,
    pub(crate) name: &'a [u8],
}

impl Entry<'_> {
    /// Unix file type bits in the high half of the external attributes. Any host is
    /// considered, not only Unix (3): some unpackers honour these bits for other hosts too,
    /// and treating an entry as a link only adds checks.
    pub(crate) fn is_symlink(&self) -> bool {
        const S_IFMT: u32 = 0o170_000;
        const S_IFLNK: u32 = 0o120_000;
        (self.external_attributes >> 16) & S_IFMT == S_IFLNK
    }
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Result<u16, CheckError> {
    at.checked_add(2)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| not_a_zip("a header is truncated"))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Result<u32, CheckError> {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| not_a_zip("a header is truncated"))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Result<u64, CheckError> {
    at.checked_add(8)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| not_a_zip("a header is truncated"))
}

/// Finds and validates the end records. Candidates are tried from the end of the file
/// backwards, those whose comment runs exactly to the end of the file first, so a comment
/// that happens to contain the signature does not mislead the search.
pub(crate) fn locate<R: ReadAt + ?Sized>(src: &mut Source<'_, R>) -> Result<Directory, CheckError> {
    let len = src.len();
    if len == 0 {
        return Err(not_a_zip("the file is empty"));
    }
    if len < EOCD_LEN as u64 {
        return Err(not_a_zip("the file is too short to be a zip archive"));
    }
    let tail_len = len.min((EOCD_LEN + MAX_COMMENT) as u64);
    let tail_start = len - tail_len;
    // Copied out because checking a candidate may read elsewhere and evict the cache.
    let tail = src
        .get(
            Region::Directory,
            tail_start,
            usize::try_from(tail_len).map_err(|_| not_a_zip("tail does not fit in memory"))?,
            len,
        )?
        .to_vec();

    let sig = EOCD_SIG.to_le_bytes();
    let mut exact = Vec::new();
    let mut fitting = Vec::new();
    for pos in (0..=tail.len().saturating_sub(EOCD_LEN)).rev() {
        if tail.get(pos..pos + 4) != Some(&sig[..]) {
            continue;
        }
        let comment = usize::from(u16_at(&tail, pos + 20)?);
        let record_end = pos + EOCD_LEN + comment;
        if record_end == tail.len() {
            exact.push(pos);
        } else if record_end < tail.len() {
            fitting.push(pos);
        }
    }
    if exact.is_empty() && fitting.is_empty() {
        return Err(not_a_zip("no end of central directory record"));
    }

    let mut first_problem = None;
    for pos in exact.into_iter().chain(fitting).take(MAX_EOCD_CANDIDATES) {
        let record = tail
            .get(pos..pos + EOCD_LEN)
            .ok_or_else(|| not_a_zip("end of central directory record is truncated"))?;
        match parse_end(src, record, tail_start + pos as u64) {
            Ok(dir) => return Ok(dir),
            Err(CheckError::Io(e)) => return Err(CheckError::Io(e)),
            Err(problem) => {
                first_problem.get_or_insert(problem);
            }
        }
    }
    Err(first_problem.unwrap_or_else(|| not_a_zip("no end of central directory record")))
}

/// Validates one end-of-central-directory candidate at absolute offset `at`, following the
/// Zip64 records when the classic fields are saturated.
fn parse_end<R: ReadAt + ?Sized>(
    src: &mut Source<'_, R>,
    record: &[u8],
    at: u64,
) -> Result<Directory, CheckError> {
    let disk = u16_at(record, 4)?;
    let cd_disk = u16_at(record, 6)?;
    let disk_entries = u16_at(record, 8)?;
    let entries = u16_at(record, 10)?;
    let size = u32_at(record, 12)?;
    let offset = u32_at(record, 16)?;

    let zip64 = disk == 0xFFFF
        || cd_disk == 0xFFFF
        || disk_entries == 0xFFFF
        || entries == 0xFFFF
        || size == 0xFFFF_FFFF
        || offset == 0xFFFF_FFFF;
    if !zip64 {
        if disk != 0 || cd_disk != 0 || disk_entries != entries {
            return Err(not_a_zip("multi-disk archives are not supported"));
        }
        return directory(u64::from(offset), u64::from(size), u64::from(entries), at);
    }

    let locator_at = at
        .checked_sub(ZIP64_LOCATOR_LEN)
        .ok_or_else(|| not_a_zip("Zip64 end of central directory locator is missing"))?;
    let locator = src.get(
        Region::Directory,
        locator_at,
        ZIP64_LOCATOR_LEN as usize,
        at,
    )?;
    if u32_at(locator, 0)? != ZIP64_LOCATOR_SIG {
        return Err(not_a_zip(
            "Zip64 end of central directory locator is missing",
        ));
    }
    let record_disk = u32_at(locator, 4)?;
    let record_at = u64_at(locator, 8)?;
    let disks = u32_at(locator, 16)?;
    if record_disk != 0 || disks > 1 {
        return Err(not_a_zip("multi-disk archives are not supported"));
    }
    if record_at
        .checked_add(ZIP64_EOCD_LEN as u64)
        .is_none_or(|end| end > locator_at)
    {
        return Err(not_a_zip(
            "Zip64 end of central directory record is out of place",
        ));
    }
    let record = src.get(Region::Directory, record_at, ZIP64_EOCD_LEN, locator_at)?;
    if u32_at(record, 0)? != ZIP64_EOCD_SIG {
        return Err(not_a_zip(
            "Zip64 end of central directory record is missing",
        ));
    }
    let disk = u32_at(record, 16)?;
    let cd_disk = u32_at(record, 20)?;
    let disk_entries = u64_at(record, 24)?;
    let entries = u64_at(record, 32)?;
    let size = u64_at(record, 40)?;
    let offset = u64_at(record, 48)?;
    if disk != 0 || cd_disk != 0 || disk_entries != entries {
        return Err(not_a_zip("multi-disk archives are not supported"));
    }
    directory(offset, size, entries, record_at)
}

fn directory(offset: u64, size: u64, entries: u64, limit: u64) -> Result<Directory, CheckError> {
    let end = offset
        .checked_add(size)
        .filter(|&end| end <= limit)
        .ok_or_else(|| not_a_zip("the central directory lies outside the archive"))?;
    // Every header takes at least 46 bytes: a huge claimed count fails here, before any walk.
    if entries > size / CENTRAL_LEN as u64 {
        return Err(not_a_zip(
            "the central directory is too small for its entry count",
        ));
    }
    Ok(Directory {
        offset,
        end,
        entries,
    })
}

/// Calls `visit` for every central directory header, in order. Stops at the first error.
pub(crate) fn walk<R, F>(
    src: &mut Source<'_, R>,
    dir: &Directory,
    mut visit: F,
) -> Result<(), CheckError>
where
    R: ReadAt + ?Sized,
    F: FnMut(&Entry<'_>) -> Result<(), CheckError>,
{
    let mut walker = Walker::new(dir);
    while let Some(entry) = walker.next(src)? {
        visit(&entry)?;
    }
    Ok(())
}

/// A walk over the central directory headers that lends each entry out of the read cache,
/// so the caller may read elsewhere (a symlink target) between two entries.
pub(crate) struct Walker {
    dir: Directory,
    pos: u64,
    seen: u64,
}

impl Walker {
    pub(crate) fn new(dir: &Directory) -> Self {
        Self {
            dir: *dir,
            pos: dir.offset,
            seen: 0,
        }
    }

    /// The next header, or `None` after the last one, once the directory is known to hold
    /// exactly the entries its end record claims.
    pub(crate) fn next<'s, R: ReadAt + ?Sized>(
        &mut self,
        src: &'s mut Source<'_, R>,
    ) -> Result<Option<Entry<'s>>, CheckError> {
        let dir = self.dir;
        let pos = self.pos;
        if self.seen == dir.entries {
            // Bytes left over would be headers that some unpackers see and this check did
            // not.
            if pos != dir.end {
                return Err(not_a_zip(
                    "the central directory holds more data than its end record claims",
                ));
            }
            return Ok(None);
        }
        if pos
            .checked_add(CENTRAL_LEN as u64)
            .is_none_or(|end| end > dir.end)
        {
            return Err(not_a_zip(
                "the central directory holds fewer entries than its end record claims",
            ));
        }
        let fixed = src.get(Region::Directory, pos, CENTRAL_LEN, dir.end)?;
        if u32_at(fixed, 0)? != CENTRAL_SIG {
            return Err(not_a_zip("a central directory header is missing"));
        }
        let name_len = usize::from(u16_at(fixed, 28)?);
        let extra_len = usize::from(u16_at(fixed, 30)?);
        let comment_len = usize::from(u16_at(fixed, 32)?);
        let total = CENTRAL_LEN + name_len + extra_len + comment_len;
        let next = pos
            .checked_add(total as u64)
            .filter(|&next| next <= dir.end)
            .ok_or_else(|| not_a_zip("a central directory header runs past the directory"))?;

        let header = src.get(Region::Directory, pos, total, dir.end)?;
        let name = header
            .get(CENTRAL_LEN..CENTRAL_LEN + name_len)
            .ok_or_else(|| not_a_zip("a central directory header is truncated"))?;
        let extra = header
            .get(CENTRAL_LEN + name_len..CENTRAL_LEN + name_len + extra_len)
            .ok_or_else(|| not_a_zip("a central directory header is truncated"))?;

        let mut uncompressed = u64::from(u32_at(header, 24)?);
        let mut compressed = u64::from(u32_at(header, 20)?);
        let mut local_offset = u64::from(u32_at(header, 42)?);
        if uncompressed == 0xFFFF_FFFF || compressed == 0xFFFF_FFFF || local_offset == 0xFFFF_FFFF {
            // The Zip64 field holds only the saturated values, in this fixed order.
            let mut values = zip64_extra(extra)
                .ok_or_else(|| not_a_zip("a Zip64 entry lacks its Zip64 extra field"))?
                .chunks_exact(8)
                .filter_map(|b| b.try_into().ok().map(u64::from_le_bytes));
            for field in [&mut uncompressed, &mut compressed, &mut local_offset] {
                if *field == 0xFFFF_FFFF {
                    *field = values
                        .next()
                        .ok_or_else(|| not_a_zip("a Zip64 extra field is too short"))?;
                }
            }
        }

        let entry = Entry {
            flags: u16_at(header, 8)?,
            method: u16_at(header, 10)?,
            crc: u32_at(header, 16)?,
            compressed,
            uncompressed,
            local_offset,
            external_attributes: u32_at(header, 38)?,
            name,
        };
        self.pos = next;
        self.seen += 1;
        Ok(Some(entry))
    }
}

/// The data of the Zip64 extended information field, if present. Malformed trailing extra
/// data is tolerated, as common unpackers do.
pub(crate) fn zip64_extra(mut extra: &[u8]) -> Option<&[u8]> {
    while let (Some(id), Some(size)) = (extra.get(0..2), extra.get(2..4)) {
        let id = u16::from_le_bytes(id.try_into().ok()?);
        let size = usize::from(u16::from_le_bytes(size.try_into().ok()?));
        let data = extra.get(4..4 + size)?;
        if id == ZIP64_EXTRA_ID {
            return Some(data);
        }
        extra = extra.get(4 + size..)?;
    }
    None
}

/// Offset of an entry's data, from its local header (whose name and extra lengths may
/// differ from the central directory's).
pub(crate) fn data_offset<R: ReadAt + ?Sized>(
    src: &mut Source<'_, R>,
    local_offset: u64,
) -> Result<u64, CheckError> {
    let len = src.len();
    let header = src.get(Region::Data, local_offset, LOCAL_LEN, len)?;
    if u32_at(header, 0)? != LOCAL_SIG {
        return Err(not_a_zip("a local file header is missing"));
    }
    let name_len = u64::from(u16_at(header, 26)?);
    let extra_len = u64::from(u16_at(header, 28)?);
    local_offset
        .checked_add(LOCAL_LEN as u64 + name_len + extra_len)
        .ok_or_else(|| not_a_zip("a local file header points outside the archive"))
}
