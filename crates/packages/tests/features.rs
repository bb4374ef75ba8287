//! What `make run` compiles: `packages` without default features has no PostgreSQL
//! client library (libpq), RabbitMQ client or S3 client, so a Rust toolchain and a C
//! compiler are all it needs; the default build has all three.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

/// The packages `cargo` would build for `packages` with these feature flags.
fn dependencies(flags: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "packages",
            "--edges",
            "normal,build",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .args(flags)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

const PRODUCTION_CLIENTS: [&str; 4] = ["pq-sys", "lapin", "rust-s3", "p12-keystore"];

#[test]
fn the_embedded_build_compiles_no_production_client() {
    let embedded = dependencies(&["--no-default-features"]);
    for client in PRODUCTION_CLIENTS {
        assert!(
            !embedded.contains(client),
            "{client} is built by `make run`"
        );
    }
    // It still has what it runs on.
    for needed in ["libsqlite3-sys", "actix-web", "packages-runtime"] {
        assert!(embedded.contains(needed), "{needed} missing");
    }
    let full = dependencies(&[]);
    for client in PRODUCTION_CLIENTS {
        assert!(
            full.contains(client),
            "{client} missing from the default build"
        );
    }
    eprintln!(
        "packages: {} crates without default features, {} with",
        embedded.len(),
        full.len()
    );
}
