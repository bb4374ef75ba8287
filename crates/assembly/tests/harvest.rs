//! Lists, hashes and reads the resource pool's files from zips written by the `zip` crate
//! (passed by zipcheck's full checks first, as the worker's zips are), comparing with the
//! SHA-1s of the original contents.

use std::cell::Cell;
use std::io::{self, Cursor, Read, Write};

use packages_assembly::{
    Candidate, Compression, Corruption, HarvestError, ReadAt, StreamHasher, hash_candidates,
    open_candidate, pool_candidates,
};
use packages_zipcheck::{Limits, check};
use sha1::{Digest, Sha1};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

fn sha1_hex(data: &[u8]) -> String {
    format!("{:x}", Sha1::digest(data))
}

fn options(method: CompressionMethod) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(method)
        .unix_permissions(0o644)
}

/// Bytes deflate cannot shrink (xorshift), so deflated they are stored blocks whose bytes
/// are the file's: flipping one changes the file, not the stream's structure.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn text(len: usize) -> Vec<u8> {
    "puts 'hello, world'\n"
        .bytes()
        .cycle()
        .take(len)
        .collect::<Vec<_>>()
}

/// Runs the checks an upload passes: central directory, then the local headers streamed.
fn verify(zip: &[u8]) {
    let checked = check(zip, &Limits::new(u64::MAX)).expect("central directory passes");
    let mut local = checked.local_headers;
    for piece in zip.chunks(64 * 1024) {
        local.update(piece).expect("local headers pass");
    }
    local.finish().expect("local headers pass to the end");
}

fn read_all(zip: &dyn ReadAt, candidate: &Candidate) -> Vec<u8> {
    let mut reader = open_candidate(zip, candidate).expect("opens");
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).expect("reads");
    bytes
}

/// Chunk sizes the streaming hasher is fed in: byte by byte, odd sizes that split every
/// header, and the whole zip at once (odd sizes also tap every file).
const CHUNKS: [usize; 6] = [1, 7, 4096, 65_536, 1 << 20, usize::MAX];

/// The hashes [`StreamHasher`] gives when `zip` streams past in `chunk`-sized pieces, in
/// the order `candidates` are given.
fn stream_hashes(
    zip: &[u8],
    candidates: &[Candidate],
    chunk: usize,
) -> Result<Vec<(String, u64)>, HarvestError> {
    // Every file is tapped on alternate runs: handing bytes out changes no hash, and what
    // is handed out is the file.
    let tap = chunk % 2 == 1;
    let mut hasher = StreamHasher::new(candidates.to_vec());
    hasher.tap(|_| tap);
    let mut files: Vec<Vec<u8>> = vec![Vec::new(); candidates.len()];
    for piece in zip.chunks(chunk.min(zip.len().max(1))) {
        let mut rest = piece;
        loop {
            hasher.feed_some(&mut rest, &mut |position, bytes| {
                assert!(bytes.len() <= 256 * 1024);
                files[position].extend_from_slice(bytes);
            })?;
            if rest.is_empty() {
                break;
            }
        }
    }
    let hashed = hasher.finish()?;
    // A stored file's range of the zip, as the pass found it, is the file.
    for (candidate, sha1, size) in &hashed {
        match (candidate.compression(), candidate.stored_bytes()) {
            (Compression::Stored, Some((start, len))) => {
                assert_eq!(len, *size);
                let bytes = usize::try_from(start)
                    .ok()
                    .zip(usize::try_from(start + len).ok())
                    .and_then(|(start, end)| zip.get(start..end))
                    .expect("the range lies in the zip");
                assert_eq!(sha1_hex(bytes), *sha1, "{}", candidate.name());
            }
            (Compression::Deflated, None) => {}
            (compression, span) => panic!("{compression:?} entry with stored bytes {span:?}"),
        }
    }
    if tap {
        for ((_, sha1, size), file) in hashed.iter().zip(&files) {
            assert_eq!(sha1_hex(file), *sha1, "tapped bytes are the file");
            assert_eq!(file.len() as u64, *size);
        }
    }
    Ok(candidates
        .iter()
        .map(|c| {
            let (_, sha1, size) = hashed
                .iter()
                .find(|(h, _, _)| h.offset() == c.offset())
                .expect("every candidate hashed");
            (sha1.clone(), *size)
        })
        .collect())
}

