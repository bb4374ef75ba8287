//! Streaming pool files into the package as new entries, verifying them on the way.

use std::io::{self, Read};

use sha1::{Digest, Sha1};

use crate::format::{
    self, CentralHeader, DEFLATED, DOS_EPOCH_DATE, DOS_EPOCH_TIME, HAS_DESCRIPTOR, MADE_BY_UNIX,
    S_IFREG, SATURATED, TooLong, UTF8_NAME, VERSION_DEFLATE, VERSION_ZIP64,
};
use crate::output::{Deflater, Output};
use crate::plan::{Plan, unsafe_path};
use crate::{AssembleError, Pool, Resource};

/// Pool reads go through a buffer of this size.
const POOL_BUFFER: usize = 64 * 1024;

/// Entries this large get a Zip64 local header, so their data descriptor can hold sizes
/// past 4 GiB. Decided before the data is written, from the claimed size; the margin is
/// far more than deflate can add (stored blocks cost 5 bytes per 64 KiB), and at most
/// one byte more than claimed is ever read.
const ZIP64_FROM: u64 = SATURATED - SATURATED / 8;

/// A resource entry once written, for its central header.
pub(crate) struct Written {
    index: usize,
    offset: u64,
    flags: u16,
    zip64_local: bool,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
}

impl Written {
    pub(crate) fn write_central(
        &self,
        resources: &[Resource],
        scratch: &mut Vec<u8>,
        out: &mut Output<'_>,
    ) -> Result<(), AssembleError> {
        let Some(resource) = resources.get(self.index) else {
            return Ok(());
        };
        scratch.clear();
        CentralHeader {
            made_by: MADE_BY_UNIX,
            needed: if self.zip64_local {
                VERSION_ZIP64
            } else {
                VERSION_DEFLATE
            },
            flags: self.flags,
            method: DEFLATED,
            time: DOS_EPOCH_TIME,
            date: DOS_EPOCH_DATE,
            crc: self.crc,
            compressed: self.compressed,
            uncompressed: self.uncompressed,
            offset: self.offset,
            internal: 0,
            external: (S_IFREG | (resource.mode & 0o7777)) << 16,
            name: resource.path.as_bytes(),
            extra: &[],
            comment: &[],
        }
        .encode(scratch)
        .map_err(|_| unsafe_path(&resource.path))?;
        out.put(scratch)
    }
}

/// What a pool file turned out to be while it streamed past.
struct Seen {
    sha1: Sha1,
    crc: flate2::Crc,
    bytes: u64,
}

impl Seen {
    fn new() -> Self {
        Self {
            sha1: Sha1::new(),
            crc: flate2::Crc::new(),
            bytes: 0,
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        self.sha1.update(chunk);
        self.crc.update(chunk);
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
    }

    fn matches(self, resource: &Resource) -> bool {
        self.bytes == resource.size
            && format!("{:x}", self.sha1.finalize()).eq_ignore_ascii_case(&resource.sha1)
    }
}

/// Writes one entry per winning resource, in order. After the first mismatch nothing more
/// is written (the package is lost anyway), but the remaining pool files are still read and
/// hashed, so the error names every corrupt pool entry and one retry can succeed.
pub(crate) fn write_all(
    plan: &Plan<'_>,
    pool: &dyn Pool,
    out: &mut Output<'_>,
) -> Result<Vec<Written>, AssembleError> {
    let resources = plan.resources();
    let mut buf = vec![0; POOL_BUFFER];
    let mut deflater = Deflater::new();
    let mut scratch = Vec::new();
    let mut written = Vec::with_capacity(plan.order().len());
    let mut mismatched: Vec<String> = Vec::new();
    for &index in plan.order() {
        let Some(resource) = resources.get(index) else {
            continue;
        };
        let reader = pool
            .open(&resource.sha1)
            .map_err(|e| pool_error(resource, e))?;
        // One byte past the claimed size is enough to know the file is not what was
        // claimed; a longer one costs no more.
        let mut reader = reader.take(resource.size.saturating_add(1));
        let matches = if mismatched.is_empty() {
            let (entry, seen) = write_one(
                index,
                resource,
                &mut reader,
                &mut buf,
                &mut deflater,
                &mut scratch,
                out,
            )?;
            written.push(entry);
            seen.matches(resource)
        } else {
            let mut seen = Seen::new();
            while let n @ 1.. = read(&mut reader, &mut buf, resource)? {
                seen.update(buf.get(..n).unwrap_or_default());
            }
            seen.matches(resource)
        };
        if !matches
            && !mismatched
                .iter()
                .any(|sha1| sha1.eq_ignore_ascii_case(&resource.sha1))
        {
            mismatched.push(resource.sha1.clone());
        }
    }
    if mismatched.is_empty() {
        Ok(written)
    } else {
        Err(AssembleError::ChecksumMismatch { sha1s: mismatched })
    }
}

/// Local header, deflated data, data descriptor: the CRC-32 and sizes are known only once
/// the file has streamed past, and the package goes into a pipe, so they follow the data.
fn write_one(
    index: usize,
    resource: &Resource,
    reader: &mut dyn Read,
    buf: &mut [u8],
    deflater: &mut Deflater,
    scratch: &mut Vec<u8>,
    out: &mut Output<'_>,
) -> Result<(Written, Seen), AssembleError> {
    let name = resource.path.as_bytes();
    let flags = HAS_DESCRIPTOR
        | if resource.path.is_ascii() {
            0
        } else {
            UTF8_NAME
        };
    let zip64_local = resource.size >= ZIP64_FROM;
    let offset = out.position();
    scratch.clear();
    format::descriptor_local_header(scratch, name, flags, zip64_local)
        .map_err(|_: TooLong| unsafe_path(&resource.path))?;
    out.put(scratch)?;

    let data_start = out.position();
    let mut seen = Seen::new();
    deflater.reset();
    while let n @ 1.. = read(reader, buf, resource)? {
        let chunk = buf.get(..n).unwrap_or_default();
        seen.update(chunk);
        deflater.write(chunk, out)?;
    }
    deflater.finish(out)?;
    let compressed = out.position() - data_start;
    let crc = seen.crc.sum();
    let uncompressed = seen.bytes;
    if !zip64_local && (compressed >= SATURATED || uncompressed >= SATURATED) {
        return Err(AssembleError::Unrepresentable {
            path: resource.path.clone(),
            reason: "its data outgrew the size its local header was written for",
        });
    }
    scratch.clear();
    format::descriptor(scratch, crc, compressed, uncompressed, zip64_local);
    out.put(scratch)?;
    Ok((
        Written {
            index,
            offset,
            flags,
            zip64_local,
            crc,
            compressed,
            uncompressed,
        },
        seen,
    ))
}

fn read(
    reader: &mut dyn Read,
    buf: &mut [u8],
    resource: &Resource,
) -> Result<usize, AssembleError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(pool_error(resource, e)),
        }
    }
}

fn pool_error(resource: &Resource, source: io::Error) -> AssembleError {
    AssembleError::Pool {
        sha1: resource.sha1.clone(),
        source,
    }
}
