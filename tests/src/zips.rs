//! Zips for tests: Cloud Controller's fixtures, small hand-built archives (including
//! hostile ones), and large archives written to disk without holding them in memory.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use sha1::Digest;

/// One of Cloud Controller's own fixtures (`tests/fixtures/cloud-controller`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/cloud-controller")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// An entry of a hand-built zip (stored, not compressed).
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub name: String,
    pub data: Vec<u8>,
    /// A Unix symlink whose target is `data`.
    pub symlink: bool,
    /// The uncompressed size the central directory claims, if not the real one (bombs).
    pub claimed_size: Option<u32>,
    /// The name the local header gives, if not the central directory's (a zip that means
    /// one thing to central-directory readers and another to streaming ones).
    pub local_name: Option<String>,
}

impl Entry {
    pub fn file(name: &str, data: &[u8]) -> Entry {
        Entry {
            name: name.into(),
            data: data.to_vec(),
            ..Entry::default()
        }
    }

    pub fn symlink(name: &str, target: &str) -> Entry {
        Entry {
            name: name.into(),
            data: target.as_bytes().to_vec(),
            symlink: true,
            ..Entry::default()
        }
    }
}

fn u16le(v: usize) -> [u8; 2] {
    u16::try_from(v).unwrap().to_le_bytes()
}

fn u32le(v: u64) -> [u8; 4] {
    u32::try_from(v).unwrap().to_le_bytes()
}

/// A zip of stored entries, as `zip -0` would write it.
pub fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u64;
        let crc = crc32fast::hash(&e.data);
        let size = e.data.len() as u64;
        let claimed = e.claimed_size.map_or(size, u64::from);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&u32le(size));
        out.extend_from_slice(&u32le(claimed));
        let local_name = e.local_name.as_deref().unwrap_or(&e.name);
        out.extend_from_slice(&u16le(local_name.len()));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(local_name.as_bytes());
        out.extend_from_slice(&e.data);

        let mode: u32 = if e.symlink { 0o120777 } else { 0o100644 };
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&u32le(size));
        central.extend_from_slice(&u32le(claimed));
        central.extend_from_slice(&u16le(e.name.len()));
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&u32le(offset));
        central.extend_from_slice(e.name.as_bytes());
    }
    let cd_offset = out.len() as u64;
    let cd_size = central.len() as u64;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&u16le(entries.len()));
    out.extend_from_slice(&u16le(entries.len()));
    out.extend_from_slice(&u32le(cd_size));
    out.extend_from_slice(&u32le(cd_offset));
    out.extend_from_slice(&[0, 0]);
    out
}

/// A small valid app zip with some distinct content.
pub fn small_app(marker: &str) -> Vec<u8> {
    zip(&[
        Entry::file("index.html", format!("<h1>{marker}</h1>").as_bytes()),
        Entry::file("lib/app.js", b"console.log('hi')"),
    ])
}

/// Writes a zip with one stored entry of `size` incompressible bytes, streaming (the
/// local header's CRC is patched in afterwards). Returns the archive's SHA-1.
pub fn write_large_zip(path: &Path, size: u64) -> String {
    use rand::RngCore;
    let name = b"blob.bin";
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut header = Vec::new();
    header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    header.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    header.extend_from_slice(&[0, 0, 0, 0]); // CRC, patched below
    header.extend_from_slice(&u32le(size));
    header.extend_from_slice(&u32le(size));
    header.extend_from_slice(&u16le(name.len()));
    header.extend_from_slice(&[0, 0]);
    header.extend_from_slice(name);
    file.write_all(&header).unwrap();
    let mut crc = crc32fast::Hasher::new();
    let mut rng = rand::rng();
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap();
        rng.fill_bytes(&mut chunk[..n]);
        crc.update(&chunk[..n]);
        file.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    let crc = crc.finalize();
    let cd_offset = header.len() as u64 + size;
    let mut central = Vec::new();
    central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    central.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    central.extend_from_slice(&crc.to_le_bytes());
    central.extend_from_slice(&u32le(size));
    central.extend_from_slice(&u32le(size));
    central.extend_from_slice(&u16le(name.len()));
    central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
    central.extend_from_slice(&[0, 0, 0, 0]);
    central.extend_from_slice(name);
    let cd_size = central.len() as u64;
    file.write_all(&central).unwrap();
    let mut end = Vec::new();
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    end.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    end.extend_from_slice(&u32le(cd_size));
    end.extend_from_slice(&u32le(cd_offset));
    end.extend_from_slice(&[0, 0]);
    file.write_all(&end).unwrap();
    let mut file = file.into_inner().unwrap();
    file.seek(SeekFrom::Start(14)).unwrap();
    file.write_all(&crc.to_le_bytes()).unwrap();
    file.sync_all().unwrap();
    drop(file);
    sha1_of_file(path)
}

