//! Runs the zip check on arbitrary bytes with small limits and, when the central directory
//! passes, streams the bytes through the local header verifier in three different
//! chunkings, which must agree. Nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use packages_zipcheck::{CheckError, Limits, LocalHeaders, Problem, check};

const LIMITS: Limits = Limits {
    max_uncompressed_bytes: 1 << 20,
    max_entries: 64,
    max_name_bytes: 256,
    max_symlinks: 16,
};

fn stream(mut local: LocalHeaders, data: &[u8], sizes: &[usize]) -> Result<(), Problem> {
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(size);
        local.update(chunk)?;
        rest = tail;
    }
    local.finish()
}

fuzz_target!(|data: &[u8]| {
    let first = match check(data, &LIMITS) {
        Ok(checked) => checked,
        Err(CheckError::Invalid(problem)) => {
            // Texts are shown to users: they must render.
            let _ = problem.to_string();
            return;
        }
        Err(CheckError::Io(e)) => panic!("reading a byte slice cannot fail: {e}"),
    };
    // Each check keys its hashes afresh, so three checks give three verifiers.
    let second = check(data, &LIMITS).expect("the same bytes pass again");
    let third = check(data, &LIMITS).expect("the same bytes pass again");
    assert_eq!(first.summary, second.summary);

    let whole = stream(first.local_headers, data, &[usize::MAX]);
    let bytewise = stream(second.local_headers, data, &[1]);
    let seed = data.len() ^ data.first().map_or(0, |&b| usize::from(b));
    let uneven = stream(third.local_headers, data, &[1 + seed % 7, 30, 3, 64 * 1024, 2]);
    assert_eq!(whole, bytewise);
    assert_eq!(whole, uneven);
});
