//! Prints the memory an S3 writer needs for a large blob. Kept in its own test binary
//! so no other test shares the process whose peak it reads. It reports, it does not
//! assert: the number depends on the allocator and the server.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::{MIB, fresh_store};
use packages_blobstore::{Blobstore, S3Settings};

/// `VmHWM` (peak) and `VmRSS` (current) of this process, in KiB.
fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

#[tokio::test]
async fn peak_memory_of_a_256_mib_upload() {
    const TOTAL: usize = 256 * MIB;
    let part_size = S3Settings::DEFAULT_PART_SIZE;
    let (store, _) = fresh_store(part_size).await;
    let chunk = Bytes::from(common::data(64 * 1024, 7));

    // Lets VmHWM start from the current footprint rather than from startup.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = memory_kib();
    let started = Instant::now();
    let mut writer = store.writer("memory/big").await.unwrap();
    for _ in 0..TOTAL / chunk.len() {
        writer.write(chunk.clone()).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), TOTAL as u64);
    let elapsed = started.elapsed();
    let after = memory_kib();
    assert_eq!(store.size("memory/big").await.unwrap(), Some(TOTAL as u64));
    store.delete("memory/big").await.unwrap();

    match (before, after) {
        (Some((_, rss_before)), Some((peak, _))) => println!(
            "S3 writer, 256 MiB in 64 KiB chunks, part size {} MiB: peak RSS {} MiB, \
             {} MiB above the start ({:.1?}, {:.0} MiB/s)",
            part_size / MIB,
            peak / 1024,
            peak.saturating_sub(rss_before) / 1024,
            elapsed,
            256.0 / elapsed.as_secs_f64()
        ),
        _ => println!("no /proc/self/status here; memory not measured"),
    }
}
