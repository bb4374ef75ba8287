//! The pushed directory as the cf CLI sees it: its entries (directories, regular files
//! with their SHA-1, symbolic links), minus what `.cfignore` leaves home, and the zip of
//! those the service does not hold already. Both read files in a fixed-size buffer.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use sha1::{Digest, Sha1};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::{CfIgnore, ClientError};

const BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64, sha1: String },
    Symlink { target: String },
}

/// One entry of the pushed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the pushed directory, `/`-separated.
    pub path: String,
    /// Permission bits as zipped (and as fingerprints send them).
    pub mode: u32,
    pub modified: Option<SystemTime>,
    pub kind: Kind,
}

/// The entries of `root` in a stable order (names sorted within each directory), with
/// each regular file hashed. Special files (sockets, pipes) are left out, as they
/// cannot be zipped; symbolic links are kept as links, never followed.
pub fn scan(root: &Path) -> Result<Vec<Entry>, ClientError> {
    let meta = std::fs::metadata(root).map_err(|e| ClientError::io(display(root), e))?;
    if !meta.is_dir() {
        return Err(ClientError::NotDirectory {
            path: root.to_path_buf(),
        });
    }
    let rules = CfIgnore::load(root)?;
    let mut entries = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| match e.path().strip_prefix(root) {
            Ok(rel) => !rules.ignores(rel, e.file_type().is_dir()),
            Err(_) => true,
        });
    for item in walk {
        let item = item.map_err(|e| {
            let path = e
                .path()
                .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
            ClientError::io(display(&path), e.into())
        })?;
        let rel = item
            .path()
            .strip_prefix(root)
            .map_err(|_| ClientError::NotUtf8 {
                path: item.path().to_path_buf(),
            })?;
        let path = relative_name(rel)?;
        let meta = item
            .metadata()
            .map_err(|e| ClientError::io(display(item.path()), e.into()))?;
        let modified = meta.modified().ok();
        let kind = meta.file_type();
        let entry = if kind.is_dir() {
            Entry {
                path,
                mode: 0o755,
                modified,
                kind: Kind::Dir,
            }
        } else if kind.is_symlink() {
            let target = std::fs::read_link(item.path())
                .map_err(|e| ClientError::io(display(item.path()), e))?;
            let target = target.to_str().ok_or_else(|| ClientError::NotUtf8 {
                path: item.path().to_path_buf(),
            })?;
            Entry {
                path,
                mode: 0o777,
                modified,
                kind: Kind::Symlink {
                    target: target.to_owned(),
                },
            }
        } else if kind.is_file() {
            let (size, sha1) = hash_file(item.path())?;
            Entry {
                path,
                // The service takes pooled files only with owner read and write (0600),
                // as Cloud Controller does; an app's own files need them anyway.
                mode: meta.permissions().mode() & 0o777 | 0o600,
                modified,
                kind: Kind::File { size, sha1 },
            }
        } else {
            continue;
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// The zip of `entries` but the files whose paths are in `skip` (the pool holds them),
/// written to `out`; returns how many entries it holds. Each file is hashed again as it
/// is zipped: one that changed since [`scan`] would no longer match its fingerprint.
pub fn write_zip<W: Write + Seek>(
    root: &Path,
    entries: &[Entry],
    skip: &HashSet<String>,
    out: W,
) -> Result<usize, ClientError> {
    let mut zip = ZipWriter::new(out);
    let mut written = 0;
    let mut buffer = vec![0; BUFFER];
    for entry in entries {
        let mut options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(entry.mode);
        if let Some(time) = entry.modified.and_then(zip_time) {
            options = options.last_modified_time(time);
        }
        match &entry.kind {
            Kind::Dir => zip.add_directory(entry.path.as_str(), options)?,
            Kind::Symlink { target } => zip.add_symlink(&entry.path, target, options)?,
            Kind::File { size, sha1 } => {
                if skip.contains(&entry.path) {
                    continue;
                }
                let full = root.join(&entry.path);
                let mut file = File::open(&full).map_err(|e| ClientError::io(display(&full), e))?;
                zip.start_file(
                    &entry.path,
                    options.large_file(*size >= u64::from(u32::MAX)),
                )?;
                let mut hasher = Sha1::new();
                let mut copied = 0u64;
                loop {
                    let n = file
                        .read(&mut buffer)
                        .map_err(|e| ClientError::io(display(&full), e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                    zip.write_all(&buffer[..n])
                        .map_err(|e| ClientError::io("cannot write the zip", e))?;
                    copied += n as u64;
                }
                if copied != *size || hex::encode(hasher.finalize()) != *sha1 {
                    return Err(ClientError::FileChanged { path: full });
                }
            }
        }
        written += 1;
    }
    zip.finish()?
        .flush()
        .map_err(|e| ClientError::io("cannot write the zip", e))?;
    Ok(written)
}

/// Size and SHA-1 (lowercase hex) of a file, read once.
fn hash_file(path: &Path) -> Result<(u64, String), ClientError> {
    let mut file = File::open(path).map_err(|e| ClientError::io(display(path), e))?;
    let mut hasher = Sha1::new();
    let mut buffer = vec![0; BUFFER];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| ClientError::io(display(path), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn relative_name(rel: &Path) -> Result<String, ClientError> {
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts
        .map(|p| p.join("/"))
        .ok_or_else(|| ClientError::NotUtf8 {
            path: rel.to_path_buf(),
        })
}

/// Local time, as zip tools write and read it; none before 1980 (zip cannot say).
fn zip_time(time: SystemTime) -> Option<zip::DateTime> {
    let local = chrono::DateTime::<chrono::Local>::from(time).naive_local();
    zip::DateTime::try_from(local).ok()
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("lib/deep")).unwrap();
        std::fs::create_dir_all(p.join("logs")).unwrap();
        std::fs::create_dir_all(p.join(".git")).unwrap();
        std::fs::write(p.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(p.join("lib/deep/big.bin"), vec![7u8; 300_000]).unwrap();
        std::fs::write(p.join("logs/app.log"), "noise").unwrap();
        std::fs::write(p.join(".git/HEAD"), "ref").unwrap();
        std::fs::write(p.join("manifest.yml"), "applications: []").unwrap();
        std::fs::write(p.join(".cfignore"), "logs/\n").unwrap();
        std::os::unix::fs::symlink("index.html", p.join("home.html")).unwrap();
        dir
    }

    #[test]
    fn scan_lists_what_is_pushed_in_order_with_hashes() {
        let dir = tree();
        let entries = scan(dir.path()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "home.html",
                "index.html",
                "lib",
                "lib/deep",
                "lib/deep/big.bin"
            ]
        );
        assert_eq!(
            entries[1].kind,
            Kind::File {
                size: 11,
                sha1: hex::encode(Sha1::digest(b"<h1>hi</h1>")),
            }
        );
        assert_eq!(
            entries[0].kind,
            Kind::Symlink {
                target: "index.html".into()
            }
        );
        assert_eq!(entries[2].kind, Kind::Dir);
    }

    #[test]
    fn the_zip_leaves_out_the_skipped_files() {
        let dir = tree();
        let entries = scan(dir.path()).unwrap();
        let skip = HashSet::from(["lib/deep/big.bin".to_owned()]);
        let mut out = std::io::Cursor::new(Vec::new());
        let count = write_zip(dir.path(), &entries, &skip, &mut out).unwrap();
        assert_eq!(count, 4);
        let mut archive = zip::ZipArchive::new(out).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        assert_eq!(names, ["home.html", "index.html", "lib/", "lib/deep/"]);
        let mut index = archive.by_name("index.html").unwrap();
        let mut text = String::new();
        index.read_to_string(&mut text).unwrap();
        assert_eq!(text, "<h1>hi</h1>");
    }

    #[test]
    fn a_file_changed_after_the_scan_is_refused() {
        let dir = tree();
        let entries = scan(dir.path()).unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>bye</h1>").unwrap();
        let err = write_zip(
            dir.path(),
            &entries,
            &HashSet::new(),
            std::io::Cursor::new(Vec::new()),
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::FileChanged { .. }), "{err}");
    }

    #[test]
    fn a_file_is_not_a_directory_to_push() {
        let dir = tree();
        let err = scan(&dir.path().join("index.html")).unwrap_err();
        assert!(matches!(err, ClientError::NotDirectory { .. }), "{err}");
    }
}
