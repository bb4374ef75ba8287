//! Builds a package zip from an uploaded zip and files of the resource pool (step 5 of
//! "Assembly" in the GA spec, 10.5), streaming, in one pass over the output; and reads the
//! files of a package zip that go into the resource pool (10.1), see
//! [Harvesting](#harvesting-the-resource-pool).
//!
//! [`assemble`] is synchronous: it runs on a blocking thread and writes into a pipe whose
//! other end uploads to the blobstore, so the output is written strictly in order, never
//! sought back into. The uploaded zip is read through [`ReadAt`] (a range request per read
//! on S3) in large sequential chunks. What it relies on was done before: the upload passed
//! `zipcheck::check`, the fingerprints' paths were normalised and their modes parsed, the
//! pool holds every SHA-1 with its size, and the total size is within the limit. The
//! result is meant to be validated again, as any upload, while it is stored.
//!
//! # The package's layout
//!
//! 1. The uploaded entries a resource does not replace, in the order they are stored in
//!    the upload: directory and symlink entries included, each local header and its
//!    compressed data copied byte for byte (nothing is inflated or recompressed, so names,
//!    timestamps, extra fields and methods are the client's). An entry with a data
//!    descriptor gets a new one built from the central directory's CRC-32 and sizes, with
//!    the optional signature so its length is unambiguous, and 8-byte sizes when its local
//!    header has a Zip64 block (as readers expect). Bytes outside the entries (a
//!    self-extractor's stub, the archive comment) are not copied.
//! 2. One entry per resource, in the order given (for a path named twice, the later
//!    resource, at its place): a regular file, "made by" Unix with mode
//!    `0o100000 | mode & 0o7777` in the external attributes, dated 1980-01-01 00:00 (the
//!    earliest DOS date) so that the same upload and resources always give the same bytes
//!    and therefore the same package hash, its name flagged UTF-8 when not ASCII. Its data
//!    is **deflated** (raw deflate, fastest level) and followed by a data descriptor: the
//!    CRC-32 is known only after the file has streamed, and the output cannot be sought
//!    back into. Deflate rather than stored because streaming unpackers (Java's
//!    `ZipInputStream`) refuse stored entries with a data descriptor, whose end they cannot
//!    find; the fastest level because pool files are large and mostly compressed already.
//!    Entries claimed close to 4 GiB or larger get a Zip64 local header, so the descriptor
//!    holds 8-byte sizes.
//! 3. The central directory: the kept uploaded entries' headers in their original order,
//!    as they were (version made by, flags, method, times, attributes, extra fields,
//!    comments) but for the new offset, disk number 0, and the Zip64 block, rebuilt and put
//!    first in the extra field whenever a size or offset does not fit 32 bits; then the
//!    resources' headers. The Zip64 end record and locator are written only when the entry
//!    count reaches 65,535 or the directory's size or offset reaches 4 GiB.
//!
//! # Paths
//!
//! An uploaded entry is replaced when its normalised path
//! ([`packages_zipcheck::normalized_path`]) is a resource's path. A resource path collides
//! with a directory of the package, and [`assemble`] fails with
//! [`AssembleError::UnsafePath`] before writing anything, when it is an uploaded directory
//! entry's path, a directory above another entry's path (an uploaded one or another
//! resource), or when an uploaded file or symlink that is kept lies where the resource
//! needs a directory (`p` uploaded, resource `p/x`: unpacking would fail, or follow the
//! link out of the package).
//!
//! # Integrity
//!
//! Each pool file's SHA-1 and length are computed as it streams; at most one byte more than
//! its claimed size is read. After the first file that does not match, nothing more is
//! written, but the remaining files are still read and hashed, so that
//! [`AssembleError::ChecksumMismatch`] names every corrupt pool entry at once.
//!
//! On any error the bytes written so far are not a valid zip and must be discarded.
//!
//! # Memory
//!
//! Fixed buffers, whatever the sizes: 4 MiB for entry data and 1 MiB for the central
//! directory of the upload, 64 KiB for pool reads, one deflate compressor (reset for each
//! resource) with 64 KiB of output space, and 256 KiB of output buffering. Besides those,
//! about 56 bytes per uploaded entry, 40 per resource, and a hash table over the resource
//! paths; nothing grows with an entry's size or an uploaded name's length.
//!
//! # Harvesting the resource pool
//!
//! Before a package becomes `READY` through an upload, the worker adds its files to the
//! pool from the final zip (which passed `zipcheck::check`, local headers included):
//!
//! 1. [`pool_candidates`] lists the regular files whose size is within the pool's window,
//!    from the central directory alone, in the order they are stored. Directories, links
//!    and other non-regular Unix types are skipped; so are encrypted entries and methods
//!    other than stored and deflate, which `zipcheck` accepts but which cannot be hashed
//!    here: the pool does without them rather than failing a valid package.
//! 2. [`StreamHasher`] computes their SHA-1s from the bytes of the worker's one read of
//!    the package, in chunks of any size, and hands out the bytes of files to be written
//!    on the way. [`hash_candidates`] is the same pass pulled through a [`ReadAt`],
//!    sharing reads between neighbouring candidates and skipping large gaps; it is the
//!    reference the stream is tested against, and serves a reader that can seek.
//! 3. For the SHA-1s the pool lacks, [`open_candidate`] streams one file on its own (into
//!    the blobstore, at `app_bits_cache/<sha1[0..2]>/<sha1[2..4]>/<sha1>`).
//!
//! The data is the one thing `zipcheck` did not read, so every file's length and CRC-32
//! are checked against the central directory as it streams: a disagreement is
//! [`HarvestError::Corrupt`], never a pool entry with the wrong bytes. Memory is flat: a
//! 4 MiB read buffer, one inflater and a 256 KiB buffer for the pass (a reader from
//! [`open_candidate`] has its own read buffer and inflater), and about 56 bytes per
//! candidate plus its name, kept to at most 96 bytes.

