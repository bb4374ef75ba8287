//! The harness of the black-box tests: starts the real service and talks to it over
//! HTTP. The same test cases run on the embedded default and on the production stack;
//! see [`service`].
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod client;
pub mod proxy;
pub mod raw;
pub mod service;
pub mod zips;

pub use client::{ADMIN, Ctx, READ_WRITE, Reply, metric};
pub use service::{Mode, Options, S3Server, Service, mode};

/// Fails the test unless it runs on `backend`: files of tests for one backend only are
/// left out of the other backend's run by `make test`, never skipped silently.
pub fn require(backend: Mode) {
    assert_eq!(
        mode(),
        backend,
        "this test is for the {backend:?} backend only (see the Makefile)"
    );
}

/// Blob key of a package's bits (`gu/id/guid`).
pub fn blob_key(guid: &str) -> String {
    let key = guid.to_lowercase();
    format!("{}/{}/{key}", &key[..2], &key[2..4])
}

/// Peak resident memory (VmHWM) of a process, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Temporary files under a local blobstore's `.tmp`, in any session directory, leaving
/// out the sessions' lock files.
pub fn temporary_files(tmp: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(temporary_files(&path));
        } else if !path.ends_with("lock") {
            found.push(path);
        }
    }
    found
}
