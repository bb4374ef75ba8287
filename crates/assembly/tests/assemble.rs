//! Assembles packages from zips written by the `zip` crate and an in-memory pool, then reads
//! them back with the `zip` crate and verifies them with `zipcheck`, local headers included.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Cursor, Read, Write};

use packages_assembly::{AssembleError, Assembled, Pool, ReadAt, Resource, assemble};
use packages_zipcheck::{Limits, check};
use sha1::{Digest, Sha1};
use zip::write::{FullFileOptions, SimpleFileOptions};
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

#[derive(Default)]
struct MemoryPool {
    files: HashMap<String, Vec<u8>>,
    opened: RefCell<Vec<String>>,
}

impl MemoryPool {
    /// Adds `data` and returns the resource for it at `path`.
    fn add(&mut self, path: &str, mode: u32, data: &[u8]) -> Resource {
        let sha1 = sha1_hex(data);
        self.files.insert(sha1.clone(), data.to_vec());
        Resource {
            path: path.to_owned(),
            mode,
            sha1,
            size: data.len() as u64,
        }
    }
}

impl Pool for MemoryPool {
    fn open(&self, sha1: &str) -> io::Result<Box<dyn Read + '_>> {
        self.opened.borrow_mut().push(sha1.to_owned());
        match self.files.get(sha1) {
            Some(data) => Ok(Box::new(data.as_slice())),
            None => Err(io::Error::new(io::ErrorKind::NotFound, sha1.to_owned())),
        }
    }
}

fn sha1_hex(data: &[u8]) -> String {
    format!("{:x}", Sha1::digest(data))
}

fn date() -> DateTime {
    DateTime::from_date_and_time(2021, 6, 15, 12, 30, 10).expect("valid date")
}

fn options(method: CompressionMethod, mode: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(method)
        .unix_permissions(mode)
        .last_modified_time(date())
}

/// Stored and deflated files, a directory, a symlink, a comment and an extended timestamp:
/// written to a seekable buffer, so without data descriptors.
fn uploaded_zip() -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    add_entries(&mut zip);
    zip.finish().expect("finish").into_inner()
}

/// The same entries through a writer that cannot seek: every file and symlink gets a data
/// descriptor.
fn streamed_zip(large_file: bool) -> Vec<u8> {
    let mut zip = ZipWriter::new_stream(Vec::new());
    let stored = options(CompressionMethod::Stored, 0o644).large_file(large_file);
    let deflated = options(CompressionMethod::Deflated, 0o755).large_file(large_file);
    zip.add_directory("bin/", options(CompressionMethod::Stored, 0o755))
        .expect("dir");
    zip.start_file("bin/run.sh", deflated).expect("start");
    zip.write_all(b"#!/bin/sh\necho run\n").expect("write");
    zip.start_file("data.bin", stored).expect("start");
    zip.write_all(&[7u8; 3000]).expect("write");
    zip.start_file("replace/old.txt", deflated).expect("start");
    zip.write_all(b"old contents").expect("write");
    zip.add_symlink(
        "current",
        "bin/run.sh",
        options(CompressionMethod::Stored, 0o777),
    )
    .expect("symlink");
    zip.finish().expect("finish").into_inner()
}

fn add_entries<W: Write + io::Seek>(zip: &mut ZipWriter<W>) {
    zip.add_directory("src/", options(CompressionMethod::Stored, 0o755))
        .expect("dir");
    zip.start_file("src/main.rb", options(CompressionMethod::Deflated, 0o644))
        .expect("start");
    zip.write_all("puts 'hello'\n".repeat(200).as_bytes())
        .expect("write");
    zip.start_file("README", options(CompressionMethod::Stored, 0o600))
        .expect("start");
    zip.write_all(b"read me").expect("write");
    let commented: FullFileOptions = options(CompressionMethod::Deflated, 0o640)
        .with_extended_timestamp(Some(1_623_760_210), None, None)
        .expect("timestamp")
        .with_file_comment("kept comment");
    zip.start_file("config/app.yml", commented).expect("start");
    zip.write_all(b"name: app\n").expect("write");
    zip.start_file("lib/big.jar", options(CompressionMethod::Stored, 0o644))
        .expect("start");
    zip.write_all(b"the client's stale copy").expect("write");
    zip.add_symlink(
        "latest",
        "src/main.rb",
        options(CompressionMethod::Stored, 0o777),
    )
    .expect("symlink");
}

