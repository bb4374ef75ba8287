use std::cell::Cell;
use std::io::{self, Write};

use flate2::Compression;
use flate2::write::DeflateEncoder;

use super::*;

// ---------------------------------------------------------------------------------------
// A minimal zip writer, so each test states exactly the headers it needs.

const UNIX: u8 = 3;
const FILE_MODE: u32 = 0o100_644;
const DIR_MODE: u32 = 0o040_755;
const LINK_MODE: u32 = 0o120_777;

#[derive(Clone)]
struct TestEntry {
    name: Vec<u8>,
    data: Vec<u8>,
    /// Uncompressed size to record instead of the real one (zip bombs).
    claimed: Option<u64>,
    mode: u32,
    host: u8,
    deflate: bool,
    /// Compression method to record instead of the real one.
    method: Option<u16>,
    /// What the local header says, where it differs from the central directory.
    local: LocalOverrides,
    /// Bytes written after the entry's data (and data descriptor).
    trailing: Vec<u8>,
    /// Bytes appended to the stored (compressed) data and counted in its size.
    stored_suffix: Vec<u8>,
}

/// Local header fields that differ from the central directory's, for mismatch tests.
#[derive(Clone, Default)]
struct LocalOverrides {
    name: Option<Vec<u8>>,
    method: Option<u16>,
    crc: Option<u32>,
    compressed: Option<u64>,
    uncompressed: Option<u64>,
    /// Flag bit 3: zero CRC and sizes locally, then this data descriptor after the data.
    descriptor: Option<Descriptor>,
    /// Saturated local sizes with a Zip64 extra field holding both.
    zip64: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Descriptor {
    /// 12 bytes: CRC and 4-byte sizes.
    Plain,
    /// 16 bytes: signature, CRC and 4-byte sizes.
    Signed,
    /// 24 bytes: signature, CRC and 8-byte sizes.
    Zip64Signed,
    /// 20 bytes: CRC and 8-byte sizes.
    Zip64Plain,
}

impl TestEntry {
    fn new(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>, mode: u32) -> Self {
        Self {
            name: name.as_ref().to_vec(),
            data: data.as_ref().to_vec(),
            claimed: None,
            mode,
            host: UNIX,
            deflate: false,
            method: None,
            local: LocalOverrides::default(),
            trailing: Vec::new(),
            stored_suffix: Vec::new(),
        }
    }

    fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        Self::new(name, data, FILE_MODE)
    }

    fn with_local(mut self, edit: impl FnOnce(&mut LocalOverrides)) -> Self {
        edit(&mut self.local);
        self
    }
}

#[derive(Default, Clone)]
struct ZipBuilder {
    entries: Vec<TestEntry>,
    zip64: bool,
    comment: Vec<u8>,
    /// Bytes before the first entry, as in a self-extracting archive.
    prefix: Vec<u8>,
}

/// A built archive and where its parts are, for tests that damage it.
struct Built {
    bytes: Vec<u8>,
    cd_offset: usize,
    eocd_offset: usize,
    /// Where each entry's local header starts, and its central directory header.
    local_offsets: Vec<usize>,
    central_offsets: Vec<usize>,
}

impl ZipBuilder {
    fn new() -> Self {
        Self::default()
    }

    fn entry(mut self, entry: TestEntry) -> Self {
        self.entries.push(entry);
        self
    }

    fn file(self, name: impl AsRef<[u8]>, data: &[u8]) -> Self {
        self.entry(TestEntry::new(name, data, FILE_MODE))
    }

    fn dir(self, name: &str) -> Self {
        self.entry(TestEntry::new(name, b"", DIR_MODE))
    }

    fn claiming(self, name: &str, claimed: u64) -> Self {
        let mut entry = TestEntry::new(name, b"", FILE_MODE);
        entry.claimed = Some(claimed);
        self.entry(entry)
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(TestEntry::new(name, target, LINK_MODE))
    }

    fn deflated_symlink(self, name: &str, target: &str) -> Self {
        let mut entry = TestEntry::new(name, target, LINK_MODE);
        entry.deflate = true;
        self.entry(entry)
    }

    fn zip64(mut self) -> Self {
        self.zip64 = true;
        self
    }

    fn comment(mut self, comment: &[u8]) -> Self {
        self.comment = comment.to_vec();
        self
    }

    fn prefix(mut self, prefix: &[u8]) -> Self {
        self.prefix = prefix.to_vec();
        self
    }

    fn build(&self) -> Vec<u8> {
        self.build_parts().bytes
    }