/// Checks every candidate against `expected` (name, contents, compression), in order:
/// hashed in one pass, and each read on its own, last first.
fn assert_harvest(zip: &[u8], candidates: &[Candidate], expected: &[(&str, &[u8], Compression)]) {
    let names: Vec<&str> = candidates.iter().map(Candidate::name).collect();
    let expected_names: Vec<&str> = expected.iter().map(|e| e.0).collect();
    assert_eq!(names, expected_names);
    let hashes = hash_candidates(&zip, candidates).expect("hashes");
    for chunk in CHUNKS {
        let streamed = stream_hashes(zip, candidates, chunk).expect("streamed hashes");
        assert_eq!(streamed, hashes, "fed in chunks of {chunk}");
    }
    for ((candidate, (sha1, size)), (name, contents, compression)) in
        candidates.iter().zip(&hashes).zip(expected)
    {
        assert_eq!(*sha1, sha1_hex(contents), "{name}");
        assert_eq!(*size, <[u8]>::len(contents) as u64, "{name}");
        assert_eq!(candidate.size(), <[u8]>::len(contents) as u64, "{name}");
        assert_eq!(candidate.compression(), *compression, "{name}");
    }
    for (candidate, (name, contents, _)) in candidates.iter().zip(expected).rev() {
        assert!(read_all(&zip, candidate) == *contents, "{name} reads back");
    }
}