/// Runs the checks an upload passes: central directory, then the local headers streamed in
/// small pieces.
fn verify(zip: &[u8]) -> packages_zipcheck::Summary {
    let checked = check(zip, &Limits::new(u64::MAX)).expect("central directory passes");
    let mut local = checked.local_headers;
    for piece in zip.chunks(1000) {
        local.update(piece).expect("local headers pass");
    }
    local.finish().expect("local headers pass to the end");
    checked.summary
}

fn run(
    uploaded: Option<&Vec<u8>>,
    resources: &[Resource],
    pool: &dyn Pool,
) -> Result<(Assembled, Vec<u8>), AssembleError> {
    let mut out = Vec::new();
    let upload = uploaded.map(|zip| zip as &dyn ReadAt);
    let assembled = assemble(upload, resources, pool, &mut out)?;
    assert_eq!(assembled.bytes_written, out.len() as u64);
    Ok((assembled, out))
}

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    name: String,
    mode: Option<u32>,
    /// The high half of the external attributes, special bits included.
    raw_mode: u32,
    kind: &'static str,
    method: CompressionMethod,
    contents: Vec<u8>,
}

fn read_back(zip: &[u8]) -> Vec<Seen> {
    let mut archive = ZipArchive::new(Cursor::new(zip)).expect("zip crate reads it");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).expect("entry");
            let kind = if file.is_dir() {
                "dir"
            } else if file.is_symlink() {
                "symlink"
            } else {
                "file"
            };
            let mut contents = Vec::new();
            file.read_to_end(&mut contents).expect("contents");
            Seen {
                name: file.name().expect("name").into_owned(),
                mode: file.unix_mode(),
                raw_mode: file.external_attributes() >> 16,
                kind,
                method: file.compression(),
                contents,
            }
        })
        .collect()
}

fn find<'a>(seen: &'a [Seen], name: &str) -> &'a Seen {
    seen.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is missing"))
}

/// The raw central directory headers of a zip without Zip64 records, by name.
fn central_headers(zip: &[u8]) -> HashMap<Vec<u8>, Vec<u8>> {
    let eocd = zip.len() - 22;
    let le32 = |at: usize| u32::from_le_bytes(zip[at..at + 4].try_into().expect("4 bytes"));
    let le16 = |at: usize| u16::from_le_bytes(zip[at..at + 2].try_into().expect("2 bytes"));
    assert_eq!(le32(eocd), 0x0605_4b50, "no comment, no Zip64");
    let mut pos = le32(eocd + 16) as usize;
    let mut headers = HashMap::new();
    for _ in 0..le16(eocd + 10) {
        let len = 46 + le16(pos + 28) as usize + le16(pos + 30) as usize + le16(pos + 32) as usize;
        let name = zip[pos + 46..pos + 46 + le16(pos + 28) as usize].to_vec();
        headers.insert(name, zip[pos..pos + len].to_vec());
        pos += len;
    }
    headers
}

/// A central header's local header offset, and the header with that field zeroed.
fn split_offset(header: &[u8]) -> (u32, Vec<u8>) {
    let offset = u32::from_le_bytes(header[42..46].try_into().expect("4 bytes"));
    let mut rest = header.to_vec();
    rest[42..46].fill(0);
    (offset, rest)
}

/// The bytes of an entry from its local header to the end of its data.
fn entry_bytes(zip: &[u8], offset: u32, header: &[u8]) -> Vec<u8> {
    let at = offset as usize;
    let le16 = |at: usize| u16::from_le_bytes(zip[at..at + 2].try_into().expect("2 bytes"));
    let compressed = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes")) as usize;
    let len = 30 + le16(at + 26) as usize + le16(at + 28) as usize + compressed;
    zip[at..at + len].to_vec()
}