    fn build_parts(&self) -> Built {
        let mut out = self.prefix.clone();
        let mut central = Vec::new();
        let mut local_offsets = Vec::new();
        let mut central_offsets = Vec::new();
        for entry in &self.entries {
            let offset = out.len() as u64;
            local_offsets.push(out.len());
            central_offsets.push(central.len());
            let stored = if entry.deflate {
                let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
                encoder.write_all(&entry.data).expect("deflate");
                encoder.finish().expect("deflate")
            } else {
                entry.data.clone()
            };
            let stored = [stored, entry.stored_suffix.clone()].concat();
            let method = entry.method.unwrap_or(if entry.deflate { 8 } else { 0 });
            let mut crc = flate2::Crc::new();
            crc.update(&entry.data);
            let uncompressed = entry.claimed.unwrap_or(entry.data.len() as u64);
            let compressed = stored.len() as u64;

            // Saturate whatever does not fit, or everything when Zip64 is forced.
            let wide = |v: u64| self.zip64 || v >= 0xFFFF_FFFF;
            let mut zip64_values = Vec::new();
            let mut field32 = |v: u64| {
                if wide(v) {
                    zip64_values.extend_from_slice(&v.to_le_bytes());
                    0xFFFF_FFFF
                } else {
                    v as u32
                }
            };
            let uncompressed32 = field32(uncompressed);
            let compressed32 = field32(compressed);
            let offset32 = field32(offset);
            let mut extra = Vec::new();
            if !zip64_values.is_empty() {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&(zip64_values.len() as u16).to_le_bytes());
                extra.extend_from_slice(&zip64_values);
            }
            let needed: u16 = if extra.is_empty() { 20 } else { 45 };

            let local = &entry.local;
            let local_name = local.name.as_ref().unwrap_or(&entry.name);
            let flags: u16 = if local.descriptor.is_some() { 8 } else { 0 };
            let (mut local_crc, mut local_compressed, mut local_uncompressed) =
                (crc.sum(), compressed, uncompressed);
            if local.descriptor.is_some() {
                (local_crc, local_compressed, local_uncompressed) = (0, 0, 0);
            }
            local_crc = local.crc.unwrap_or(local_crc);
            local_compressed = local.compressed.unwrap_or(local_compressed);
            local_uncompressed = local.uncompressed.unwrap_or(local_uncompressed);
            let mut local_extra = Vec::new();
            let (local_compressed32, local_uncompressed32) = if local.zip64 {
                local_extra.extend_from_slice(&1u16.to_le_bytes());
                local_extra.extend_from_slice(&16u16.to_le_bytes());
                local_extra.extend_from_slice(&local_uncompressed.to_le_bytes());
                local_extra.extend_from_slice(&local_compressed.to_le_bytes());
                (0xFFFF_FFFF, 0xFFFF_FFFF)
            } else {
                (
                    local_compressed.min(0xFFFF_FFFF) as u32,
                    local_uncompressed.min(0xFFFF_FFFF) as u32,
                )
            };

            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&needed.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&local.method.unwrap_or(method).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // time
            out.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
            out.extend_from_slice(&local_crc.to_le_bytes());
            out.extend_from_slice(&local_compressed32.to_le_bytes());
            out.extend_from_slice(&local_uncompressed32.to_le_bytes());
            out.extend_from_slice(&(local_name.len() as u16).to_le_bytes());
            out.extend_from_slice(&(local_extra.len() as u16).to_le_bytes());
            out.extend_from_slice(local_name);
            out.extend_from_slice(&local_extra);
            out.extend_from_slice(&stored);
            if let Some(descriptor) = local.descriptor {
                if matches!(descriptor, Descriptor::Signed | Descriptor::Zip64Signed) {
                    out.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
                }
                out.extend_from_slice(&crc.sum().to_le_bytes());
                if matches!(descriptor, Descriptor::Plain | Descriptor::Signed) {
                    out.extend_from_slice(&(compressed as u32).to_le_bytes());
                    out.extend_from_slice(&(uncompressed as u32).to_le_bytes());
                } else {
                    out.extend_from_slice(&compressed.to_le_bytes());
                    out.extend_from_slice(&uncompressed.to_le_bytes());
                }
            }
            out.extend_from_slice(&entry.trailing);

            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&(u16::from(entry.host) << 8 | 45).to_le_bytes());
            central.extend_from_slice(&needed.to_le_bytes());
            central.extend_from_slice(&flags.to_le_bytes());
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes()); // time
            central.extend_from_slice(&0x21u16.to_le_bytes()); // date
            central.extend_from_slice(&crc.sum().to_le_bytes());
            central.extend_from_slice(&compressed32.to_le_bytes());
            central.extend_from_slice(&uncompressed32.to_le_bytes());
            central.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes()); // comment length
            central.extend_from_slice(&0u16.to_le_bytes()); // disk
            central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            central.extend_from_slice(&(entry.mode << 16).to_le_bytes());
            central.extend_from_slice(&offset32.to_le_bytes());
            central.extend_from_slice(&entry.name);
            central.extend_from_slice(&extra);
        }

        let cd_offset = out.len();
        let count = self.entries.len() as u64;
        out.extend_from_slice(&central);
        if self.zip64 {
            let record_offset = out.len() as u64;
            out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&(u16::from(UNIX) << 8 | 45).to_le_bytes());
            out.extend_from_slice(&45u16.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&(central.len() as u64).to_le_bytes());
            out.extend_from_slice(&(cd_offset as u64).to_le_bytes());
            out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&record_offset.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        let eocd_offset = out.len();
        let (count16, size32, offset32) = if self.zip64 {
            (0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF)
        } else {
            (count as u16, central.len() as u32, cd_offset as u32)
        };
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&count16.to_le_bytes());
        out.extend_from_slice(&count16.to_le_bytes());
        out.extend_from_slice(&size32.to_le_bytes());
        out.extend_from_slice(&offset32.to_le_bytes());
        out.extend_from_slice(&(self.comment.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.comment);
        Built {
            bytes: out,
            cd_offset,
            eocd_offset,
            local_offsets,
            central_offsets: central_offsets.iter().map(|o| o + cd_offset).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Readers and helpers.

/// Counts `read_at` calls, the cost that matters when each is an HTTP request.
struct Counting {
    bytes: Vec<u8>,
    reads: Cell<usize>,
}

impl Counting {
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            reads: Cell::new(0),
        }
    }
}

impl ReadAt for Counting {
    fn len(&self) -> io::Result<u64> {
        ReadAt::len(&self.bytes)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.reads.set(self.reads.get() + 1);
        self.bytes.read_at(offset, buf)
    }
}

/// Hands out at most one byte per call, like a reader that returns short reads.
struct Trickle(Vec<u8>);

impl ReadAt for Trickle {
    fn len(&self) -> io::Result<u64> {
        ReadAt::len(&self.0)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let one = buf.get_mut(..1).unwrap_or_default();
        self.0.read_at(offset, one)
    }
}

struct Failing {
    len_fails: bool,
}

impl ReadAt for Failing {
    fn len(&self) -> io::Result<u64> {
        if self.len_fails {
            Err(io::Error::other("stat failed"))
        } else {
            Ok(1 << 20)
        }
    }

    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "range request timed out",
        ))
    }
}

/// Claims to be longer than the bytes it can deliver, like an object replaced mid-check.
struct Shrunk(Vec<u8>);

impl ReadAt for Shrunk {
    fn len(&self) -> io::Result<u64> {
        Ok(ReadAt::len(&self.0)? + 100)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(offset, buf)
    }
}

const GIB: u64 = 1 << 30;
const LIMITS: Limits = Limits::new(GIB);

/// The whole verification of an archive held in memory: the central directory check, then
/// the local headers streamed in one piece.
fn run(bytes: &[u8]) -> Result<Summary, CheckError> {
    verify(bytes, &LIMITS)
}

fn verify(bytes: &[u8], limits: &Limits) -> Result<Summary, CheckError> {
    let Checked {
        summary,
        mut local_headers,
    } = check(bytes, limits)?;
    local_headers.update(bytes)?;
    local_headers.finish()?;
    Ok(summary)
}

/// The central directory check alone, for readers other than a byte slice.
fn summary<R: ReadAt + ?Sized>(archive: &R, limits: &Limits) -> Result<Summary, CheckError> {
    check(archive, limits).map(|checked| checked.summary)
}

fn problem(result: Result<Summary, CheckError>) -> Problem {
    match result {
        Err(CheckError::Invalid(problem)) => problem,
        other => panic!("expected an invalid archive, got {other:?}"),
    }
}

fn assert_not_a_zip(result: Result<Summary, CheckError>) {
    match problem(result) {
        Problem::NotAZip(_) => {}
        other => panic!("expected NotAZip, got {other:?}"),
    }
}

fn unsafe_path(name: &str) -> Problem {
    Problem::UnsafePath {
        name: name.to_owned(),
    }
}

fn unsafe_symlink(name: &str, target: &str) -> Problem {
    Problem::UnsafeSymlink {
        name: name.to_owned(),
        target: target.to_owned(),
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/{name}",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/cloud-controller"
        )
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Cloud Controller's fixtures.

#[test]
fn cloud_controller_good_fixtures_pass() {
    for name in [
        "good.zip",
        "express-app.zip",
        "special_character_names.zip",
        "many_dirs.zip",
        "good_relative_paths.zip",
        "broken-file-symlink.zip",
    ] {
        let summary = run(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(summary.entries > 0, "{name}");
    }
}

#[test]
fn good_zip_summary_counts_entries_and_claimed_bytes() {
    // bye (4), hi (3), subdir/ (0), subdir/greetings (10)
    assert_eq!(
        run(&fixture("good.zip")).expect("valid"),
        Summary {
            entries: 4,
            uncompressed_bytes: 17,
            largest_file_bytes: 10,
        }
    );
}

#[test]
fn fixtures_check_through_a_file() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/cloud-controller"
    );
    let good = std::fs::File::open(format!("{dir}/express-app.zip")).expect("fixture");
    assert_eq!(summary(&good, &LIMITS).expect("valid").entries, 7);
    let bad = std::fs::File::open(format!("{dir}/bad_relative_paths.zip")).expect("fixture");
    assert_eq!(
        problem(summary(&bad, &LIMITS)),
        unsafe_path("../fakezip.zip")
    );
}

