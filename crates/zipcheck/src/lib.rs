//! Validates an uploaded application zip without extracting it.
//!
//! [`check`] reads only the end records and the central directory, through [`ReadAt`], so
//! the archive can live in a local file or behind HTTP range requests. Sizes are what the
//! entries claim (nothing is inflated to find out), and the only data read are symlink
//! targets of at most [`MAX_SYMLINK_TARGET`] bytes, at most one read per symlink and far
//! fewer when the central directory lists entries in the order they are stored. Reads are
//! buffered in chunks of up to 1 MiB, so a directory of thousands of entries costs a
//! handful of `read_at` calls.
//!
//! An archive passes [`check`] when:
//! * its end records and central directory are consistent (Zip64 included; single disk);
//! * it has at least one entry, and at most [`Limits::max_entries`], of which at most
//!   [`Limits::max_symlinks`] are symlinks, and no name is longer than
//!   [`Limits::max_name_bytes`];
//! * the claimed uncompressed sizes add up to at most [`Limits::max_uncompressed_bytes`];
//! * no entry path is absolute, drive-qualified, contains NUL, or climbs above the root
//!   (`/` and `\` both separate components);
//! * every symlink target resolves inside the root, lexically from the link's directory;
//! * no entry path goes through a symlink entry (`link/x`), which an unpacker would follow;
//! * no two entries' local headers and data must overlap.
//!
//! The local headers, which unpackers that stream the archive trust instead of the central
//! directory, are checked by the [`LocalHeaders`] that [`check`] returns, fed with the
//! archive's bytes during the one sequential read that hashes it, rather than by random
//! reads here (each of which may be an HTTP request).
//!
//! # Bounds
//!
//! Archives come from users, so neither memory nor time may grow with anything an archive
//! can inflate at will:
//! * the entry count is capped before the walk starts, from the end record;
//! * the central directory is walked at most twice (the second walk only when there are
//!   symlinks), in time linear in its size;
//! * symlinks are remembered as one 64-bit keyed hash of their normalised path each (a few
//!   tens of bytes with the set's overhead), never by name, so long or deeply nested names
//!   cost nothing to keep; path checks hash each component once;
//! * [`LocalHeaders`] keeps 40 bytes per entry and one reused inflater; it inflates only
//!   deflated entries with a data descriptor (to find where their data ends), never past
//!   the size each claims, so that work is bounded by [`Limits::max_uncompressed_bytes`];
//! * besides those, memory is the two read caches (at most 1 MiB each, plus the 64 KiB
//!   tail searched for the end record) and one name's worth of scratch space.
//!
//! With the default limits that is at most about 10 MiB (250,000 entries of 40 bytes) plus
//! 2 MiB of caches, whatever the archive.

mod directory;
mod link;
mod local;
mod paths;
mod source;

#[cfg(test)]
mod tests;

pub use link::MAX_SYMLINK_TARGET;
pub use local::{LocalField, LocalHeaders};
pub use paths::normalized_path;
pub use source::ReadAt;

use directory::{Directory, Walker};
use link::Link;
use local::{Expectations, shown_name};
use paths::LinkSet;
use source::{Source, not_a_zip};

/// Default for [`Limits::max_entries`]: far more files than an application has, few enough
/// that the per-entry state stays around 10 MiB.
pub const DEFAULT_MAX_ENTRIES: u64 = 250_000;
/// Default for [`Limits::max_name_bytes`]: Linux's PATH_MAX.
pub const DEFAULT_MAX_NAME_BYTES: usize = 4096;
/// Default for [`Limits::max_symlinks`]: each symlink costs a target read.
pub const DEFAULT_MAX_SYMLINKS: u64 = 10_000;

/// Bounds an archive must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted sum of the uncompressed sizes the entries claim.
    pub max_uncompressed_bytes: u64,
    /// Most entries, directories included.
    pub max_entries: u64,
    /// Longest entry name, in bytes as stored.
    pub max_name_bytes: usize,
    /// Most symlink entries.
    pub max_symlinks: u64,
}

impl Limits {
    /// The given size limit, and the defaults for the rest.
    pub const fn new(max_uncompressed_bytes: u64) -> Self {
        Self {
            max_uncompressed_bytes,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_symlinks: DEFAULT_MAX_SYMLINKS,
        }
    }
}