/// Whether the local header of `name` announces a data descriptor, and whether it has a
/// Zip64 block (which makes the descriptor's sizes 8 bytes wide).
fn local_header(zip: &[u8], name: &str) -> (bool, bool) {
    let mut archive = ZipArchive::new(Cursor::new(zip)).expect("zip");
    let at = archive.by_name(name).expect("entry").header_start() as usize;
    let le16 = |at: usize| u16::from_le_bytes(zip[at..at + 2].try_into().expect("2 bytes"));
    let name_len = le16(at + 26) as usize;
    let mut extra = &zip[at + 30 + name_len..at + 30 + name_len + le16(at + 28) as usize];
    let mut zip64 = false;
    while extra.len() >= 4 {
        let id = u16::from_le_bytes([extra[0], extra[1]]);
        let len = u16::from_le_bytes([extra[2], extra[3]]) as usize;
        zip64 |= id == 1;
        extra = &extra[(4 + len).min(extra.len())..];
    }
    (le16(at + 6) & 8 != 0, zip64)
}

#[test]
fn uploaded_entries_and_resources_make_one_valid_package() {
    let upload = uploaded_zip();
    verify(&upload);
    let mut pool = MemoryPool::default();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let resources = vec![
        pool.add("lib/big.jar", 0o644, &big),
        pool.add("lib/new/extra.txt", 0o600, b"from the pool"),
        pool.add("bin/tool", 0o755, &[0u8; 70_000]),
        pool.add("données/é.txt", 0o640, b"unicode"),
    ];

    let (assembled, zip) = run(Some(&upload), &resources, &pool).expect("assembles");
    assert_eq!(
        assembled,
        Assembled {
            entries: 6 - 1 + 4,
            copied: 5,
            replaced: 1,
            resources: 4,
            bytes_written: zip.len() as u64,
        }
    );
    assert_eq!(verify(&zip).entries, 9);

    let seen = read_back(&zip);
    let names: Vec<&str> = seen.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "src/",
            "src/main.rb",
            "README",
            "config/app.yml",
            "latest",
            "lib/big.jar",
            "lib/new/extra.txt",
            "bin/tool",
            "données/é.txt",
        ]
    );
    let dir = find(&seen, "src/");
    assert_eq!((dir.kind, dir.mode), ("dir", Some(0o40755)));
    let main = find(&seen, "src/main.rb");
    assert_eq!(main.contents, "puts 'hello'\n".repeat(200).as_bytes());
    assert_eq!(
        (main.method, main.mode),
        (CompressionMethod::Deflated, Some(0o100644))
    );
    let readme = find(&seen, "README");
    assert_eq!(
        (readme.method, readme.mode),
        (CompressionMethod::Stored, Some(0o100600))
    );
    assert_eq!(readme.contents, b"read me");
    let link = find(&seen, "latest");
    assert_eq!(
        (link.kind, link.contents.as_slice()),
        ("symlink", &b"src/main.rb"[..])
    );

    let jar = find(&seen, "lib/big.jar");
    assert_eq!(
        jar.contents, big,
        "the pool's bytes replace the uploaded entry"
    );
    assert_eq!((jar.kind, jar.mode), ("file", Some(0o100644)));
    assert_eq!(jar.method, CompressionMethod::Deflated);
    assert_eq!(local_header(&zip, "lib/big.jar"), (true, false));
    assert_eq!(find(&seen, "lib/new/extra.txt").mode, Some(0o100600));
    assert_eq!(find(&seen, "bin/tool").mode, Some(0o100755));
    assert_eq!(find(&seen, "bin/tool").contents, vec![0u8; 70_000]);
    assert_eq!(find(&seen, "données/é.txt").contents, b"unicode");
}