#[test]
fn regular_files_within_the_size_window_are_candidates() {
    let (min, max) = (8, 200_000);
    let stored = noise(5000, 1);
    let deflated = text(max as usize);
    let deflated_noise = noise(150_000, 2);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.add_directory("dir/", options(CompressionMethod::Stored))
        .expect("dir");
    let files: [(&str, &[u8], CompressionMethod); 7] = [
        ("dir/tiny", b"1234567", CompressionMethod::Stored),
        ("dir/empty", b"", CompressionMethod::Deflated),
        ("exactly-min", b"12345678", CompressionMethod::Stored),
        ("stored.bin", &stored, CompressionMethod::Stored),
        ("app/exactly-max.rb", &deflated, CompressionMethod::Deflated),
        ("noise.bin", &deflated_noise, CompressionMethod::Deflated),
        (
            "too-big.rb",
            &text(max as usize + 1),
            CompressionMethod::Deflated,
        ),
    ];
    for (name, contents, method) in files {
        zip.start_file(name, options(method)).expect("start");
        zip.write_all(contents).expect("write");
    }
    // A link whose target's length is within the window.
    zip.add_symlink(
        "link",
        "app/exactly-max.rb",
        options(CompressionMethod::Stored),
    )
    .expect("symlink");
    let zip = zip.finish().expect("finish").into_inner();
    verify(&zip);

    let candidates = pool_candidates(&zip, min, max).expect("lists");
    assert_harvest(
        &zip,
        &candidates,
        &[
            ("exactly-min", b"12345678", Compression::Stored),
            ("stored.bin", &stored, Compression::Stored),
            ("app/exactly-max.rb", &deflated, Compression::Deflated),
            ("noise.bin", &deflated_noise, Compression::Deflated),
        ],
    );
    let exactly_max = &candidates[2];
    assert!(exactly_max.compressed_size() < exactly_max.size() / 10);
    assert_eq!(
        exactly_max.crc32(),
        crc32(&deflated),
        "the central directory's CRC-32"
    );
    assert!(exactly_max.offset() > candidates[1].offset());

    // An empty file is a file: a window from zero takes it.
    let from_zero = pool_candidates(&zip, 0, 7).expect("lists");
    let names: Vec<&str> = from_zero.iter().map(Candidate::name).collect();
    assert_eq!(names, ["dir/tiny", "dir/empty"]);
    let hashes = hash_candidates(&zip, &from_zero).expect("hashes");
    assert_eq!(hashes[1], (sha1_hex(b""), 0));
    assert!(read_all(&zip, &from_zero[1]).is_empty());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

#[test]
fn entries_with_data_descriptors_and_zip64_headers_are_read_too() {
    let stored = noise(70_000, 3);
    let deflated = text(100_000);
    let big_header = noise(90_000, 4);
    let mut zip = ZipWriter::new_stream(Vec::new());
    zip.start_file("streamed/stored.bin", options(CompressionMethod::Stored))
        .expect("start");
    zip.write_all(&stored).expect("write");
    zip.add_symlink(
        "streamed/link",
        "stored.bin",
        options(CompressionMethod::Stored),
    )
    .expect("symlink");
    zip.start_file("streamed/text.rb", options(CompressionMethod::Deflated))
        .expect("start");
    zip.write_all(&deflated).expect("write");
    zip.start_file(
        "streamed/zip64.bin",
        options(CompressionMethod::Deflated).large_file(true),
    )
    .expect("start");
    zip.write_all(&big_header).expect("write");
    let zip = zip.finish().expect("finish").into_inner();
    verify(&zip);

    let candidates = pool_candidates(&zip, 1, u64::MAX).expect("lists");
    assert_harvest(
        &zip,
        &candidates,
        &[
            ("streamed/stored.bin", &stored, Compression::Stored),
            ("streamed/text.rb", &deflated, Compression::Deflated),
            ("streamed/zip64.bin", &big_header, Compression::Deflated),
        ],
    );
}

/// A zip without comment or Zip64 records: each entry's central header and local header
/// offsets, by name.
fn headers(zip: &[u8], name: &str) -> (usize, usize) {
    let le32 = |at: usize| u32::from_le_bytes(zip[at..at + 4].try_into().expect("4 bytes"));
    let le16 = |at: usize| u16::from_le_bytes(zip[at..at + 2].try_into().expect("2 bytes"));
    let eocd = zip.len() - 22;
    assert_eq!(le32(eocd), 0x0605_4b50, "no comment, no Zip64");
    let mut pos = le32(eocd + 16) as usize;
    for _ in 0..le16(eocd + 10) {
        let name_len = le16(pos + 28) as usize;
        if &zip[pos + 46..pos + 46 + name_len] == name.as_bytes() {
            return (pos, le32(pos + 42) as usize);
        }
        pos += 46 + name_len + le16(pos + 30) as usize + le16(pos + 32) as usize;
    }
    panic!("{name} is missing")
}

/// Where `name`'s data starts.
fn data_start(zip: &[u8], name: &str) -> usize {
    let (_, local) = headers(zip, name);
    let le16 = |at: usize| u16::from_le_bytes(zip[at..at + 2].try_into().expect("2 bytes"));
    local + 30 + le16(local + 26) as usize + le16(local + 28) as usize
}

#[test]
fn entries_that_cannot_be_hashed_or_are_not_regular_files_are_skipped() {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for name in ["bzip2", "encrypted", "dir-by-type", "fifo", "dos", "plain"] {
        zip.start_file(name, options(CompressionMethod::Stored))
            .expect("start");
        zip.write_all(name.repeat(20).as_bytes()).expect("write");
    }
    let mut zip = zip.finish().expect("finish").into_inner();
    // Patched where both headers say it, so that zipcheck still passes the zip: it accepts
    // any method and encryption for files.
    let (central, local) = headers(&zip, "bzip2");
    zip[central + 10] = 12;
    zip[local + 8] = 12;
    let (central, local) = headers(&zip, "encrypted");
    zip[central + 8] |= 1;
    zip[local + 6] |= 1;
    let external = |zip: &mut Vec<u8>, name: &str, value: u32| {
        let (central, _) = headers(zip, name);
        zip[central + 38..central + 42].copy_from_slice(&value.to_le_bytes());
    };
    external(&mut zip, "dir-by-type", 0o040_755 << 16);
    external(&mut zip, "fifo", 0o010_644 << 16);
    // Made elsewhere than on Unix: no type bits, the DOS archive bit only.
    external(&mut zip, "dos", 0x20);
    verify(&zip);

    let candidates = pool_candidates(&zip, 0, u64::MAX).expect("lists");
    assert_harvest(
        &zip,
        &candidates,
        &[
            ("dos", "dos".repeat(20).as_bytes(), Compression::Stored),
            ("plain", "plain".repeat(20).as_bytes(), Compression::Stored),
        ],
    );
}

/// Hashing fails with `what` for the entry `name`, and so does reading it alone, through
/// an `io::Error` that says what happened.
fn assert_corrupt(zip: &[u8], name: &str, what: Corruption) {
    let candidates = pool_candidates(&zip, 0, u64::MAX).expect("lists");
    let err = hash_candidates(&zip, &candidates).expect_err("damaged");
    assert!(
        matches!(&err, HarvestError::Corrupt { name: n, what: w, .. } if n == name && *w == what),
        "{err}"
    );
    assert!(!err.is_transient());
    for chunk in CHUNKS {
        let err = stream_hashes(zip, &candidates, chunk).expect_err("damaged, streamed");
        assert!(
            matches!(&err, HarvestError::Corrupt { name: n, what: w, .. } if n == name && *w == what),
            "fed in chunks of {chunk}: {err}"
        );
    }

    let candidate = candidates
        .iter()
        .find(|c| c.name() == name)
        .expect("candidate");
    let mut reader = open_candidate(&zip, candidate).expect("opens");
    let io_err = io::copy(&mut reader, &mut io::sink()).expect_err("damaged");
    let err = HarvestError::from_read_error(io_err);
    assert!(
        matches!(&err, HarvestError::Corrupt { what: w, .. } if *w == what),
        "{err}"
    );
    // A failed stream does not pass for a complete one afterwards.
    assert!(reader.read(&mut [0; 16]).is_err());
}

#[test]
fn damaged_data_is_reported_never_hashed() {
    let stored = noise(50_000, 5);
    let deflated = noise(80_000, 6);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("stored.bin", options(CompressionMethod::Stored))
        .expect("start");
    zip.write_all(&stored).expect("write");
    zip.start_file("deflated.bin", options(CompressionMethod::Deflated))
        .expect("start");
    zip.write_all(&deflated).expect("write");
    zip.start_file("text.rb", options(CompressionMethod::Deflated))
        .expect("start");
    zip.write_all(&text(30_000)).expect("write");
    let zip = zip.finish().expect("finish").into_inner();
    let candidates = pool_candidates(&zip, 0, u64::MAX).expect("lists");
    assert_eq!(hash_candidates(&zip, &candidates).expect("hashes").len(), 3);

    // One byte of the data flipped: zipcheck cannot tell, the CRC-32 can.
    for name in ["stored.bin", "deflated.bin"] {
        let mut damaged = zip.clone();
        damaged[data_start(&zip, name) + 20_000] ^= 0x40;
        verify(&damaged);
        assert_corrupt(&damaged, name, Corruption::Crc);
    }

    // A deflate stream that inflates to more than its entry claims stops there.
    let mut longer = zip.clone();
    for at in [
        headers(&zip, "text.rb").0 + 24,
        headers(&zip, "text.rb").1 + 22,
    ] {
        longer[at..at + 4].copy_from_slice(&29_999u32.to_le_bytes());
    }
    verify(&longer);
    assert_corrupt(&longer, "text.rb", Corruption::Length);

    // A stream cut short by a shorter claimed compressed size.
    let mut cut = zip.clone();
    let (central, local) = headers(&zip, "text.rb");
    let compressed = u32::from_le_bytes(zip[central + 20..central + 24].try_into().expect("4"));
    for at in [central + 20, local + 18] {
        cut[at..at + 4].copy_from_slice(&(compressed - 10).to_le_bytes());
    }
    assert_corrupt(&cut, "text.rb", Corruption::Deflate);
}

/// Counts reads and the bytes they return.
struct Counting<'a> {
    inner: &'a [u8],
    reads: Cell<usize>,
    bytes: Cell<u64>,
    /// Reads of less than 64 KiB.
    small: Cell<usize>,
}

