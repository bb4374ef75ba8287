//! Differential test: every archive the checks accept must be safe to unpack with a naive
//! unpacker, one that joins raw entry names to the root (taking `\` for a separator),
//! creates parent directories, follows whatever symlinks are already there, and creates
//! symlinks with their raw targets. Archives are generated from names and targets built to
//! trip path checks: `..`, backslashes, absolute paths, drive letters, links as parents.
//!
//! The `zip` crate reads each accepted archive, as a second opinion on what it holds. Before
//! each write the test resolves the destination the way the OS would and fails if it is
//! outside the root, so a wrong acceptance fails here without writing anywhere else.

mod common;

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use common::{DIR_MODE, FILE_MODE, LINK_MODE, ZipWriter, verify};
use packages_zipcheck::{Limits, normalized_path};

const ARCHIVES: usize = 3000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const COMPONENTS: &[&str] = &[
    "a", "a", "a", "b", "b", "b", "c", "c", "l", "l", "l", "..", ".", "", "a\\b", "..\\a", "C:",
    "x:y", "...",
];
const PREFIXES: &[&str] = &[
    "", "", "", "", "", "", "", "", "", "", "", "", "/", "\\", "C:\\", "c:", "./",
];
const TARGETS: &[&str] = &[
    "a",
    "b",
    "l",
    "../a",
    "../../a",
    "../l/..",
    "l/..",
    "/etc/passwd",
    "/tmp",
    "..",
    ".",
    "",
    "a/../..",
    "a/../b",
    "C:\\x",
    "..\\..\\x",
    "b/c",
    "l/x",
    "../b/c",
];

fn name(rng: &mut Rng) -> String {
    let mut name = rng.pick(PREFIXES).to_owned();
    let parts = 1 + rng.below(3);
    let components: Vec<&str> = (0..parts).map(|_| rng.pick(COMPONENTS)).collect();
    name.push_str(&components.join(if rng.below(4) == 0 { "\\" } else { "/" }));
    name
}

#[derive(Debug)]
enum Kind {
    File,
    Dir,
    Link(String),
}

fn archive(rng: &mut Rng) -> (Vec<u8>, Vec<(String, Kind)>) {
    let mut zip = ZipWriter::new();
    let mut entries = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let mut name = name(rng);
        let kind = match rng.below(10) {
            0..=4 => Kind::File,
            5 | 6 => {
                name.push('/');
                Kind::Dir
            }
            _ => {
                let target = if rng.below(3) == 0 {
                    self::name(rng)
                } else {
                    rng.pick(TARGETS).to_owned()
                };
                Kind::Link(target)
            }
        };
        // The zip crate keeps one entry per name, so names are not repeated.
        if name.is_empty() || entries.iter().any(|(seen, _)| *seen == name) {
            continue;
        }
        match &kind {
            Kind::File => zip.add(name.as_bytes(), name.as_bytes(), FILE_MODE),
            Kind::Dir => zip.add(name.as_bytes(), b"", DIR_MODE),
            Kind::Link(target) => zip.add(name.as_bytes(), target.as_bytes(), LINK_MODE),
        }
        entries.push((name, kind));
    }
    (zip.finish(), entries)
}

/// Where the OS would take `path` from `dir`, following symlinks that exist (dangling ones
/// by their targets). `Err` when it leaves `root` at any step.
fn resolve(root: &Path, dir: &Path, path: &str, hops: usize) -> Result<PathBuf, String> {
    if hops > 40 {
        // A loop: the OS gives up with ELOOP, which writes nothing anywhere.
        return Ok(dir.to_path_buf());
    }
    let mut current = if path.starts_with('/') {
        PathBuf::from("/")
    } else {
        dir.to_path_buf()
    };
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                current.pop();
            }
            Component::Normal(name) => {
                current.push(name);
                let is_link = std::fs::symlink_metadata(&current)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                if is_link {
                    let target = std::fs::read_link(&current).map_err(|e| e.to_string())?;
                    current.pop();
                    let target = target.to_string_lossy().into_owned();
                    current = resolve(root, &current, &target, hops + 1)?;
                }
            }
        }
        if !current.starts_with(root) {
            return Err(format!("'{path}' leads to {}", current.display()));
        }
    }
    Ok(current)
}