#[test]
fn copied_entries_keep_their_bytes_and_central_headers_but_for_the_offset() {
    let upload = uploaded_zip();
    let mut pool = MemoryPool::default();
    let resources = vec![pool.add("lib/big.jar", 0o644, b"new jar")];
    let (_, zip) = run(Some(&upload), &resources, &pool).expect("assembles");

    let before = central_headers(&upload);
    let after = central_headers(&zip);
    assert_eq!(
        after.len(),
        before.len(),
        "one entry replaced by one resource"
    );
    let mut compared = 0;
    for (name, old) in &before {
        if name == b"lib/big.jar" {
            continue;
        }
        let new = after.get(name).expect("kept");
        let (old_offset, old_rest) = split_offset(old);
        let (new_offset, new_rest) = split_offset(new);
        assert_eq!(old_rest, new_rest, "{}", String::from_utf8_lossy(name));
        assert_eq!(
            entry_bytes(&upload, old_offset, old),
            entry_bytes(&zip, new_offset, new),
            "local header and data of {}",
            String::from_utf8_lossy(name)
        );
        compared += 1;
    }
    assert_eq!(compared, 5);

    // Dates, comments and extra fields as the client wrote them.
    let mut archive = ZipArchive::new(Cursor::new(&zip[..])).expect("zip");
    let file = archive.by_name("config/app.yml").expect("entry");
    assert_eq!(file.comment(), "kept comment");
    assert_eq!(file.last_modified(), Some(date()));
    assert!(
        file.extra_data_fields().next().is_some(),
        "extended timestamp kept"
    );
    drop(file);
    let file = archive.by_name("lib/big.jar").expect("entry");
    assert_eq!(file.last_modified().map(|d| d.year()), Some(1980));
    assert_eq!(file.system(), zip::System::Unix);
}

/// The same archive with its central directory headers in reverse order.
fn reverse_central_directory(zip: &[u8]) -> Vec<u8> {
    let eocd = zip.len() - 22;
    let le16 = |at: usize| u16::from_le_bytes(zip[at..at + 2].try_into().expect("2 bytes"));
    let start = u32::from_le_bytes(zip[eocd + 16..eocd + 20].try_into().expect("4 bytes"));
    let mut pos = start as usize;
    let mut headers = Vec::new();
    while pos < eocd {
        let len = 46 + le16(pos + 28) as usize + le16(pos + 30) as usize + le16(pos + 32) as usize;
        headers.push(&zip[pos..pos + len]);
        pos += len;
    }
    let mut out = zip[..start as usize].to_vec();
    for header in headers.iter().rev() {
        out.extend_from_slice(header);
    }
    out.extend_from_slice(&zip[eocd..]);
    out
}

#[test]
fn entries_are_copied_in_stored_order_and_listed_in_directory_order() {
    let upload = reverse_central_directory(&uploaded_zip());
    verify(&upload);
    let mut pool = MemoryPool::default();
    let resources = vec![pool.add("README", 0o644, b"new readme")];
    let (_, zip) = run(Some(&upload), &resources, &pool).expect("assembles");
    verify(&zip);

    let seen = read_back(&zip);
    let names: Vec<&str> = seen.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "latest",
            "lib/big.jar",
            "config/app.yml",
            "src/main.rb",
            "src/",
            "README"
        ]
    );
    assert_eq!(find(&seen, "README").contents, b"new readme");
    let mut archive = ZipArchive::new(Cursor::new(&zip[..])).expect("zip");
    let starts: Vec<u64> = [
        "src/",
        "src/main.rb",
        "config/app.yml",
        "lib/big.jar",
        "latest",
    ]
    .iter()
    .map(|name| archive.by_name(name).expect("entry").header_start())
    .collect();
    assert!(
        starts.is_sorted(),
        "stored in the upload's order: {starts:?}"
    );
}

#[test]
fn entries_with_data_descriptors_are_copied_with_valid_descriptors() {
    for large_file in [false, true] {
        let upload = streamed_zip(large_file);
        verify(&upload);
        for name in ["bin/run.sh", "data.bin", "replace/old.txt"] {
            assert_eq!(
                local_header(&upload, name),
                (true, large_file),
                "{name} in the upload"
            );
        }
        assert_eq!(local_header(&upload, "current"), (true, false));

        let mut pool = MemoryPool::default();
        let resources = vec![pool.add("replace/old.txt", 0o644, b"new contents")];
        let (assembled, zip) = run(Some(&upload), &resources, &pool).expect("assembles");
        assert_eq!((assembled.copied, assembled.replaced), (4, 1));
        assert_eq!(verify(&zip).entries, 5);

        let seen = read_back(&zip);
        assert_eq!(find(&seen, "bin/run.sh").contents, b"#!/bin/sh\necho run\n");
        assert_eq!(find(&seen, "bin/run.sh").mode, Some(0o100755));
        assert_eq!(find(&seen, "data.bin").contents, vec![7u8; 3000]);
        assert_eq!(find(&seen, "data.bin").method, CompressionMethod::Stored);
        assert_eq!(find(&seen, "current").kind, "symlink");
        assert_eq!(find(&seen, "current").contents, b"bin/run.sh");
        assert_eq!(find(&seen, "replace/old.txt").contents, b"new contents");
        assert_eq!(find(&seen, "bin/").kind, "dir");
        for name in ["bin/run.sh", "data.bin"] {
            assert_eq!(
                local_header(&zip, name),
                (true, large_file),
                "{name} in the package"
            );
        }
        assert_eq!(local_header(&zip, "current"), (true, false));
    }
}

