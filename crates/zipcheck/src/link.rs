//! Symlink entries: their targets are the only data this crate ever reads or inflates.

use std::io::Read;

use flate2::read::DeflateDecoder;

use crate::directory::{Entry, data_offset};
use crate::source::{Region, Source, not_a_zip};
use crate::{CheckError, ReadAt};

/// Longest accepted target, compressed or not. Linux refuses longer ones (PATH_MAX), so a
/// bigger "target" is a malformed archive rather than a link that could be created.
pub const MAX_SYMLINK_TARGET: u64 = 4096;

const STORED: u16 = 0;
const DEFLATED: u16 = 8;
const ENCRYPTED: u16 = 1;

/// Where one symlink entry's target is and how it is stored; the name is not kept, so a
/// link costs the same whatever its name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub(crate) local_offset: u64,
    compressed: u64,
    uncompressed: u64,
    method: u16,
}

impl Link {
    /// Rejects what cannot be checked cheaply before anything is read.
    pub(crate) fn from_entry(entry: &Entry<'_>) -> Result<Self, CheckError> {
        let name = String::from_utf8_lossy(entry.name);
        if entry.compressed > MAX_SYMLINK_TARGET || entry.uncompressed > MAX_SYMLINK_TARGET {
            return Err(not_a_zip(format!(
                "symlink '{name}' has a target longer than {MAX_SYMLINK_TARGET} bytes"
            )));
        }
        if entry.flags & ENCRYPTED != 0 {
            return Err(not_a_zip(format!(
                "symlink '{name}' is encrypted, so its target cannot be checked"
            )));
        }
        if entry.method != STORED && entry.method != DEFLATED {
            return Err(not_a_zip(format!(
                "symlink '{name}' uses unsupported compression method {}",
                entry.method
            )));
        }
        Ok(Self {
            local_offset: entry.local_offset,
            compressed: entry.compressed,
            uncompressed: entry.uncompressed,
            method: entry.method,
        })
    }

    /// Reads and, if needed, inflates the target; never produces more than
    /// [`MAX_SYMLINK_TARGET`] bytes. `name` is the entry's name, for messages.
    pub(crate) fn read_target<R: ReadAt + ?Sized>(
        &self,
        src: &mut Source<'_, R>,
        name: &[u8],
    ) -> Result<Vec<u8>, CheckError> {
        let start = data_offset(src, self.local_offset)?;
        // Both sizes were capped in `from_entry`, so these fit.
        let compressed = usize::try_from(self.compressed)
            .map_err(|_| not_a_zip("symlink target size out of range"))?;
        let len = src.len();
        let data = src.get(Region::Data, start, compressed, len)?;
        let target = match self.method {
            STORED => data.to_vec(),
            DEFLATED => {
                let mut out = Vec::new();
                DeflateDecoder::new(data)
                    .take(MAX_SYMLINK_TARGET + 1)
                    .read_to_end(&mut out)
                    .map_err(|_| invalid(name, "cannot be inflated"))?;
                out
            }
            other => {
                return Err(not_a_zip(format!(
                    "symlink '{}' uses unsupported compression method {other}",
                    String::from_utf8_lossy(name)
                )));
            }
        };
        if target.len() as u64 != self.uncompressed {
            return Err(invalid(name, "does not match its recorded size"));
        }
        Ok(target)
    }
}

fn invalid(name: &[u8], what: &str) -> CheckError {
    not_a_zip(format!(
        "the target of symlink '{}' {what}",
        String::from_utf8_lossy(name)
    ))
}