mod format;
mod harvest;
mod output;
mod plan;
mod resources;
mod source;
mod stream_hash;
mod upload;

use std::io::{self, Read, Write};

pub use harvest::{
    Candidate, CandidateReader, Compression, Corruption, HarvestError, hash_candidates,
    open_candidate, pool_candidates,
};
pub use packages_zipcheck::ReadAt;
pub use stream_hash::StreamHasher;

use output::Output;
use plan::Plan;
use upload::Upload;

/// A file of the resource pool to put into the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Normalised relative path, `/` separated: no `.`, `..` or empty components, no
    /// leading `/`.
    pub path: String,
    /// Permission bits (`0o644`); only the low 12 bits are used.
    pub mode: u32,
    /// SHA-1 of the file, lowercase hex: its key in the pool.
    pub sha1: String,
    /// Length of the file in bytes.
    pub size: u64,
}

/// The resource pool, by SHA-1.
pub trait Pool {
    /// The bytes stored under `sha1`, streamed. A missing entry is an error of kind
    /// [`io::ErrorKind::NotFound`]; it comes back as [`AssembleError::Pool`].
    fn open(&self, sha1: &str) -> io::Result<Box<dyn Read + '_>>;
}

/// What [`assemble`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assembled {
    /// Entries in the package.
    pub entries: u64,
    /// Uploaded entries copied.
    pub copied: u64,
    /// Uploaded entries left out because a resource names their path.
    pub replaced: u64,
    /// Entries made from pool files (resources naming the same path count once).
    pub resources: u64,
    /// Length of the package.
    pub bytes_written: u64,
}

/// Why a package could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// A resource's path is not usable (not normalised, empty, longer than a zip name can
    /// be) or collides with a directory of the package (see the crate documentation).
    /// `path` is the resource path at fault, which the caller renders as `The resource
    /// file path is invalid: File path '<path>' is not safe.`
    #[error("the resource path '{path}' is not safe")]
    UnsafePath { path: String },
    /// Pool files whose bytes do not have their resource's SHA-1 or size: each SHA-1 once,
    /// as given, in resource order. The caller deletes those pool entries.
    #[error("cached resources did not match their checksum: {}", sha1s.join(", "))]
    ChecksumMismatch { sha1s: Vec<String> },
    /// Opening or reading a pool file failed.
    #[error("reading resource {sha1} from the pool failed: {source}")]
    Pool { sha1: String, source: io::Error },
    /// Reading the uploaded zip failed (infrastructure; a retry may succeed).
    #[error("reading the uploaded zip failed: {0}")]
    Read(#[source] io::Error),
    /// Writing the package failed (infrastructure; a retry may succeed).
    #[error("writing the assembled zip failed: {0}")]
    Write(#[source] io::Error),
    /// The uploaded zip is not what `zipcheck::check` passed: it was not checked, or it
    /// changed while being read.
    #[error("the uploaded zip cannot be copied: {0}")]
    InvalidUpload(String),
    /// An entry's headers cannot hold what they must, e.g. an uploaded entry whose extra
    /// field leaves no room for the Zip64 record its new offset needs.
    #[error("entry '{path}' cannot be written: {reason}")]
    Unrepresentable { path: String, reason: &'static str },
}

impl AssembleError {
    /// Whether the failure lies with the infrastructure (reading the upload or the pool,
    /// writing the package), so that trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Pool { .. } | Self::Read(_) | Self::Write(_))
    }
}

/// Writes to `out` the package made of `uploaded`'s entries (if any) and `resources`'
/// bytes from `pool`: see the crate documentation for its layout and checks.
///
/// Path collisions are found before anything is written. On success `out` has been
/// flushed (closing it is the caller's); on error, what was written must be discarded.
pub fn assemble(
    uploaded: Option<&dyn ReadAt>,
    resources: &[Resource],
    pool: &dyn Pool,
    out: &mut dyn Write,
) -> Result<Assembled, AssembleError> {
    let plan = Plan::new(resources)?;
    let mut upload = uploaded.map(|src| Upload::scan(src, &plan)).transpose()?;

    let mut output = Output::new(out);
    if let Some(upload) = upload.as_mut() {
        upload.copy_entries(&mut output)?;
    }
    let written = resources::write_all(&plan, pool, &mut output)?;

    let directory_start = output.position();
    if let Some(upload) = upload.as_mut() {
        upload.write_central(&mut output)?;
    }
    let mut scratch = Vec::new();
    for entry in &written {
        entry.write_central(resources, &mut scratch, &mut output)?;
    }
    let copied = upload.as_ref().map_or(0, Upload::copied);
    let entries = copied + written.len() as u64;
    scratch.clear();
    format::end_records(&mut scratch, entries, directory_start, output.position());
    output.put(&scratch)?;
    let bytes_written = output.finish()?;

    Ok(Assembled {
        entries,
        copied,
        replaced: upload.as_ref().map_or(0, Upload::replaced),
        resources: written.len() as u64,
        bytes_written,
    })
}