#[test]
fn a_package_from_resources_alone() {
    let mut pool = MemoryPool::default();
    let resources = vec![
        pool.add("a.txt", 0o644, b"a"),
        pool.add("empty", 0o600, b""),
        pool.add("deep/er/b.txt", 0o4755, b"bbb"),
    ];
    let (assembled, zip) = run(None, &resources, &pool).expect("assembles");
    assert_eq!(
        (assembled.entries, assembled.copied, assembled.resources),
        (3, 0, 3)
    );
    verify(&zip);
    let seen = read_back(&zip);
    assert_eq!(seen.len(), 3);
    assert_eq!(find(&seen, "empty").contents, b"");
    // Only permission bits (setuid included) come from the mode; the type is always a file.
    assert_eq!(find(&seen, "deep/er/b.txt").raw_mode, 0o104755);
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let upload = streamed_zip(false);
    let mut pool = MemoryPool::default();
    let resources = vec![pool.add("x/y.bin", 0o644, &[1u8; 10_000])];
    let (_, first) = run(Some(&upload), &resources, &pool).expect("assembles");
    let (_, second) = run(Some(&upload), &resources, &pool).expect("assembles");
    assert_eq!(first, second);
}

#[test]
fn the_later_of_two_resources_for_one_path_wins() {
    let mut pool = MemoryPool::default();
    let resources = vec![
        pool.add("same", 0o644, b"first"),
        pool.add("other", 0o644, b"other"),
        pool.add("same", 0o600, b"second"),
    ];
    let (assembled, zip) = run(None, &resources, &pool).expect("assembles");
    assert_eq!(assembled.resources, 2);
    let seen = read_back(&zip);
    assert_eq!(seen.len(), 2);
    assert_eq!(find(&seen, "same").contents, b"second");
    assert_eq!(find(&seen, "same").mode, Some(0o100600));
    assert_eq!(
        pool.opened.borrow().len(),
        2,
        "the losing resource is not read"
    );
}

fn unsafe_path(uploaded: Option<&Vec<u8>>, paths: &[&str]) -> (String, usize) {
    let mut pool = MemoryPool::default();
    let resources: Vec<Resource> = paths
        .iter()
        .map(|p| pool.add(p, 0o644, p.as_bytes()))
        .collect();
    let mut out = Vec::new();
    let upload = uploaded.map(|zip| zip as &dyn ReadAt);
    match assemble(upload, &resources, &pool, &mut out) {
        Err(AssembleError::UnsafePath { path }) => (path, out.len()),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("{paths:?} should collide"),
    }
}

#[test]
fn resources_colliding_with_directories_fail_before_anything_is_written() {
    let upload = uploaded_zip();
    // An uploaded directory entry.
    assert_eq!(
        unsafe_path(Some(&upload), &["x", "src"]),
        ("src".to_owned(), 0)
    );
    // A directory of an uploaded entry's path.
    assert_eq!(
        unsafe_path(Some(&upload), &["config"]),
        ("config".to_owned(), 0)
    );
    // A directory of another resource's path, whichever comes first.
    assert_eq!(unsafe_path(None, &["a/b", "a/b/c"]), ("a/b".to_owned(), 0));
    assert_eq!(unsafe_path(None, &["a/b/c", "a"]), ("a".to_owned(), 0));
    // A resource below an uploaded symlink or file would be unpacked through it.
    assert_eq!(
        unsafe_path(Some(&upload), &["latest/x"]),
        ("latest/x".to_owned(), 0)
    );
    assert_eq!(
        unsafe_path(Some(&upload), &["README/x"]),
        ("README/x".to_owned(), 0)
    );
    // Paths must come normalised.
    assert_eq!(
        unsafe_path(None, &["ok", "../evil"]),
        ("../evil".to_owned(), 0)
    );
    assert_eq!(unsafe_path(None, &["a/./b"]), ("a/./b".to_owned(), 0));
}