#[test]
fn cloud_controller_bad_zip_is_not_a_zip() {
    assert_not_a_zip(run(&fixture("bad.zip")));
}

#[test]
fn cloud_controller_empty_zip_is_empty() {
    assert_eq!(problem(run(&fixture("empty.zip"))), Problem::Empty);
}

#[test]
fn cloud_controller_bad_relative_paths_escape() {
    assert_eq!(
        problem(run(&fixture("bad_relative_paths.zip"))),
        unsafe_path("../fakezip.zip")
    );
}

// ---------------------------------------------------------------------------------------
// Structure.

#[test]
fn built_archive_passes_with_its_summary() {
    let zip = ZipBuilder::new()
        .dir("app/")
        .file("app/index.js", b"console.log('hi')\n")
        .file("app/readme", b"hello")
        .build();
    assert_eq!(
        run(&zip).expect("valid"),
        Summary {
            entries: 3,
            uncompressed_bytes: 23,
            largest_file_bytes: 18, // app/index.js
        }
    );
}

#[test]
fn empty_file_and_random_bytes_are_not_zips() {
    assert_not_a_zip(run(b""));
    assert_not_a_zip(run(b"PK"));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert_not_a_zip(run(&noise));
}

#[test]
fn archive_without_entries_is_empty() {
    assert_eq!(problem(run(&ZipBuilder::new().build())), Problem::Empty);
    assert_eq!(
        problem(run(&ZipBuilder::new().zip64().build())),
        Problem::Empty
    );
}

#[test]
fn zip64_archive_passes() {
    let zip = ZipBuilder::new()
        .zip64()
        .dir("app/")
        .file("app/a.txt", b"alpha")
        .symlink("app/link", "a.txt")
        .claiming("app/big.bin", 5 * GIB)
        .build();
    let limits = Limits::new(6 * GIB);
    assert_eq!(
        summary(zip.as_slice(), &limits).expect("valid"),
        Summary {
            entries: 4,
            uncompressed_bytes: 5 * GIB + 10,
            largest_file_bytes: 5 * GIB,
        }
    );
}

#[test]
fn zip64_end_record_without_locator_is_not_a_zip() {
    let built = ZipBuilder::new().zip64().file("a", b"x").build_parts();
    let mut zip = built.bytes;
    // Break the locator signature just before the classic end record.
    zip[built.eocd_offset - 20] ^= 0xFF;
    assert_not_a_zip(run(&zip));
}

#[test]
fn archive_cut_inside_the_central_directory_is_not_a_zip() {
    let built = ZipBuilder::new()
        .file("a.txt", b"alpha")
        .file("b.txt", b"beta")
        .file("c.txt", b"gamma")
        .build_parts();
    let cut = built.cd_offset + 50;
    assert_not_a_zip(run(&built.bytes[..cut]));

    // Keep the end record but drop part of the directory: its offsets no longer fit.
    let mut spliced = built.bytes[..cut].to_vec();
    spliced.extend_from_slice(&built.bytes[built.eocd_offset..]);
    assert_not_a_zip(run(&spliced));
}

#[test]
fn every_truncation_is_invalid_and_never_panics() {
    let zip = ZipBuilder::new()
        .dir("d/")
        .file("d/a.txt", b"alpha")
        .deflated_symlink("d/link", "a.txt")
        .comment(b"a comment")
        .build();
    for len in 0..zip.len() {
        assert_not_a_zip(run(&zip[..len]));
    }
}

#[test]
fn end_record_claiming_more_entries_than_present_is_not_a_zip() {
    let built = ZipBuilder::new()
        .file("a", b"1")
        .file("b", b"2")
        .build_parts();
    let mut zip = built.bytes;
    for at in [8, 10] {
        zip[built.eocd_offset + at] = 3;
    }
    assert_not_a_zip(run(&zip));
}

#[test]
fn end_record_claiming_fewer_entries_than_present_is_not_a_zip() {
    let built = ZipBuilder::new()
        .file("a", b"1")
        .file("b", b"2")
        .build_parts();
    let mut zip = built.bytes;
    for at in [8, 10] {
        zip[built.eocd_offset + at] = 1;
    }
    assert_not_a_zip(run(&zip));
}