/// Unpacks naively, checking every destination before writing to it. Returns how many
/// entries could be written (later entries may clash with earlier ones, as in any unpacker).
fn unpack(zip: &[u8], root: &Path, entries: &[(String, Kind)]) -> usize {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip crate reads it");
    assert_eq!(archive.len(), entries.len());
    let mut written = 0;
    for (index, (name, kind)) in entries.iter().enumerate() {
        let mut file = archive.by_index(index).expect("entry");
        assert_eq!(file.name_raw(), name.as_bytes());
        assert_eq!(file.name().expect("UTF-8 name"), name.as_str());
        assert_eq!(file.is_symlink(), matches!(kind, Kind::Link(_)), "{name}");
        let mut data = Vec::new();
        file.read_to_end(&mut data).expect("data");

        let raw = name.replace('\\', "/");
        let normalized = normalized_path(name.as_bytes()).expect("accepted names normalise");
        // Every step of the way, including those through existing links, stays inside.
        let destination = resolve(root, root, &raw, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The entry lands where the check's normalisation says, unless an earlier symlink
        // of the same name redirects the write (inside the root: that link was checked).
        let expected = root.join(&normalized);
        let replaced_link = std::fs::symlink_metadata(&expected)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if !replaced_link {
            assert_eq!(destination, expected, "{name}");
        }

        let path = root.join(&raw);
        if let Some(parent) = path.parent()
            && std::fs::create_dir_all(parent).is_err()
        {
            continue;
        }
        let ok = match kind {
            Kind::Dir => std::fs::create_dir_all(&path).is_ok(),
            Kind::File => std::fs::write(&path, &data).is_ok(),
            Kind::Link(target) => {
                assert_eq!(data, target.as_bytes());
                std::os::unix::fs::symlink(target, &path).is_ok()
            }
        };
        written += usize::from(ok);
    }
    written
}

/// Every symlink under `dir` resolves inside `root`.
fn audit_links(root: &Path, dir: &Path) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for item in listing {
        let path = item.expect("listing").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.file_type().is_symlink() {
            if let Ok(real) = std::fs::canonicalize(&path) {
                assert!(
                    real.starts_with(root),
                    "{} -> {}",
                    path.display(),
                    real.display()
                );
            }
            let target = std::fs::read_link(&path).expect("link");
            let target = target.to_string_lossy().into_owned();
            let parent = path.parent().expect("parent");
            if let Err(e) = resolve(root, parent, &target, 0) {
                panic!("{}: {e}", path.display());
            }
        } else if meta.is_dir() {
            audit_links(root, &path);
        }
    }
}

#[test]
fn accepted_archives_unpack_inside_the_root() {
    let limits = Limits::new(1 << 20);
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let (mut accepted, mut rejected, mut written) = (0, 0, 0);
    for round in 0..ARCHIVES {
        let (zip, entries) = archive(&mut rng);
        if entries.is_empty() {
            continue;
        }
        if verify(&zip, &limits, 7).is_err() {
            rejected += 1;
            continue;
        }
        accepted += 1;
        let scratch = tempfile::tempdir().expect("temp dir");
        let outer = std::fs::canonicalize(scratch.path()).expect("temp dir");
        let root = outer.join("root");
        std::fs::create_dir(&root).expect("root");
        written += unpack(&zip, &root, &entries);
        audit_links(&root, &root);
        let beside: Vec<_> = std::fs::read_dir(&outer)
            .expect("listing")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(beside, ["root"], "round {round}: {entries:?}");
    }
    println!("{accepted} archives accepted ({written} entries unpacked), {rejected} rejected");
    assert!(accepted > 300 && rejected > 300, "{accepted} / {rejected}");
}
