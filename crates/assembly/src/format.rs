//! The zip records this crate reads from the upload and writes into the package.
//!
//! Headers are encoded into a caller's scratch buffer and written in one piece; nothing
//! here keeps state.

pub(crate) const LOCAL_SIG: u32 = 0x0403_4b50;
pub(crate) const LOCAL_LEN: usize = 30;
pub(crate) const CENTRAL_SIG: u32 = 0x0201_4b50;
pub(crate) const CENTRAL_LEN: usize = 46;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
/// Size of the Zip64 end record after its signature and size fields.
const ZIP64_EOCD_BODY: u64 = 44;
const ZIP64_EXTRA_ID: u16 = 0x0001;

/// A 32-bit size or offset field holding this value means "see the Zip64 extra field",
/// so the value itself must go there too.
pub(crate) const SATURATED: u64 = 0xFFFF_FFFF;
const SATURATED_COUNT: u64 = 0xFFFF;

/// General purpose flag bit 3: CRC-32 and sizes follow the data in a data descriptor.
pub(crate) const HAS_DESCRIPTOR: u16 = 1 << 3;
/// General purpose flag bit 11: the name is UTF-8.
pub(crate) const UTF8_NAME: u16 = 1 << 11;
/// General purpose flag bit 0: the data is encrypted.
pub(crate) const ENCRYPTED: u16 = 1;
pub(crate) const STORED: u16 = 0;
pub(crate) const DEFLATED: u16 = 8;
/// Version needed to extract: 2.0 for deflate, 4.5 for Zip64 records.
pub(crate) const VERSION_DEFLATE: u16 = 20;
pub(crate) const VERSION_ZIP64: u16 = 45;
/// Version made by: Unix (3) in the high byte, so readers take the mode from the high half
/// of the external attributes; APPNOTE 4.5 in the low byte.
pub(crate) const MADE_BY_UNIX: u16 = 3 << 8 | VERSION_ZIP64;
/// 1980-01-01 00:00:00, the earliest DOS timestamp.
pub(crate) const DOS_EPOCH_DATE: u16 = (1 << 5) | 1;
pub(crate) const DOS_EPOCH_TIME: u16 = 0;

/// Unix file type bits, in the high half of the external attributes.
pub(crate) const S_IFMT: u32 = 0o170_000;
pub(crate) const S_IFREG: u32 = 0o100_000;
pub(crate) const S_IFDIR: u32 = 0o040_000;

pub(crate) fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    bytes
        .get(at..at.checked_add(2)?)?
        .try_into()
        .ok()
        .map(u16::from_le_bytes)
}

pub(crate) fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at.checked_add(4)?)?
        .try_into()
        .ok()
        .map(u32::from_le_bytes)
}

fn le64(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at.checked_add(8)?)?
        .try_into()
        .ok()
        .map(u64::from_le_bytes)
}

/// The data of the first Zip64 extra block, if any. Malformed trailing extra data is
/// tolerated, exactly as `zipcheck` reads it, so both see the same values.
pub(crate) fn zip64_extra(mut extra: &[u8]) -> Option<&[u8]> {
    while let (Some(id), Some(size)) = (le16(extra, 0), le16(extra, 2)) {
        let size = usize::from(size);
        let data = extra.get(4..4 + size)?;
        if id == ZIP64_EXTRA_ID {
            return Some(data);
        }
        extra = extra.get(4 + size..)?;
    }
    None
}

/// Appends `extra` without its Zip64 blocks, which describe the old offset and are rebuilt.
/// A malformed tail (a block running past the end) is kept as it is.
pub(crate) fn extra_without_zip64(mut extra: &[u8], out: &mut Vec<u8>) {
    while let (Some(id), Some(size)) = (le16(extra, 0), le16(extra, 2)) {
        let Some(block) = extra.get(..4 + usize::from(size)) else {
            break;
        };
        if id != ZIP64_EXTRA_ID {
            out.extend_from_slice(block);
        }
        extra = extra.get(block.len()..).unwrap_or_default();
    }
    out.extend_from_slice(extra);
}

/// Resolves the saturated 32-bit fields of a central header from its Zip64 block, in the
/// fixed order (uncompressed, compressed, offset). `None` when the block is missing or short.
pub(crate) fn resolve_zip64(extra: &[u8], fields: [&mut u64; 3]) -> Option<()> {
    if fields.iter().all(|f| **f != SATURATED) {
        return Some(());
    }
    let data = zip64_extra(extra)?;
    let mut at = 0;
    for field in fields {
        if *field == SATURATED {
            *field = le64(data, at)?;
            at += 8;
        }
    }
    Some(())
}

fn put16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// The value of a 32-bit field: itself, or the marker that sends readers to Zip64.
fn field32(v: u64) -> u32 {
    u32::try_from(v)
        .ok()
        .filter(|&v| u64::from(v) < SATURATED)
        .unwrap_or(u32::MAX)
}

fn field16(v: u64) -> u16 {
    u16::try_from(v)
        .ok()
        .filter(|&v| u64::from(v) < SATURATED_COUNT)
        .unwrap_or(u16::MAX)
}