#[test]
fn huge_entry_count_fails_without_walking() {
    let built = ZipBuilder::new().zip64().file("a", b"1").build_parts();
    let mut zip = built.bytes;
    // Zip64 end record: entries on this disk and in total.
    let record = built.eocd_offset - 20 - 56;
    for at in [24, 32] {
        zip[record + at..record + at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    }
    let reader = Counting::new(zip);
    assert_not_a_zip(summary(&reader, &LIMITS));
    assert!(reader.reads.get() <= 2, "{} reads", reader.reads.get());
}

#[test]
fn comment_containing_the_signature_does_not_mislead() {
    let zip = ZipBuilder::new()
        .file("a", b"1")
        .comment(b"see PK\x05\x06 in here")
        .build();
    assert_eq!(run(&zip).expect("valid").entries, 1);

    // A complete fake end record ending exactly at the end of the file, pointing nowhere.
    let mut fake = 0x0605_4b50u32.to_le_bytes().to_vec();
    fake.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    fake.extend_from_slice(&1000u32.to_le_bytes());
    fake.extend_from_slice(&5_000_000u32.to_le_bytes());
    fake.extend_from_slice(&0u16.to_le_bytes());
    let zip = ZipBuilder::new().file("a", b"1").comment(&fake).build();
    assert_eq!(run(&zip).expect("valid").entries, 1);
}

// ---------------------------------------------------------------------------------------
// Size limits.

#[test]
fn single_entry_claiming_2_pow_63_bytes_is_too_large_from_its_claim() {
    let zip = ZipBuilder::new().claiming("bomb", 1 << 63).build();
    let result = run(&zip);
    assert_eq!(
        problem(result),
        Problem::TooLarge {
            claimed: 1 << 63,
            limit: GIB,
        }
    );
}

#[test]
fn many_entries_claiming_4_gib_each_stop_at_the_limit() {
    let mut builder = ZipBuilder::new();
    for i in 0..5000 {
        builder = builder.claiming(&format!("bomb/{i:05}"), 4 * GIB);
    }
    let reader = Counting::new(builder.build());
    let limits = Limits::new(1024 * GIB);
    let result = summary(&reader, &limits);
    // 256 entries reach the limit exactly; the 257th passes it and the walk stops there.
    assert_eq!(
        problem(result),
        Problem::TooLarge {
            claimed: 257 * 4 * u128::from(GIB),
            limit: 1024 * GIB,
        }
    );
    assert!(reader.reads.get() <= 3, "{} reads", reader.reads.get());
}

#[test]
fn total_exactly_at_the_limit_passes_and_one_byte_more_fails() {
    let zip = ZipBuilder::new()
        .claiming("a", GIB / 2)
        .claiming("b", GIB / 2 - 1)
        .file("c", b"x")
        .build();
    assert_eq!(run(&zip).expect("valid").uncompressed_bytes, GIB);
    let tighter = Limits::new(GIB - 1);
    assert_eq!(
        problem(summary(zip.as_slice(), &tighter)),
        Problem::TooLarge {
            claimed: u128::from(GIB),
            limit: GIB - 1,
        }
    );
}

#[test]
fn sizes_cannot_wrap_around() {
    let zip = ZipBuilder::new()
        .claiming("a", u64::MAX)
        .claiming("b", u64::MAX)
        .build();
    let limits = Limits::new(u64::MAX);
    assert_eq!(
        problem(summary(zip.as_slice(), &limits)),
        Problem::TooLarge {
            claimed: 2 * u128::from(u64::MAX),
            limit: u64::MAX,
        }
    );
}

// ---------------------------------------------------------------------------------------
// Entry paths.

#[test]
fn escaping_entry_paths_are_unsafe() {
    for name in [
        "/etc/passwd",
        "\\evil",
        "C:\\evil",
        "c:/evil",
        "..\\evil",
        "../evil",
        "a/../../x",
        "a/b/../../../x",
        "ok/\0/x",
    ] {
        let zip = ZipBuilder::new().file("fine", b"").file(name, b"x").build();
        assert_eq!(problem(run(&zip)), unsafe_path(name), "{name:?}");
    }
}

#[test]
fn relative_paths_staying_inside_pass() {
    let zip = ZipBuilder::new()
        .file("bar/../cat", b"meow")
        .file("./dot", b"")
        .file("a/b/../../c", b"")
        .file("a\\b\\c", b"")
        .file("odd:name", b"")
        .build();
    assert_eq!(run(&zip).expect("valid").entries, 5);
}

#[test]
fn non_utf8_names_are_checked_as_bytes() {
    let zip = ZipBuilder::new().file(b"caf\x82/men\xfa", b"cp437").build();
    assert_eq!(run(&zip).expect("valid").entries, 1);

    let zip = ZipBuilder::new().file(b"../caf\x82", b"x").build();
    assert_eq!(problem(run(&zip)), unsafe_path("../caf\u{FFFD}"));
}

#[test]
fn empty_entry_name_is_not_a_zip() {
    assert_not_a_zip(run(&ZipBuilder::new().file("", b"x").build()));
}

// ---------------------------------------------------------------------------------------
// Symlinks.

#[test]
fn symlink_to_an_absolute_path_is_unsafe() {
    let zip = ZipBuilder::new().symlink("passwd", "/etc/passwd").build();
    assert_eq!(problem(run(&zip)), unsafe_symlink("passwd", "/etc/passwd"));
    let zip = ZipBuilder::new().symlink("win", "C:\\Windows").build();
    assert_eq!(problem(run(&zip)), unsafe_symlink("win", "C:\\Windows"));
}

#[test]
fn symlink_climbing_above_the_root_is_unsafe() {
    for zip in [
        ZipBuilder::new().dir("a/").symlink("a/link", "../../x"),
        ZipBuilder::new()
            .dir("a/")
            .deflated_symlink("a/link", "../../x"),
        ZipBuilder::new().symlink("a/link", "..\\..\\x"),
    ] {
        let problem = problem(run(&zip.build()));
        assert!(
            matches!(&problem, Problem::UnsafeSymlink { name, .. } if name == "a/link"),
            "{problem:?}"
        );
    }
}

#[test]
fn symlink_staying_inside_passes() {
    let zip = ZipBuilder::new()
        .dir("a/")
        .symlink("a/link", "../x")
        .deflated_symlink("a/other", "../a/./missing-file")
        .symlink("top", "a/link")
        .build();
    assert_eq!(run(&zip).expect("valid").entries, 4);
}

#[test]
fn symlink_chain_with_parent_steps_is_unsafe() {
    let zip = ZipBuilder::new()
        .symlink("d/up", "..")
        .symlink("d/x", "up/..")
        .build();
    assert_eq!(problem(run(&zip)), unsafe_symlink("d/x", "up/.."));
}

#[test]
fn entry_through_a_symlink_is_unsafe() {
    let zip = ZipBuilder::new()
        .symlink("a", "b")
        .file("a/x", b"payload")
        .build();
    assert_eq!(problem(run(&zip)), unsafe_path("a/x"));

    // The entry may come before the link in the directory.
    let zip = ZipBuilder::new()
        .file("a\\x", b"payload")
        .symlink("a", "b")
        .build();
    assert_eq!(problem(run(&zip)), unsafe_path("a\\x"));

    // Through a link, then back out: lexically `c`, but resolved through `a`.
    let zip = ZipBuilder::new()
        .dir("a/")
        .symlink("a/up", "..")
        .file("a/up/../c", b"")
        .build();
    assert_eq!(problem(run(&zip)), unsafe_path("a/up/../c"));
}

#[test]
fn entries_beside_a_symlink_pass() {
    let zip = ZipBuilder::new()
        .symlink("a", "b")
        .file("ab/x", b"")
        .file("b/x", b"")
        .build();
    assert_eq!(run(&zip).expect("valid").entries, 3);
}

#[test]
fn symlink_mode_counts_whatever_the_host() {
    let mut link = TestEntry::new("link", "/etc/passwd", LINK_MODE);
    link.host = 0;
    let zip = ZipBuilder::new().entry(link).build();
    assert_eq!(problem(run(&zip)), unsafe_symlink("link", "/etc/passwd"));
}

#[test]
fn oversized_symlink_target_is_not_a_zip() {
    let target = "a/".repeat(2049);
    assert_not_a_zip(run(&ZipBuilder::new().symlink("link", &target).build()));
    // Tiny compressed, but claiming a long target.
    let mut bomb = TestEntry::new("link", "x".repeat(5000), LINK_MODE);
    bomb.deflate = true;
    assert_not_a_zip(run(&ZipBuilder::new().entry(bomb).build()));
}

#[test]
fn symlink_with_unknown_method_or_bad_data_is_not_a_zip() {
    let mut bzip2 = TestEntry::new("link", "target", LINK_MODE);
    bzip2.method = Some(12);
    assert_not_a_zip(run(&ZipBuilder::new().entry(bzip2).build()));

    // Stored bytes recorded as deflated do not inflate to the recorded size.
    let mut garbage = TestEntry::new("link", "\u{7f}\u{7f}\u{7f}\u{7f}", LINK_MODE);
    garbage.method = Some(8);
    assert_not_a_zip(run(&ZipBuilder::new().entry(garbage).build()));
}

#[test]
fn symlink_with_missing_local_header_is_not_a_zip() {
    let built = ZipBuilder::new().symlink("link", "target").build_parts();
    let mut zip = built.bytes;
    zip[0] = b'X';
    assert_not_a_zip(run(&zip));
}

// ---------------------------------------------------------------------------------------
// Reading.

#[test]
fn reader_failure_is_an_io_error() {
    for len_fails in [false, true] {
        match summary(&Failing { len_fails }, &LIMITS) {
            Err(CheckError::Io(_)) => {}
            other => panic!("expected an io error, got {other:?}"),
        }
    }
}

#[test]
fn reader_ending_before_its_length_is_an_io_error() {
    let zip = ZipBuilder::new().file("a", b"1").build();
    match summary(&Shrunk(zip), &LIMITS) {
        Err(CheckError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("expected an io error, got {other:?}"),
    }
}

#[test]
fn short_reads_are_completed() {
    let zip = ZipBuilder::new()
        .file("a", b"1")
        .deflated_symlink("l", "a")
        .build();
    assert_eq!(summary(&Trickle(zip), &LIMITS).expect("valid").entries, 2);
}

#[test]
fn five_thousand_entries_take_few_reads() {
    let mut builder = ZipBuilder::new();
    for i in 0..5000 {
        builder = builder.file(format!("app/dir{:02}/file{i:05}.txt", i % 50), b"content");
    }
    let zip = builder.build();
    assert!(zip.len() > 500_000);
    let reader = Counting::new(zip);
    assert_eq!(summary(&reader, &LIMITS).expect("valid").entries, 5000);
    assert!(reader.reads.get() < 20, "{} reads", reader.reads.get());
}

#[test]
fn many_symlinks_take_few_reads() {
    let mut builder = ZipBuilder::new();
    for i in 0..2000 {
        builder = builder
            .file(format!("lib/file{i:04}"), b"content")
            .symlink(&format!("bin/link{i:04}"), &format!("../lib/file{i:04}"));
    }
    let reader = Counting::new(builder.build());
    assert_eq!(summary(&reader, &LIMITS).expect("valid").entries, 4000);
    assert!(reader.reads.get() < 20, "{} reads", reader.reads.get());
}

#[test]
fn damaged_archives_never_panic() {
    let zip = ZipBuilder::new()
        .dir("d/")
        .file("d/a.txt", b"alpha")
        .deflated_symlink("d/link", "a.txt")
        .symlink("d/l2", "../d/a.txt")
        .claiming("big", 1 << 40)
        .build();
    let zip64 = ZipBuilder::new()
        .zip64()
        .file("d/a.txt", b"alpha")
        .deflated_symlink("d/link", "a.txt")
        .build();
    for original in [zip, zip64] {
        for at in 0..original.len() {
            for value in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut damaged = original.clone();
                damaged[at] = value;
                // Any verdict is fine; only a panic or an io error would be wrong.
                if let Err(CheckError::Io(e)) = run(&damaged) {
                    panic!("io error for byte {at} = {value:#x}: {e}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Texts.

#[test]
fn problems_read_well() {
    assert_eq!(
        unsafe_path("../evil").to_string(),
        "entry '../evil' escapes the package root"
    );
    assert_eq!(
        unsafe_symlink("a/link", "/etc/passwd").to_string(),
        "symlink 'a/link' points to '/etc/passwd', outside the package root"
    );
    assert_eq!(
        Problem::Empty.to_string(),
        "the zip archive contains no files"
    );
    assert_eq!(
        Problem::TooLarge {
            claimed: 2048,
            limit: 1024,
        }
        .to_string(),
        "the zip archive's entries claim at least 2048 bytes uncompressed, \
         more than the limit of 1024 bytes"
    );
    let error = run(b"not a zip").expect_err("invalid");
    assert!(
        error
            .to_string()
            .starts_with("the file is not a valid zip archive: "),
        "{error}"
    );
    assert!(error.problem().is_some());
}

// ---------------------------------------------------------------------------------------
// Limits on entries, names and symlinks.

fn limits(edit: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = LIMITS;
    edit(&mut limits);
    limits
}

#[test]
fn limits_new_takes_the_defaults() {
    assert_eq!(
        Limits::new(GIB),
        Limits {
            max_uncompressed_bytes: GIB,
            max_entries: 250_000,
            max_name_bytes: 4096,
            max_symlinks: 10_000,
        }
    );
    assert_eq!(DEFAULT_MAX_ENTRIES, 250_000);
    assert_eq!(DEFAULT_MAX_NAME_BYTES, 4096);
    assert_eq!(DEFAULT_MAX_SYMLINKS, 10_000);
}

#[test]
fn entry_count_at_the_limit_passes_and_above_fails_from_the_end_record() {
    let mut builder = ZipBuilder::new();
    for i in 0..10 {
        builder = builder.file(format!("f{i}"), b"x");
    }
    let zip = builder.build();
    assert_eq!(
        verify(&zip, &limits(|l| l.max_entries = 10))
            .expect("valid")
            .entries,
        10
    );
    // Only the end record is read: the walk never starts.
    let reader = Counting::new(zip);
    assert_eq!(
        problem(summary(&reader, &limits(|l| l.max_entries = 9))),
        Problem::TooManyEntries { limit: 9 }
    );
    assert_eq!(reader.reads.get(), 1);
}

#[test]
fn name_length_at_the_limit_passes_and_above_fails() {
    let at_limit = "n".repeat(200);
    let zip = ZipBuilder::new().file(&at_limit, b"x").build();
    assert!(verify(&zip, &limits(|l| l.max_name_bytes = 200)).is_ok());

    let long = format!("{}/{}", "d".repeat(150), "f".repeat(150));
    let zip = ZipBuilder::new().file(&long, b"x").build();
    let found = problem(summary(zip.as_slice(), &limits(|l| l.max_name_bytes = 200)));
    // The name is cut for display.
    assert_eq!(
        found,
        Problem::NameTooLong {
            name: format!("{}…", "d".repeat(100)),
            limit: 200,
        }
    );
}

#[test]
fn symlink_count_at_the_limit_passes_and_above_fails() {
    let mut builder = ZipBuilder::new().file("target", b"x");
    for i in 0..5 {
        builder = builder.symlink(&format!("l{i}"), "target");
    }
    let zip = builder.build();
    assert!(verify(&zip, &limits(|l| l.max_symlinks = 5)).is_ok());
    assert_eq!(
        problem(verify(&zip, &limits(|l| l.max_symlinks = 4))),
        Problem::TooManySymlinks { limit: 4 }
    );
}

// ---------------------------------------------------------------------------------------
// Local headers.

fn mismatch(name: &str, offset: u64, what: LocalField) -> Problem {
    Problem::LocalHeaderMismatch {
        name: name.to_owned(),
        offset,
        what,
    }
}

/// Feeds `bytes` to a fresh verifier for the archive in chunks whose sizes `sizes` yields
/// (cycled), returning the first problem from `update` or `finish`.
fn stream(bytes: &[u8], mut sizes: impl FnMut() -> usize) -> Result<(), Problem> {
    let mut local = check(bytes, &LIMITS)
        .expect("central directory passes")
        .local_headers;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(sizes().clamp(1, rest.len()));
        local.update(chunk)?;
        rest = tail;
    }
    local.finish()
}

fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn local_name_differing_from_the_central_one_fails() {
    let zip = ZipBuilder::new()
        .entry(
            TestEntry::file("safe/pwned.txt1", "owned")
                .with_local(|l| l.name = Some(b"../../pwned.txt".to_vec())),
        )
        .build();
    let found = problem(run(&zip));
    assert_eq!(found, mismatch("../../pwned.txt", 0, LocalField::Name));
    assert_eq!(
        found.to_string(),
        "entry '../../pwned.txt' at offset 0 does not match its central directory \
         record (name)"
    );
    // Same length, one byte off.
    let zip = ZipBuilder::new()
        .file("ok", b"")
        .entry(TestEntry::file("abc", "x").with_local(|l| l.name = Some(b"abd".to_vec())))
        .build();
    assert_eq!(problem(run(&zip)), mismatch("abd", 32, LocalField::Name));
}

#[test]
fn local_method_differing_fails() {
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| l.method = Some(8)))
        .build();
    assert_eq!(problem(run(&zip)), mismatch("a", 0, LocalField::Method));
}

#[test]
fn local_sizes_differing_fail() {
    for edit in [
        (|l: &mut LocalOverrides| l.compressed = Some(3)) as fn(&mut LocalOverrides),
        |l| l.uncompressed = Some(5),
        |l| l.compressed = Some(0),
    ] {
        let zip = ZipBuilder::new()
            .entry(TestEntry::file("a", "data").with_local(edit))
            .build();
        assert_eq!(problem(run(&zip)), mismatch("a", 0, LocalField::Size));
    }
}

#[test]
fn local_crc_differing_fails() {
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| l.crc = Some(0xDEAD_BEEF)))
        .build();
    assert_eq!(problem(run(&zip)), mismatch("a", 0, LocalField::Crc));
    // A zero CRC stands for "in the data descriptor" only with flag bit 3.
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| l.crc = Some(0)))
        .build();
    assert_eq!(problem(run(&zip)), mismatch("a", 0, LocalField::Crc));
}