/// What a valid archive holds, according to its central directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Number of entries, directories included.
    pub entries: u64,
    /// Sum of the claimed uncompressed sizes.
    pub uncompressed_bytes: u64,
    /// The largest claimed uncompressed size of one entry that is not a symbolic link:
    /// no file of the archive is larger (the resource pool skips archives of small files).
    pub largest_file_bytes: u64,
}

/// An archive that passed [`check`], and what is left to verify as its bytes stream past.
#[derive(Debug)]
pub struct Checked {
    /// What the central directory says the archive holds.
    pub summary: Summary,
    /// Feed it the whole archive, in order, then call [`LocalHeaders::finish`]: the archive
    /// is valid only if that passes too.
    pub local_headers: LocalHeaders,
}

/// Why a check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The archive itself is at fault; checking it again gives the same answer.
    #[error(transparent)]
    Invalid(#[from] Problem),
    /// The reader failed (infrastructure); the check may succeed if retried. A truncated
    /// archive is [`CheckError::Invalid`], not this.
    #[error("reading the archive failed: {0}")]
    Io(#[from] std::io::Error),
}

impl CheckError {
    /// The archive's fault, if that is what this is.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Invalid(problem) => Some(problem),
            Self::Io(_) => None,
        }
    }
}

/// What is wrong with an archive, in terms a user can act on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    /// Not a zip archive, or a damaged or inconsistent one; the text says what was wrong.
    #[error("the file is not a valid zip archive: {0}")]
    NotAZip(String),
    /// A well-formed archive with no entries.
    #[error("the zip archive contains no files")]
    Empty,
    /// The entries claim more uncompressed bytes than allowed. `claimed` is the running
    /// total when the walk stopped, so the archive claims at least that much.
    #[error(
        "the zip archive's entries claim at least {claimed} bytes uncompressed, \
         more than the limit of {limit} bytes"
    )]
    TooLarge { claimed: u128, limit: u64 },
    /// An entry's path is absolute, has a drive letter or NUL, climbs above the root, or
    /// goes through a symlink entry.
    #[error("entry '{name}' escapes the package root")]
    UnsafePath { name: String },
    /// A symlink entry's target resolves outside the package root.
    #[error("symlink '{name}' points to '{target}', outside the package root")]
    UnsafeSymlink { name: String, target: String },
    /// More entries than [`Limits::max_entries`].
    #[error("the zip archive has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    /// An entry name longer than [`Limits::max_name_bytes`]; `name` is its start.
    #[error("entry '{name}' has a name longer than {limit} bytes")]
    NameTooLong { name: String, limit: usize },
    /// More symlink entries than [`Limits::max_symlinks`].
    #[error("the zip archive has more than {limit} symlinks")]
    TooManySymlinks { limit: u64 },
    /// A local header (or data descriptor) says something else than the central directory;
    /// `name` is the name in the local header, shortened, as unpackers that stream the
    /// archive would see it.
    #[error(
        "entry '{name}' at offset {offset} does not match its central directory record ({what})"
    )]
    LocalHeaderMismatch {
        name: String,
        offset: u64,
        what: LocalField,
    },
    /// The central directory points to an offset with no local header.
    #[error("the central directory lists an entry at offset {offset}, where there is none")]
    MissingLocalHeader { offset: u64 },
    /// An entry's header and data run into the next entry or the central directory, as in
    /// zip bombs that let many entries share one piece of data.
    #[error("the entry at offset {offset} overlaps the next entry or the central directory")]
    OverlappingEntries { offset: u64 },
    /// Bytes where a streaming unpacker expects the next entry, or a local header before
    /// the first entry, that the central directory does not account for.
    #[error("the zip archive has data at offset {offset} that is not part of any entry it lists")]
    UnlistedData { offset: u64 },
}