impl<'a> Counting<'a> {
    fn new(inner: &'a [u8]) -> Self {
        Self {
            inner,
            reads: Cell::new(0),
            bytes: Cell::new(0),
            small: Cell::new(0),
        }
    }

    fn reset(&self) {
        self.reads.set(0);
        self.bytes.set(0);
        self.small.set(0);
    }
}

impl ReadAt for Counting<'_> {
    fn len(&self) -> io::Result<u64> {
        Ok(self.inner.len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.reads.set(self.reads.get() + 1);
        if buf.len() < 64 * 1024 {
            self.small.set(self.small.get() + 1);
        }
        let n = self.inner.read_at(offset, buf)?;
        self.bytes.set(self.bytes.get() + n as u64);
        Ok(n)
    }
}

#[test]
fn the_zip_is_read_in_few_large_sequential_reads() {
    // Candidates of a few MiB with many small files between them, then a large file
    // outside the window between two small candidates.
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let blob = noise(3_000_000, 7);
    for i in 0..4 {
        let method = if i % 2 == 0 {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        zip.start_file(format!("blob{i}"), options(method))
            .expect("start");
        zip.write_all(&blob[i..]).expect("write");
        for j in 0..500 {
            zip.start_file(
                format!("small/{i}/{j:03}.txt"),
                options(CompressionMethod::Stored),
            )
            .expect("start");
            zip.write_all(b"x").expect("write");
        }
    }
    zip.start_file("before-gap", options(CompressionMethod::Stored))
        .expect("start");
    zip.write_all(&blob[..100_000]).expect("write");
    zip.start_file("too-big", options(CompressionMethod::Stored))
        .expect("start");
    zip.write_all(&noise(6_000_000, 8)).expect("write");
    zip.start_file("after-gap", options(CompressionMethod::Deflated))
        .expect("start");
    zip.write_all(&blob[..200_000]).expect("write");
    let zip = zip.finish().expect("finish").into_inner();
    let counting = Counting::new(&zip);

    let candidates = pool_candidates(&counting, 2, 5_000_000).expect("lists");
    assert_eq!(candidates.len(), 6);
    // The end records, then a directory of ~2,000 headers in one read.
    assert!(counting.reads.get() <= 3, "{} reads", counting.reads.get());

    counting.reset();
    let hashes = hash_candidates(&counting, &candidates).expect("hashes");
    assert_eq!(hashes[0], (sha1_hex(&blob), 3_000_000));
    assert_eq!(hashes[3], (sha1_hex(&blob[3..]), 2_999_997));
    assert_eq!(hashes[5], (sha1_hex(&blob[..200_000]), 200_000));
    // ~12 MiB of blobs and the small files between them in 4 MiB reads, then one read
    // on each side of the file outside the window, which is never fetched.
    assert!(counting.reads.get() <= 7, "{} reads", counting.reads.get());
    assert!(
        counting.bytes.get() < 12_500_000,
        "{} bytes read",
        counting.bytes.get()
    );
    // Only where a span ends may what is left of it be small.
    assert!(
        counting.small.get() <= 2,
        "{} small reads",
        counting.small.get()
    );

    // Alone, a file is read in as few reads, and nothing past it.
    counting.reset();
    let mut reader = open_candidate(&counting, &candidates[1]).expect("opens");
    let mut copied = Vec::new();
    reader.read_to_end(&mut copied).expect("reads");
    assert!(copied == blob[1..]);
    assert_eq!(counting.reads.get(), 1);
    assert!(counting.bytes.get() < candidates[1].compressed_size() + 1000);
}

#[test]
fn hashes_come_in_the_order_the_candidates_were_given() {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for name in ["a", "b", "c"] {
        zip.start_file(name, options(CompressionMethod::Deflated))
            .expect("start");
        zip.write_all(name.repeat(1000).as_bytes()).expect("write");
    }
    let zip = zip.finish().expect("finish").into_inner();
    let mut candidates = pool_candidates(&zip, 0, u64::MAX).expect("lists");
    candidates.reverse();
    let hashes = hash_candidates(&zip, &candidates).expect("hashes");
    let expected: Vec<(String, u64)> = ["c", "b", "a"]
        .iter()
        .map(|name| (sha1_hex(name.repeat(1000).as_bytes()), 1000))
        .collect();
    assert_eq!(hashes, expected);
    assert_eq!(
        stream_hashes(&zip, &candidates, 100).expect("streamed"),
        expected
    );

    let counting = Counting::new(&zip);
    assert!(hash_candidates(&counting, &[]).expect("nothing").is_empty());
    assert_eq!(counting.reads.get(), 0);
}

#[test]
fn a_file_that_is_not_a_zip_is_reported_as_such() {
    let err = pool_candidates(&b"not a zip at all, not even close".to_vec(), 0, u64::MAX)
        .expect_err("not a zip");
    assert!(matches!(err, HarvestError::InvalidZip(_)), "{err}");
    assert!(!err.is_transient());
}

#[test]
fn a_stream_that_ends_early_or_misses_a_header_is_refused() {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for name in ["a", "b"] {
        zip.start_file(name, options(CompressionMethod::Stored))
            .expect("start");
        zip.write_all(&noise(10_000, 9)).expect("write");
    }
    let zip = zip.finish().expect("finish").into_inner();
    let candidates = pool_candidates(&zip, 0, u64::MAX).expect("lists");

    let mut cut = StreamHasher::new(candidates.clone());
    cut.feed(&zip[..12_000]).expect("the first entry hashes");
    let err = cut.finish().expect_err("the second entry never came");
    assert!(matches!(err, HarvestError::InvalidZip(_)), "{err}");

    let second = candidates[1].offset() as usize;
    let mut moved = zip.clone();
    moved[second] ^= 0xff;
    let mut hasher = StreamHasher::new(candidates);
    let err = hasher.feed(&moved).expect_err("no local header");
    assert!(matches!(err, HarvestError::InvalidZip(_)), "{err}");
    // A refused stream stays refused.
    assert!(hasher.feed(&[]).is_err());
    assert!(hasher.finish().is_err());
}

#[test]
fn a_tapped_file_that_inflates_a_thousandfold_comes_out_in_bounded_pieces() {
    let zeros = vec![0u8; 8 << 20];
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("zeros.bin", options(CompressionMethod::Deflated))
        .expect("start");
    zip.write_all(&zeros).expect("write");
    let zip = zip.finish().expect("finish").into_inner();
    assert!(zip.len() < 64 * 1024, "{} bytes", zip.len());
    let candidates = pool_candidates(&zip, 0, u64::MAX).expect("lists");
    let mut hasher = StreamHasher::new(candidates);
    hasher.tap(|_| true);
    let (mut pieces, mut total) = (0, 0);
    let mut rest = zip.as_slice();
    while !rest.is_empty() {
        hasher
            .feed_some(&mut rest, &mut |_, bytes| {
                assert!(bytes.len() <= 256 * 1024, "{} bytes at once", bytes.len());
                pieces += 1;
                total += bytes.len();
            })
            .expect("feeds");
    }
    assert_eq!(total, zeros.len());
    assert!(pieces >= 32, "{pieces} pieces");
    let hashed = hasher.finish().expect("hashed");
    assert_eq!(hashed[0].1, sha1_hex(&zeros));
}