/// Why a header cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TooLong {
    Name,
    Extra,
}

/// One central directory header as this crate writes it: the Zip64 block, when a value
/// needs it, comes first in the extra field, so readers that stop at a malformed block
/// after it still find it.
pub(crate) struct CentralHeader<'a> {
    pub(crate) made_by: u16,
    pub(crate) needed: u16,
    pub(crate) flags: u16,
    pub(crate) method: u16,
    pub(crate) time: u16,
    pub(crate) date: u16,
    pub(crate) crc: u32,
    pub(crate) compressed: u64,
    pub(crate) uncompressed: u64,
    pub(crate) offset: u64,
    pub(crate) internal: u16,
    pub(crate) external: u32,
    pub(crate) name: &'a [u8],
    /// Extra blocks other than Zip64.
    pub(crate) extra: &'a [u8],
    pub(crate) comment: &'a [u8],
}

impl CentralHeader<'_> {
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) -> Result<(), TooLong> {
        let mut values = [0u64; 3];
        let mut count = 0;
        for v in [self.uncompressed, self.compressed, self.offset] {
            if v >= SATURATED
                && let Some(slot) = values.get_mut(count)
            {
                *slot = v;
                count += 1;
            }
        }
        let wide = values.get(..count).unwrap_or_default();
        let zip64_len = if wide.is_empty() {
            0
        } else {
            4 + 8 * wide.len()
        };
        let name_len = u16::try_from(self.name.len()).map_err(|_| TooLong::Name)?;
        let extra_len = u16::try_from(zip64_len + self.extra.len()).map_err(|_| TooLong::Extra)?;
        let comment_len = u16::try_from(self.comment.len()).map_err(|_| TooLong::Extra)?;
        let needed = if wide.is_empty() {
            self.needed
        } else {
            self.needed.max(VERSION_ZIP64)
        };

        put32(buf, CENTRAL_SIG);
        put16(buf, self.made_by);
        put16(buf, needed);
        put16(buf, self.flags);
        put16(buf, self.method);
        put16(buf, self.time);
        put16(buf, self.date);
        put32(buf, self.crc);
        put32(buf, field32(self.compressed));
        put32(buf, field32(self.uncompressed));
        put16(buf, name_len);
        put16(buf, extra_len);
        put16(buf, comment_len);
        put16(buf, 0); // disk number start: single-disk archive
        put16(buf, self.internal);
        put32(buf, self.external);
        put32(buf, field32(self.offset));
        buf.extend_from_slice(self.name);
        if !wide.is_empty() {
            put16(buf, ZIP64_EXTRA_ID);
            // At most 3 values of 8 bytes.
            put16(buf, (8 * wide.len()) as u16);
            for &v in wide {
                put64(buf, v);
            }
        }
        buf.extend_from_slice(self.extra);
        buf.extend_from_slice(self.comment);
        Ok(())
    }
}

/// Local header of an entry whose CRC-32 and sizes follow in a data descriptor. With
/// `zip64`, the header carries a Zip64 block (zero sizes, as the descriptor has the real
/// ones), which tells readers that the descriptor's sizes are 8 bytes wide.
pub(crate) fn descriptor_local_header(
    buf: &mut Vec<u8>,
    name: &[u8],
    flags: u16,
    zip64: bool,
) -> Result<(), TooLong> {
    let name_len = u16::try_from(name.len()).map_err(|_| TooLong::Name)?;
    put32(buf, LOCAL_SIG);
    put16(
        buf,
        if zip64 {
            VERSION_ZIP64
        } else {
            VERSION_DEFLATE
        },
    );
    put16(buf, flags | HAS_DESCRIPTOR);
    put16(buf, DEFLATED);
    put16(buf, DOS_EPOCH_TIME);
    put16(buf, DOS_EPOCH_DATE);
    put32(buf, 0); // CRC-32: in the descriptor
    let size = if zip64 { u32::MAX } else { 0 };
    put32(buf, size);
    put32(buf, size);
    put16(buf, name_len);
    put16(buf, if zip64 { 20 } else { 0 });
    buf.extend_from_slice(name);
    if zip64 {
        put16(buf, ZIP64_EXTRA_ID);
        put16(buf, 16);
        put64(buf, 0);
        put64(buf, 0);
    }
    Ok(())
}

/// A data descriptor with its (optional, but unambiguous) signature; `wide` gives 8-byte
/// sizes, which readers expect when the local header has a Zip64 block.
pub(crate) fn descriptor(
    buf: &mut Vec<u8>,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    wide: bool,
) {
    put32(buf, DESCRIPTOR_SIG);
    put32(buf, crc);
    if wide {
        put64(buf, compressed);
        put64(buf, uncompressed);
    } else {
        // Callers pass `wide` whenever a size does not fit 32 bits.
        put32(buf, field32(compressed));
        put32(buf, field32(uncompressed));
    }
}