/// Checks the archive: see the crate documentation for what passes.
///
/// Problems are reported in walk order; the first one found wins. The archive is valid only
/// if the returned [`Checked::local_headers`] also passes.
pub fn check<R: ReadAt + ?Sized>(archive: &R, limits: &Limits) -> Result<Checked, CheckError> {
    let mut src = Source::new(archive)?;
    let dir = directory::locate(&mut src)?;
    if dir.entries == 0 {
        return Err(Problem::Empty.into());
    }
    let too_many_entries = Problem::TooManyEntries {
        limit: limits.max_entries,
    };
    if dir.entries > limits.max_entries {
        return Err(too_many_entries.into());
    }

    let limit = u128::from(limits.max_uncompressed_bytes);
    let mut total: u128 = 0;
    let mut entries: u64 = 0;
    let mut symlinks: u64 = 0;
    let mut largest_file: u64 = 0;
    let mut links = LinkSet::default();
    let mut expected = Expectations::with_capacity(dir.entries);
    directory::walk(&mut src, &dir, |entry| {
        entries += 1;
        if entries > limits.max_entries {
            return Err(too_many_entries.clone().into());
        }
        if entry.name.len() > limits.max_name_bytes {
            return Err(Problem::NameTooLong {
                name: shown_name(entry.name),
                limit: limits.max_name_bytes,
            }
            .into());
        }
        check_name(entry.name)?;
        total = total.saturating_add(u128::from(entry.uncompressed));
        if total > limit {
            return Err(Problem::TooLarge {
                claimed: total,
                limit: limits.max_uncompressed_bytes,
            }
            .into());
        }
        if !entry.is_symlink() {
            largest_file = largest_file.max(entry.uncompressed);
        }
        if entry.is_symlink() {
            symlinks += 1;
            if symlinks > limits.max_symlinks {
                return Err(Problem::TooManySymlinks {
                    limit: limits.max_symlinks,
                }
                .into());
            }
            Link::from_entry(entry)?;
            if !links.insert(entry.name) {
                return Err(unsafe_path(entry.name));
            }
        }
        expected.push(entry);
        Ok(())
    })?;
    let local_headers = expected.finish(dir.offset)?;

    if symlinks > 0 {
        check_links(&mut src, &dir, &mut links)?;
    }

    Ok(Checked {
        summary: Summary {
            entries: dir.entries,
            uncompressed_bytes: u64::try_from(total).unwrap_or(u64::MAX),
            largest_file_bytes: largest_file,
        },
        local_headers,
    })
}

/// Where an archive's central directory lies, according to its end records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CentralDirectory {
    /// Offset of the first central directory header; entry data lies before it.
    pub offset: u64,
    /// Offset just past the last central directory header.
    pub end: u64,
    /// Number of headers the end records claim.
    pub entries: u64,
}

/// Finds the central directory exactly as [`check`] does (same end record search, same
/// Zip64 handling), so a caller that walks the directory itself, to copy the entries,
/// walks the one that was checked rather than another end record's.
pub fn central_directory<R: ReadAt + ?Sized>(archive: &R) -> Result<CentralDirectory, CheckError> {
    let mut src = Source::new(archive)?;
    let dir = directory::locate(&mut src)?;
    Ok(CentralDirectory {
        offset: dir.offset,
        end: dir.end,
        entries: dir.entries,
    })
}

fn check_name(name: &[u8]) -> Result<(), CheckError> {
    if name.is_empty() {
        return Err(not_a_zip("an entry has an empty name"));
    }
    if !paths::is_safe(name) {
        return Err(unsafe_path(name));
    }
    Ok(())
}

/// Second stage, only for archives with symlinks: walks the central directory again, now
/// that every link is known, for entries that go through a link (which may come before the
/// link in the directory) and for link targets that leave the root. Targets are read as
/// their links come up, so nothing about a link but its path's hash is kept.
fn check_links<R: ReadAt + ?Sized>(
    src: &mut Source<'_, R>,
    dir: &Directory,
    links: &mut LinkSet,
) -> Result<(), CheckError> {
    let mut walker = Walker::new(dir);
    let mut name = Vec::new();
    loop {
        let link = {
            let Some(entry) = walker.next(src)? else {
                return Ok(());
            };
            if links.passes_through_link(entry.name) {
                return Err(unsafe_path(entry.name));
            }
            if !entry.is_symlink() {
                continue;
            }
            name.clear();
            name.extend_from_slice(entry.name);
            Link::from_entry(&entry)?
        };
        let target = link.read_target(src, &name)?;
        if links.target_escapes(&name, &target) {
            return Err(Problem::UnsafeSymlink {
                name: String::from_utf8_lossy(&name).into_owned(),
                target: String::from_utf8_lossy(&target).into_owned(),
            }
            .into());
        }
    }
}

fn unsafe_path(name: &[u8]) -> CheckError {
    Problem::UnsafePath {
        name: String::from_utf8_lossy(name).into_owned(),
    }
    .into()
}
