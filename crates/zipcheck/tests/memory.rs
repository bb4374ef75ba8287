//! The check's heap use must not grow with what an archive can inflate at will (name
//! lengths, link depth), only with the number of entries and links, a few tens of bytes
//! each. A counting allocator measures the peak heap in use during the check.

// A global allocator can only be written with unsafe code; it is confined to this test.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{FILE_MODE, LINK_MODE, ZipWriter, verify};
use packages_zipcheck::Limits;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counters only observe sizes and never touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout as our caller gave, which the contract says is non-zero.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, as our caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` and `layout` come from an earlier allocation here, as our caller
        // guarantees, and `new_size` is valid for it by the same contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            grew(new_size);
            shrank(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;

/// `links` symlink entries, each in a directory of its own and `depth` components deep
/// (`00042/a/a/.../a/link`), pointing to a sibling, plus one file. Distinct first
/// components keep any per-directory bookkeeping from being shared between links.
fn links_archive(links: usize, depth: usize) -> Vec<u8> {
    let dir = "a/".repeat(depth);
    let mut zip = ZipWriter::new();
    zip.add(b"file", b"x", FILE_MODE);
    for i in 0..links {
        zip.add(
            format!("{i:06}/{dir}link").as_bytes(),
            b"sibling",
            LINK_MODE,
        );
    }
    zip.finish()
}

/// Peak heap in use while the whole archive is verified, beyond what was in use before,
/// and how long it took.
fn measure(zip: &[u8], limits: &Limits) -> (usize, Duration) {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let result = verify(zip, limits, 1 << 20);
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(result.is_ok(), "{result:?}");
    (peak, took)
}

fn limits(max_symlinks: u64) -> Limits {
    Limits {
        max_entries: max_symlinks + 1,
        max_symlinks,
        ..Limits::new(1 << 40)
    }
}

// One test, so nothing else allocates while it measures.
#[test]
fn heap_grows_with_links_not_with_their_names() {
    let mib = |bytes: usize| bytes as f64 / MIB as f64;
    let report = |what: &str, zip: &[u8], limits: &Limits| {
        let (peak, took) = measure(zip, limits);
        println!(
            "{what}: archive {:.1} MiB, peak heap {:.2} MiB, {took:?}",
            mib(zip.len()),
            mib(peak)
        );
        peak
    };

    // The archive that took 27 times its size before (268 MiB for 10 MiB): 10,000 links,
    // ~500-byte names of 247 components each.
    let hostile = links_archive(10_000, 245);
    let peak = report("10,000 links, 500-byte names", &hostile, &limits(10_000));
    assert!(peak < 8 * MIB, "peak {peak} bytes");
    drop(hostile);

    // Names 300 times longer (2 MiB of them in all) take no more memory, but for the read
    // caches, which grow to 1 MiB with a larger directory.
    let short = links_archive(500, 1);
    let peak_short = report("500 links, 14-byte names", &short, &limits(500));
    drop(short);
    let long = links_archive(500, 2000);
    let peak_long = report("500 links, 4,000-byte names", &long, &limits(500));
    drop(long);
    assert!(
        peak_long < peak_short + 2 * MIB,
        "{peak_long} against {peak_short}"
    );

    // Ten times the links: linear in links, a few tens of bytes each.
    let many = links_archive(100_000, 1);
    let peak_many = report("100,000 links, 14-byte names", &many, &limits(100_000));
    assert!(peak_many < 16 * MIB, "peak {peak_many} bytes");
    let per_link = peak_many.saturating_sub(peak) / 90_000;
    println!("about {per_link} bytes per additional link");
    assert!(per_link < 100, "{per_link} bytes per additional link");
    drop(many);

    // A chain of 1,000 links, each a directory deeper than the last and pointing to the
    // previous one (`d/d/l2 -> ../l1`, `d/l1 -> ../l0`).
    let mut zip = ZipWriter::new();
    zip.add(b"l0", b"x", FILE_MODE);
    let mut dir = String::new();
    for i in 1..=1000 {
        dir.push_str("d/");
        let target = format!("../l{}", i - 1);
        zip.add(
            format!("{dir}l{i}").as_bytes(),
            target.as_bytes(),
            LINK_MODE,
        );
    }
    let chain = zip.finish();
    let peak_chain = report("1,000-link chain, up to 1,000 deep", &chain, &limits(1_000));
    assert!(peak_chain < 8 * MIB, "peak {peak_chain} bytes");
}