/// The end records for `entries` central headers in `[directory_start, directory_end)`,
/// written right after them: the Zip64 record and locator only when a count, size or
/// offset does not fit the classic record, whose fields then hold the saturated marker.
pub(crate) fn end_records(
    buf: &mut Vec<u8>,
    entries: u64,
    directory_start: u64,
    directory_end: u64,
) {
    let size = directory_end.saturating_sub(directory_start);
    let zip64 = entries >= SATURATED_COUNT || size >= SATURATED || directory_start >= SATURATED;
    if zip64 {
        let record_at = directory_end;
        put32(buf, ZIP64_EOCD_SIG);
        put64(buf, ZIP64_EOCD_BODY);
        put16(buf, MADE_BY_UNIX);
        put16(buf, VERSION_ZIP64);
        put32(buf, 0); // this disk
        put32(buf, 0); // disk where the central directory starts
        put64(buf, entries);
        put64(buf, entries);
        put64(buf, size);
        put64(buf, directory_start);
        put32(buf, ZIP64_LOCATOR_SIG);
        put32(buf, 0); // disk with the Zip64 end record
        put64(buf, record_at);
        put32(buf, 1); // total disks
    }
    put32(buf, EOCD_SIG);
    put16(buf, 0);
    put16(buf, 0);
    put16(buf, field16(entries));
    put16(buf, field16(entries));
    put32(buf, field32(size));
    put32(buf, field32(directory_start));
    put16(buf, 0); // comment length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip64_values_resolve_in_order_for_saturated_fields_only() {
        let mut extra = vec![0x99, 0x99, 0, 0]; // an empty unrelated block first
        extra.extend_from_slice(&[1, 0, 16, 0]);
        extra.extend_from_slice(&(5u64 << 32).to_le_bytes());
        extra.extend_from_slice(&(7u64 << 32).to_le_bytes());
        let (mut u, mut c, mut o) = (SATURATED, 10, SATURATED);
        resolve_zip64(&extra, [&mut u, &mut c, &mut o]).expect("resolves");
        assert_eq!((u, c, o), (5 << 32, 10, 7 << 32));

        let (mut u, mut c, mut o) = (SATURATED, SATURATED, SATURATED);
        assert!(resolve_zip64(&extra, [&mut u, &mut c, &mut o]).is_none());
        let mut saturated = SATURATED;
        assert!(resolve_zip64(&[], [&mut 1, &mut saturated, &mut 3]).is_none());
    }

    #[test]
    fn zip64_blocks_are_dropped_and_other_blocks_kept() {
        let mut extra = vec![0x55, 0x54, 1, 0, 9]; // UT block
        extra.extend_from_slice(&[1, 0, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        extra.extend_from_slice(&[0x78, 0x75, 9, 0, 1]); // truncated tail
        let mut out = Vec::new();
        extra_without_zip64(&extra, &mut out);
        assert_eq!(out, [0x55, 0x54, 1, 0, 9, 0x78, 0x75, 9, 0, 1]);
    }

    #[test]
    fn central_header_moves_large_values_to_a_leading_zip64_block() {
        let header = CentralHeader {
            made_by: MADE_BY_UNIX,
            needed: VERSION_DEFLATE,
            flags: 0,
            method: DEFLATED,
            time: 0,
            date: DOS_EPOCH_DATE,
            crc: 0xDEAD_BEEF,
            compressed: 100,
            uncompressed: 6 << 30,
            offset: SATURATED,
            internal: 0,
            external: 0,
            name: b"big",
            extra: &[0x55, 0x54, 0, 0],
            comment: b"",
        };
        let mut buf = Vec::new();
        header.encode(&mut buf).expect("fits");
        assert_eq!(le16(&buf, 6), Some(VERSION_ZIP64));
        assert_eq!(le32(&buf, 20), Some(100));
        assert_eq!(le32(&buf, 24), Some(u32::MAX));
        assert_eq!(le32(&buf, 42), Some(u32::MAX));
        let extra = buf.get(CENTRAL_LEN + 3..).expect("extra");
        assert_eq!(le16(extra, 0), Some(ZIP64_EXTRA_ID));
        let (mut u, mut c, mut o) = (SATURATED, 100, SATURATED);
        resolve_zip64(extra, [&mut u, &mut c, &mut o]).expect("resolves");
        assert_eq!((u, c, o), (6 << 30, 100, SATURATED));
        assert_eq!(extra.get(20..), Some(&[0x55, 0x54, 0, 0][..]));
    }

    #[test]
    fn classic_end_record_suffices_below_the_limits() {
        let mut buf = Vec::new();
        end_records(&mut buf, 0xFFFE, 100, 200);
        assert_eq!(buf.len(), 22);
        assert_eq!(le16(&buf, 10), Some(0xFFFE));

        let mut buf = Vec::new();
        end_records(&mut buf, 0xFFFF, 100, 200);
        assert_eq!(buf.len(), 56 + 20 + 22);
        assert_eq!(le16(&buf, 76 + 10), Some(0xFFFF));
        assert_eq!(le64(&buf, 32), Some(0xFFFF));
    }
}