/// One file of a zip written by [`write_random_files_zip`].
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub name: String,
    pub sha1: String,
    pub size: u64,
}

/// Writes a zip of `count` stored files of `size` incompressible bytes each
/// (`file-00000.bin`, …), streaming, each local header's CRC patched in afterwards.
/// Returns the files' names, SHA-1s and sizes. Keeps to 32-bit sizes and offsets.
pub fn write_random_files_zip(path: &Path, count: usize, size: u64) -> Vec<WrittenFile> {
    use rand::RngCore;
    let mut file = std::fs::File::create(path).unwrap();
    let mut rng = rand::rng();
    let mut chunk = vec![0u8; 1 << 20];
    let mut written = Vec::with_capacity(count);
    let mut central = Vec::new();
    let mut offset = 0u64;
    let mut crc_positions = Vec::with_capacity(count);
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut file);
        for i in 0..count {
            let name = format!("file-{i:05}.bin");
            let mut header = Vec::new();
            header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            header.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            header.extend_from_slice(&[0, 0, 0, 0]); // CRC, patched below
            header.extend_from_slice(&u32le(size));
            header.extend_from_slice(&u32le(size));
            header.extend_from_slice(&u16le(name.len()));
            header.extend_from_slice(&[0, 0]);
            header.extend_from_slice(name.as_bytes());
            out.write_all(&header).unwrap();
            let mut crc = crc32fast::Hasher::new();
            let mut sha1 = sha1::Sha1::new();
            let mut left = size;
            while left > 0 {
                let n = usize::try_from(left.min(chunk.len() as u64)).unwrap();
                rng.fill_bytes(&mut chunk[..n]);
                crc.update(&chunk[..n]);
                sha1.update(&chunk[..n]);
                out.write_all(&chunk[..n]).unwrap();
                left -= n as u64;
            }
            let crc = crc.finalize();
            crc_positions.push((offset + 14, crc));
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&u32le(size));
            central.extend_from_slice(&u32le(size));
            central.extend_from_slice(&u16le(name.len()));
            central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
            central.extend_from_slice(&u32le(offset));
            central.extend_from_slice(name.as_bytes());
            offset += header.len() as u64 + size;
            written.push(WrittenFile {
                name,
                sha1: hex::encode(sha1.finalize()),
                size,
            });
        }
        out.write_all(&central).unwrap();
        let entries = u16::try_from(count).unwrap_or(u16::MAX);
        let mut end = Vec::new();
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&[0, 0, 0, 0]);
        end.extend_from_slice(&entries.to_le_bytes());
        end.extend_from_slice(&entries.to_le_bytes());
        end.extend_from_slice(&u32le(central.len() as u64));
        end.extend_from_slice(&u32le(offset));
        end.extend_from_slice(&[0, 0]);
        out.write_all(&end).unwrap();
        out.flush().unwrap();
    }
    for (position, crc) in crc_positions {
        file.seek(SeekFrom::Start(position)).unwrap();
        file.write_all(&crc.to_le_bytes()).unwrap();
    }
    file.sync_all().unwrap();
    written
}

pub fn sha1_of_file(path: &Path) -> String {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(bytes))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}