#[test]
fn data_descriptors_in_every_form_pass() {
    for descriptor in [
        Descriptor::Plain,
        Descriptor::Signed,
        Descriptor::Zip64Signed,
        Descriptor::Zip64Plain,
    ] {
        let mut deflated = TestEntry::file("d/deflated", "hello hello hello hello")
            .with_local(|l| l.descriptor = Some(descriptor));
        deflated.deflate = true;
        let zip = ZipBuilder::new()
            .entry(deflated)
            .entry(
                TestEntry::file("d/stored", "xyz").with_local(|l| l.descriptor = Some(descriptor)),
            )
            .file("plain", b"after")
            .build();
        assert_eq!(run(&zip).expect("valid").entries, 3);
    }
}

#[test]
fn flag_bit_3_still_needs_agreeing_values() {
    // Local values other than zero must still agree.
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| {
            l.descriptor = Some(Descriptor::Signed);
            l.crc = Some(7);
        }))
        .build();
    assert_eq!(problem(run(&zip)), mismatch("a", 0, LocalField::Crc));
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| {
            l.descriptor = Some(Descriptor::Signed);
            l.uncompressed = Some(9);
        }))
        .build();
    assert_eq!(problem(run(&zip)), mismatch("a", 0, LocalField::Size));
    // The local header may also repeat the real values.
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| {
            l.descriptor = Some(Descriptor::Signed);
            l.uncompressed = Some(4);
            l.compressed = Some(4);
        }))
        .build();
    assert!(run(&zip).is_ok());
}

