//! Validates an uploaded application zip without extracting it.
//!
//! Only the end records and the central directory are read, through [`ReadAt`], so the
//! archive can live in a local file or behind HTTP range requests. The check is bounded:
//! sizes are what the entries claim (nothing is inflated to find out), the walk stops as
//! soon as the claimed total passes the limit, and the only data ever read are symlink
//! targets of at most [`MAX_SYMLINK_TARGET`] bytes. Reads are buffered in large chunks, so
//! a directory of thousands of entries costs a handful of `read_at` calls.
//!
//! An archive passes when:
//! * its end records and central directory are consistent (Zip64 included; single disk);
//! * it has at least one entry;
//! * the claimed uncompressed sizes add up to at most [`Limits::max_uncompressed_bytes`];
//! * no entry path is absolute, drive-qualified, contains NUL, or climbs above the root
//!   (`/` and `\` both separate components);
//! * every symlink target resolves inside the root, lexically from the link's directory;
//! * no entry path goes through a symlink entry (`link/x`), which an unpacker would follow.

mod directory;
mod link;
mod paths;
mod source;

#[cfg(test)]
mod tests;

pub use link::MAX_SYMLINK_TARGET;
pub use source::ReadAt;

use directory::Directory;
use link::Link;
use paths::LinkTree;
use source::{Source, not_a_zip};

/// Bounds an archive must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted sum of the uncompressed sizes the entries claim.
    pub max_uncompressed_bytes: u64,
}

/// What a valid archive holds, according to its central directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Number of entries, directories included.
    pub entries: u64,
    /// Sum of the claimed uncompressed sizes.
    pub uncompressed_bytes: u64,
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
}

/// Checks the archive: see the crate documentation for what passes.
///
/// Problems are reported in walk order; the first one found wins.
pub fn check<R: ReadAt + ?Sized>(archive: &R, limits: &Limits) -> Result<Summary, CheckError> {
    let mut src = Source::new(archive)?;
    let dir = directory::locate(&mut src)?;
    if dir.entries == 0 {
        return Err(Problem::Empty.into());
    }

    let limit = u128::from(limits.max_uncompressed_bytes);
    let mut total: u128 = 0;
    let mut links = Vec::new();
    directory::walk(&mut src, &dir, |entry| {
        check_name(entry.name)?;
        total = total.saturating_add(u128::from(entry.uncompressed));
        if total > limit {
            return Err(Problem::TooLarge {
                claimed: total,
                limit: limits.max_uncompressed_bytes,
            }
            .into());
        }
        if entry.is_symlink() {
            links.push(Link::from_entry(entry)?);
        }
        Ok(())
    })?;

    if !links.is_empty() {
        check_links(&mut src, &dir, links)?;
    }

    Ok(Summary {
        entries: dir.entries,
        uncompressed_bytes: u64::try_from(total).unwrap_or(u64::MAX),
    })
}

fn check_name(name: &[u8]) -> Result<(), CheckError> {
    if name.is_empty() {
        return Err(not_a_zip("an entry has an empty name"));
    }
    if paths::normalize(name).is_none() {
        return Err(unsafe_path(name));
    }
    Ok(())
}

/// Second stage, only for archives with symlinks: validates every target, then walks the
/// central directory again for entries that go through a link (which may come before the
/// link in the directory, hence the second walk).
fn check_links<R: ReadAt + ?Sized>(
    src: &mut Source<'_, R>,
    dir: &Directory,
    mut links: Vec<Link>,
) -> Result<(), CheckError> {
    let mut tree = LinkTree::default();
    for link in &links {
        let path = paths::normalize(&link.name).ok_or_else(|| unsafe_path(&link.name))?;
        tree.insert(&path);
    }

    // In data order, so neighbouring targets come out of the same cached chunk.
    links.sort_by_key(|link| link.local_offset);
    for link in &links {
        let target = link.read_target(src)?;
        let path = paths::normalize(&link.name).ok_or_else(|| unsafe_path(&link.name))?;
        if tree.target_escapes(&path, &target) {
            return Err(Problem::UnsafeSymlink {
                name: String::from_utf8_lossy(&link.name).into_owned(),
                target: String::from_utf8_lossy(&target).into_owned(),
            }
            .into());
        }
    }

    directory::walk(src, dir, |entry| {
        if tree.passes_through_link(entry.name) {
            return Err(unsafe_path(entry.name));
        }
        Ok(())
    })
}

fn unsafe_path(name: &[u8]) -> CheckError {
    Problem::UnsafePath {
        name: String::from_utf8_lossy(name).into_owned(),
    }
    .into()
}