#[test]
fn a_resource_below_a_replaced_file_is_fine_only_if_that_file_is_gone() {
    let upload = uploaded_zip();
    // `README` replaced by a resource, and `README/x` another resource: README is both.
    assert_eq!(
        unsafe_path(Some(&upload), &["README", "README/x"]),
        ("README".to_owned(), 0)
    );
    // A resource in an uploaded directory is what matching is for.
    let mut pool = MemoryPool::default();
    let resources = vec![pool.add("src/lib/util.rb", 0o644, b"util")];
    let (_, zip) = run(Some(&upload), &resources, &pool).expect("assembles");
    verify(&zip);
}

#[test]
fn mismatching_pool_files_are_all_reported_and_writing_stops_at_the_first() {
    let mut pool = MemoryPool::default();
    let good = pool.add("good", 0o644, b"good");
    let corrupt = pool.add("corrupt", 0o644, b"what was stored");
    pool.files
        .insert(corrupt.sha1.clone(), b"what is there now".to_vec());
    let mut short = pool.add("short", 0o644, b"claimed");
    short.size += 1;
    let after = pool.add("written-after-mismatch", 0o644, b"fine");
    let again = Resource {
        path: "again".to_owned(),
        sha1: corrupt.sha1.to_uppercase(),
        ..corrupt.clone()
    };
    pool.files
        .insert(again.sha1.clone(), b"what is there now".to_vec());

    let resources = vec![good, corrupt.clone(), short.clone(), after, again];
    let mut out = Vec::new();
    let err = assemble(None, &resources, &pool, &mut out).expect_err("mismatch");
    let AssembleError::ChecksumMismatch { sha1s } = &err else {
        panic!("unexpected error: {err}");
    };
    // Each pool entry once, however its SHA-1 was spelled again.
    assert_eq!(sha1s, &[corrupt.sha1.clone(), short.sha1.clone()]);
    assert!(!err.is_transient());
    assert_eq!(pool.opened.borrow().len(), 5, "every pool file is verified");
    let name = b"written-after-mismatch";
    assert!(
        !out.windows(name.len()).any(|w| w == name),
        "nothing is written after the first mismatch"
    );
    assert!(
        out.windows(4).any(|w| w == b"good"),
        "what came before was written"
    );
}

#[test]
fn a_pool_file_longer_than_claimed_is_read_no_further_than_one_byte_past() {
    struct Endless;
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(1);
            Ok(buf.len())
        }
    }
    struct EndlessPool;
    impl Pool for EndlessPool {
        fn open(&self, _: &str) -> io::Result<Box<dyn Read + '_>> {
            Ok(Box::new(Endless))
        }
    }
    let resources = vec![Resource {
        path: "f".to_owned(),
        mode: 0o644,
        sha1: sha1_hex(&[1u8; 100]),
        size: 100,
    }];
    let err = run(None, &resources, &EndlessPool).expect_err("mismatch");
    assert!(matches!(err, AssembleError::ChecksumMismatch { sha1s } if sha1s.len() == 1));
}