#[test]
fn data_descriptor_disagreeing_with_the_central_directory_fails() {
    let built = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| l.descriptor = Some(Descriptor::Signed)))
        .build_parts();
    // Signature (4), CRC (4), compressed, uncompressed: damage each value in turn.
    let descriptor = built.local_offsets[0] + 30 + 1 + 4;
    for at in [4, 8, 12] {
        let mut zip = built.bytes.clone();
        zip[descriptor + at] ^= 1;
        assert_eq!(
            problem(run(&zip)),
            mismatch("a", 0, LocalField::DataDescriptor),
            "byte {at}"
        );
    }
    // Without its signature, the 16 bytes would be read as a 12-byte descriptor.
    let mut zip = built.bytes.clone();
    zip[descriptor] = b'X';
    assert_eq!(
        problem(run(&zip)),
        mismatch("a", 0, LocalField::DataDescriptor)
    );
}

#[test]
fn zip64_local_extra_fields_are_read() {
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| l.zip64 = true))
        .file("b", b"more")
        .build();
    assert_eq!(run(&zip).expect("valid").entries, 2);
    let zip = ZipBuilder::new()
        .zip64()
        .entry(TestEntry::file("a", "data").with_local(|l| l.zip64 = true))
        .build();
    assert_eq!(run(&zip).expect("valid").entries, 1);

    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| {
            l.zip64 = true;
            l.uncompressed = Some(1 << 33);
        }))
        .build();
    assert_eq!(problem(run(&zip)), mismatch("a", 0, LocalField::Size));

    // Saturated local sizes without a Zip64 field say nothing true.
    let built = ZipBuilder::new().file("a", b"data").build_parts();
    let mut zip = built.bytes;
    zip[18..26].copy_from_slice(&[0xFF; 8]);
    assert_eq!(problem(run(&zip)), mismatch("a", 0, LocalField::Size));

    // With flag bit 3 and a Zip64 field of zeros, the descriptor holds the sizes.
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| {
            l.zip64 = true;
            l.descriptor = Some(Descriptor::Zip64Signed);
        }))
        .build();
    assert!(run(&zip).is_ok());
}

#[test]
fn entries_sharing_data_overlap() {
    // The second central entry points at the first entry's local header.
    let built = ZipBuilder::new()
        .file("a", b"data")
        .file("b", b"data")
        .build_parts();
    let mut zip = built.bytes;
    let field = built.central_offsets[1] + 42;
    zip[field..field + 4].copy_from_slice(&0u32.to_le_bytes());
    // Found by the central directory check, before any byte is streamed.
    assert_eq!(
        problem(summary(zip.as_slice(), &LIMITS)),
        Problem::OverlappingEntries { offset: 0 }
    );
}

#[test]
fn data_running_into_the_next_entry_overlaps() {
    // The central directory claims more compressed bytes than there are before `b`.
    let built = ZipBuilder::new()
        .file("a", b"data")
        .file("b", b"data")
        .build_parts();
    let mut zip = built.bytes;
    let field = built.central_offsets[0] + 20;
    zip[field..field + 4].copy_from_slice(&40u32.to_le_bytes());
    assert_eq!(
        problem(summary(zip.as_slice(), &LIMITS)),
        Problem::OverlappingEntries { offset: 0 }
    );

    // A local extra field the central directory does not know about pushes the data into
    // the next entry: only the local header shows it.
    let built = ZipBuilder::new()
        .file("a", b"data")
        .file("b", b"data")
        .build_parts();
    let mut zip = built.bytes;
    zip[28] = 4;
    assert_eq!(
        problem(run(&zip)),
        Problem::OverlappingEntries { offset: 0 }
    );

    // The last entry's data running into the central directory.
    let built = ZipBuilder::new().file("a", b"data").build_parts();
    let mut zip = built.bytes;
    let field = built.central_offsets[0] + 20;
    zip[field..field + 4].copy_from_slice(&5u32.to_le_bytes());
    zip[18..22].copy_from_slice(&5u32.to_le_bytes());
    assert_eq!(
        problem(summary(zip.as_slice(), &LIMITS)),
        Problem::OverlappingEntries { offset: 0 }
    );
}

#[test]
fn missing_local_header_fails() {
    let built = ZipBuilder::new()
        .file("a", b"data")
        .file("b", b"data")
        .build_parts();
    let mut zip = built.bytes;
    zip[built.local_offsets[1]] = b'X';
    assert_eq!(
        problem(run(&zip)),
        Problem::MissingLocalHeader {
            offset: built.local_offsets[1] as u64
        }
    );
}

#[test]
fn bytes_between_entries_fail() {
    let mut first = TestEntry::file("a", "data");
    first.trailing = b"junk".to_vec();
    let zip = ZipBuilder::new().entry(first).file("b", b"data").build();
    assert_eq!(problem(run(&zip)), Problem::UnlistedData { offset: 35 });

    // A whole local header hidden between two entries, which a streaming unpacker would
    // extract and this check would otherwise never see.
    let hidden = ZipBuilder::new()
        .file("../../evil", b"gotcha")
        .build_parts();
    let mut first = TestEntry::file("a", "data");
    first.trailing = hidden.bytes[..hidden.cd_offset].to_vec();
    let zip = ZipBuilder::new().entry(first).file("b", b"data").build();
    assert_eq!(problem(run(&zip)), Problem::UnlistedData { offset: 35 });

    // Between the last entry and the central directory too.
    let mut last = TestEntry::file("a", "data");
    last.trailing = hidden.bytes[..hidden.cd_offset].to_vec();
    let zip = ZipBuilder::new().entry(last).build();
    assert_eq!(problem(run(&zip)), Problem::UnlistedData { offset: 35 });

    // A data descriptor of a length no reader would expect.
    let mut odd =
        TestEntry::file("a", "data").with_local(|l| l.descriptor = Some(Descriptor::Signed));
    odd.trailing = vec![0; 2];
    let zip = ZipBuilder::new().entry(odd).build();
    assert_eq!(problem(run(&zip)), Problem::UnlistedData { offset: 35 });
}

#[test]
fn self_extracting_prefix_passes_unless_it_holds_a_local_header() {
    let stub = b"#!/bin/sh\necho 'self-extracting stub'\nexit 0\nPK\x01\x02 and PK\x03 alone\n";
    let zip = ZipBuilder::new()
        .prefix(stub)
        .file("a", b"data")
        .symlink("l", "a")
        .build();
    assert_eq!(run(&zip).expect("valid").entries, 2);
    assert!(stream(&zip, || 1).is_ok());

    let hidden = ZipBuilder::new()
        .file("../../evil", b"gotcha")
        .build_parts();
    let mut prefix = b"MZ stub ".to_vec();
    prefix.extend_from_slice(&hidden.bytes[..hidden.cd_offset]);
    let zip = ZipBuilder::new().prefix(&prefix).file("a", b"data").build();
    assert_eq!(problem(run(&zip)), Problem::UnlistedData { offset: 8 });
    // Also when the signature straddles chunks.
    assert_eq!(stream(&zip, || 3), Err(Problem::UnlistedData { offset: 8 }));
}