#[test]
fn pool_read_and_write_failures_are_transient() {
    let mut pool = MemoryPool::default();
    let mut missing = pool.add("gone", 0o644, b"gone");
    missing.sha1 = "0".repeat(40);
    let err = run(None, &[missing], &pool).expect_err("missing");
    match &err {
        AssembleError::Pool { sha1, source } => {
            assert_eq!(sha1, &"0".repeat(40));
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(err.is_transient());

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "upload gone"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let resources = vec![pool.add("a", 0o644, &[3u8; 1_000_000])];
    let err = assemble(None, &resources, &pool, &mut Broken).expect_err("broken pipe");
    assert!(matches!(&err, AssembleError::Write(e) if e.kind() == io::ErrorKind::BrokenPipe));
    assert!(err.is_transient());
}

#[test]
fn an_upload_that_is_not_a_zip_is_reported_not_guessed_around() {
    let pool = MemoryPool::default();
    let not_zip = b"this is not a zip archive, not even close to one".to_vec();
    let err = run(Some(&not_zip), &[], &pool).expect_err("not a zip");
    assert!(matches!(err, AssembleError::InvalidUpload(_)), "{err}");
    assert!(!err.is_transient());
}

/// Counts reads and remembers their sizes.
struct Counting<'a> {
    inner: &'a [u8],
    reads: Cell<usize>,
    smallest: Cell<usize>,
}

impl ReadAt for Counting<'_> {
    fn len(&self) -> io::Result<u64> {
        Ok(self.inner.len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.reads.set(self.reads.get() + 1);
        self.smallest.set(self.smallest.get().min(buf.len()));
        self.inner.read_at(offset, buf)
    }
}

#[test]
fn the_upload_is_read_in_a_few_large_reads() {
    // Entries large enough to need several data reads, and a central directory of some size.
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for i in 0..4 {
        zip.start_file(
            format!("blob{i}"),
            options(CompressionMethod::Stored, 0o644),
        )
        .expect("start");
        zip.write_all(&noise).expect("write");
    }
    for i in 0..2000 {
        zip.start_file(
            format!("small/{i:04}.txt"),
            options(CompressionMethod::Stored, 0o644),
        )
        .expect("start");
        zip.write_all(b"x").expect("write");
    }
    let upload = zip.finish().expect("finish").into_inner();
    let counting = Counting {
        inner: &upload,
        reads: Cell::new(0),
        smallest: Cell::new(usize::MAX),
    };
    let pool = MemoryPool::default();
    let mut out = Vec::new();
    let assembled = assemble(Some(&counting), &[], &pool, &mut out).expect("assembles");
    assert_eq!(assembled.copied, 2004);
    verify(&out);
    // ~12 MiB of entries in 4 MiB reads, the directory read twice in one read each, and
    // the end records.
    assert!(counting.reads.get() <= 10, "{} reads", counting.reads.get());
    assert!(
        counting.smallest.get() >= 64 * 1024,
        "smallest read {}",
        counting.smallest.get()
    );
}

#[test]
fn zip64_end_records_when_there_are_more_than_65535_entries() {
    let upload = uploaded_zip();
    let mut pool = MemoryPool::default();
    let count = 65_600;
    let resources: Vec<Resource> = (0..count)
        .map(|i| {
            pool.add(
                &format!("many/{}/{i}", i % 100),
                0o644,
                format!("{i}").as_bytes(),
            )
        })
        .collect();
    let (assembled, zip) = run(Some(&upload), &resources, &pool).expect("assembles");
    assert_eq!(assembled.entries, 6 + count as u64);
    // The classic end record is saturated and points to the Zip64 one.
    let eocd = zip.len() - 22;
    assert_eq!(&zip[eocd + 8..eocd + 12], &[0xFF; 4]);
    assert_eq!(verify(&zip).entries, 6 + count as u64);

    let mut archive = ZipArchive::new(Cursor::new(&zip[..])).expect("zip crate reads it");
    assert_eq!(archive.len(), 6 + count);
    let mut last = archive.by_name("many/99/65599").expect("last resource");
    let mut contents = String::new();
    last.read_to_string(&mut contents).expect("contents");
    assert_eq!(contents, "65599");
    drop(last);
    let mut first = archive.by_name("src/main.rb").expect("uploaded entry");
    let mut contents = String::new();
    first.read_to_string(&mut contents).expect("contents");
    assert!(contents.starts_with("puts 'hello'"));
    drop(first);

    // The package, with its Zip64 end records and descriptors, as an upload in turn.
    let resources = vec![pool.add("many/0/0", 0o600, b"replaced")];
    let (again, zip) = run(Some(&zip), &resources, &pool).expect("assembles");
    assert_eq!((again.copied, again.replaced), (5 + count as u64, 1));
    assert_eq!(verify(&zip).entries, 6 + count as u64);
    let mut archive = ZipArchive::new(Cursor::new(&zip[..])).expect("zip crate reads it");
    let mut replaced = archive.by_name("many/0/0").expect("resource");
    let mut contents = String::new();
    replaced.read_to_string(&mut contents).expect("contents");
    assert_eq!(contents, "replaced");
}