#[test]
fn archive_ending_before_its_last_entry_fails() {
    let built = ZipBuilder::new()
        .file("a", b"data")
        .file("b", b"data")
        .build_parts();
    let cut_points = [
        0,
        1,
        29,
        30,
        31,
        35,
        built.local_offsets[1] + 3,
        built.cd_offset - 1,
    ];
    for cut in cut_points {
        let mut local = check(built.bytes.as_slice(), &LIMITS)
            .expect("valid")
            .local_headers;
        local.update(&built.bytes[..cut]).expect("no problem yet");
        match local.finish() {
            Err(Problem::NotAZip(reason)) => assert!(reason.contains("ends"), "{reason}"),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Everything up to the central directory is all the entries need.
    let mut local = check(built.bytes.as_slice(), &LIMITS)
        .expect("valid")
        .local_headers;
    local
        .update(&built.bytes[..built.cd_offset])
        .expect("valid");
    assert!(local.finish().is_ok());
}

#[test]
fn a_problem_sticks_once_found() {
    let zip = ZipBuilder::new()
        .entry(TestEntry::file("a", "data").with_local(|l| l.method = Some(8)))
        .build();
    let mut local = check(zip.as_slice(), &LIMITS).expect("valid").local_headers;
    let found = local.update(&zip).expect_err("mismatch");
    assert_eq!(local.update(b"more"), Err(found.clone()));
    assert_eq!(local.finish(), Err(found));
}

/// Archives that pass and fail at every stage of the stream, for chunking tests.
fn streaming_cases() -> Vec<Vec<u8>> {
    let long_name = format!("{}/file", "deep/".repeat(800));
    let mut extra_local = TestEntry::file("x", "data");
    extra_local.trailing = b"!".to_vec();
    let mut deflated = TestEntry::file("deflated", "abcabcabcabcabcabc".repeat(100))
        .with_local(|l| l.descriptor = Some(Descriptor::Zip64Plain));
    deflated.deflate = true;
    vec![
        fixture("good.zip"),
        fixture("express-app.zip"),
        fixture("many_dirs.zip"),
        ZipBuilder::new()
            .prefix(b"stub PK\x03")
            .file(&long_name, &[7u8; 5000])
            .entry(deflated)
            .entry(
                TestEntry::file("s", "stored")
                    .with_local(|l| l.descriptor = Some(Descriptor::Plain)),
            )
            .entry(TestEntry::file("z", "zip64").with_local(|l| l.zip64 = true))
            .symlink("link", "s")
            .build(),
        ZipBuilder::new()
            .file("a", b"1")
            .entry(TestEntry::file("b", "2").with_local(|l| l.name = Some(b"c".to_vec())))
            .build(),
        ZipBuilder::new()
            .file("a", b"1")
            .entry(extra_local)
            .file("b", b"2")
            .build(),
        ZipBuilder::new()
            .file("a", &[1u8; 300])
            .entry(TestEntry::file("b", "2").with_local(|l| l.crc = Some(1)))
            .build(),
    ]
}

#[test]
fn any_chunking_gives_the_same_outcome() {
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    for (i, zip) in streaming_cases().iter().enumerate() {
        let whole = stream(zip, || usize::MAX);
        assert_eq!(stream(zip, || 1), whole, "case {i}, byte by byte");
        for round in 0..20 {
            // Mostly small chunks, so headers straddle them, and now and then a large one.
            let outcome = stream(zip, || match next() % 8 {
                0 => (next() % 70_000) as usize,
                _ => (next() % 40) as usize,
            });
            assert_eq!(outcome, whole, "case {i}, random chunks, round {round}");
        }
    }
    // Both verdicts are exercised.
    let verdicts: Vec<bool> = streaming_cases()
        .iter()
        .map(|zip| stream(zip, || usize::MAX).is_ok())
        .collect();
    assert!(
        verdicts.contains(&true) && verdicts.contains(&false),
        "{verdicts:?}"
    );
}

#[test]
fn cloud_controller_fixtures_pass_or_fail_as_documented() {
    // The README beside them says what each must give.
    for (name, expected_ok) in [
        ("good.zip", true),
        ("express-app.zip", true),
        ("special_character_names.zip", true),
        ("many_dirs.zip", true),
        ("good_relative_paths.zip", true),
        ("broken-file-symlink.zip", true),
        ("bad.zip", false),
        ("empty.zip", false),
        ("bad_relative_paths.zip", false),
    ] {
        let outcome = run(&fixture(name));
        assert_eq!(outcome.is_ok(), expected_ok, "{name}: {outcome:?}");
        if let Err(e) = outcome {
            assert!(e.problem().is_some(), "{name}: {e}");
        }
    }
}

#[test]
fn new_problems_read_well() {
    for (problem, text) in [
        (
            Problem::TooManyEntries { limit: 250_000 },
            "the zip archive has more than 250000 entries",
        ),
        (
            Problem::NameTooLong {
                name: "a/b".into(),
                limit: 4096,
            },
            "entry 'a/b' has a name longer than 4096 bytes",
        ),
        (
            Problem::TooManySymlinks { limit: 10_000 },
            "the zip archive has more than 10000 symlinks",
        ),
        (
            mismatch("a.txt", 7, LocalField::Crc),
            "entry 'a.txt' at offset 7 does not match its central directory record (CRC-32)",
        ),
        (
            Problem::MissingLocalHeader { offset: 9 },
            "the central directory lists an entry at offset 9, where there is none",
        ),
        (
            Problem::OverlappingEntries { offset: 0 },
            "the entry at offset 0 overlaps the next entry or the central directory",
        ),
        (
            Problem::UnlistedData { offset: 35 },
            "the zip archive has data at offset 35 that is not part of any entry it lists",
        ),
    ] {
        assert_eq!(problem.to_string(), text);
    }
}

// ---------------------------------------------------------------------------------------
// Symlink bookkeeping that must not grow with names.

#[test]
fn deep_and_long_link_names_check_quickly() {
    // 500 links, each 1,000 components deep, every one pointing up to the root's file.
    let depth = 1000;
    let dir = "d/".repeat(depth);
    let up = "../".repeat(depth);
    let mut builder = ZipBuilder::new().file("target", b"x");
    for i in 0..500 {
        builder = builder.symlink(&format!("{dir}l{i}"), &format!("{up}target"));
    }
    let zip = builder.build();
    assert_eq!(run(&zip).expect("valid").entries, 501);

    // One more `..` and the last link leaves the root.
    let zip = ZipBuilder::new()
        .symlink(&format!("{dir}l"), &format!("{up}../target"))
        .build();
    assert!(matches!(problem(run(&zip)), Problem::UnsafeSymlink { .. }));
}

#[test]
fn link_chains_through_directories_are_still_found() {
    // `a/b/c` is a link; an entry far below it, reached with `..` detours, goes through it.
    let zip = ZipBuilder::new()
        .symlink("a/b/c", "../x")
        .file("a/b/x/../c/./d/e", b"")
        .build();
    assert_eq!(problem(run(&zip)), unsafe_path("a/b/x/../c/./d/e"));
    // A link named with detours is the same link.
    let zip = ZipBuilder::new()
        .symlink("a/./q/../b//c", "../x")
        .file("a\\b\\c\\d", b"")
        .build();
    assert_eq!(problem(run(&zip)), unsafe_path("a\\b\\c\\d"));
}

// ---------------------------------------------------------------------------------------
// The fuzzer's crafted seeds, written by another zip implementation.

fn seed(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/{name}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/zip_check")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("seed {path}: {e}"))
}

#[test]
fn crafted_seeds_pass_or_fail_as_meant() {
    for name in ["symlinks.zip", "zip64.zip", "descriptors.zip", "sfx.zip"] {
        let zip = seed(name);
        run(&zip).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(stream(&zip, || 1).is_ok(), "{name}");
    }
    assert_eq!(
        problem(run(&seed("local_name_mismatch.zip"))),
        mismatch("../../pwned.txt", 0, LocalField::Name)
    );
    assert_eq!(
        problem(run(&seed("escaping_symlink.zip"))),
        unsafe_symlink("l", "../../etc/passwd")
    );
}

#[test]
fn deflate_stream_ending_before_its_compressed_size_fails() {
    // With flag bit 3 a streaming unpacker inflates to find the end of the data, then reads
    // a data descriptor and the next header: here a hidden `../../evil` the central
    // directory counts as part of the first entry's compressed data.
    let hidden = ZipBuilder::new()
        .file("../../evil", b"gotcha")
        .build_parts();
    let mut descriptor = 0x0807_4b50u32.to_le_bytes().to_vec();
    descriptor.extend_from_slice(&[0; 12]);
    let mut smuggler = TestEntry::file("innocent.txt", "hello")
        .with_local(|l| l.descriptor = Some(Descriptor::Signed));
    smuggler.deflate = true;
    smuggler.stored_suffix = [descriptor, hidden.bytes[..hidden.cd_offset].to_vec()].concat();
    let zip = ZipBuilder::new().entry(smuggler).file("b", b"x").build();
    assert_eq!(
        problem(run(&zip)),
        mismatch("innocent.txt", 0, LocalField::CompressedData)
    );
    assert_eq!(
        stream(&zip, || 1),
        Err(mismatch("innocent.txt", 0, LocalField::CompressedData))
    );

    // A stream that inflates to more than the central directory claims.
    let mut bomb = TestEntry::file("bomb", "z".repeat(10_000))
        .with_local(|l| l.descriptor = Some(Descriptor::Signed));
    bomb.deflate = true;
    bomb.claimed = Some(100);
    let zip = ZipBuilder::new().entry(bomb).build();
    let found = problem(run(&zip));
    assert!(
        matches!(
            &found,
            Problem::LocalHeaderMismatch {
                what: LocalField::CompressedData,
                ..
            }
        ),
        "{found:?}"
    );

    // Not a deflate stream at all.
    let mut garbage = TestEntry::file("g", "\u{ff}\u{ff}\u{ff}\u{ff}")
        .with_local(|l| l.descriptor = Some(Descriptor::Signed));
    garbage.method = Some(8);
    let zip = ZipBuilder::new().entry(garbage).build();
    assert_eq!(
        problem(run(&zip)),
        mismatch("g", 0, LocalField::CompressedData)
    );
}
