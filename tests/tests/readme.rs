//! The README is the front door: its curl session works as written, and its
//! configuration table lists every key with its default.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use packages_tests::Service;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// The shell block that follows `marker`.
fn session(marker: &str) -> String {
    let text = readme();
    let after = text.split_once(marker).expect("session marker").1;
    let start = after.find("```sh\n").unwrap() + "```sh\n".len();
    let end = after[start..].find("```").unwrap();
    after[start..start + end].to_owned()
}

/// Runs a README session against a fresh service, bounded in time; returns its stdout.
async fn run_session(marker: &str) -> String {
    let svc = Service::start().await;
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("packages");
    let script = session(marker)
        .replace("API=http://127.0.0.1:8080", &format!("API={}", svc.base))
        .replace("./target/release/packages", &bin.display().to_string());
    let work = tempfile::tempdir().unwrap();
    // Bounded: a session that hangs (a dead service, a poll that never ends) fails the
    // test instead of holding `make test`.
    let out = Command::new("timeout")
        .args([
            "--kill-after=10",
            "300",
            "bash",
            "-euo",
            "pipefail",
            "-c",
            &script,
        ])
        .current_dir(work.path())
        .env("PACKAGES__AUTH__JWT_SECRET", &svc.secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        svc.logs()
    );
    stdout
}

#[tokio::test]
async fn the_curl_session_works_as_written() {
    let stdout = run_session("<!-- readme-session -->").await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"PROCESSING_UPLOAD"), "{stdout}");
    assert!(lines.contains(&"READY"), "{stdout}");
    let sums: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("/tmp/demo-app"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(sums.len(), 2, "{stdout}");
    assert_eq!(
        sums[0], sums[1],
        "downloaded bits differ from the uploaded zip"
    );
}

#[tokio::test]
async fn the_ga_curl_session_works_as_written() {
    let stdout = run_session("<!-- readme-ga-session -->").await;
    let lines: Vec<&str> = stdout.lines().collect();
    // Both packages became READY, the second through the pool.
    assert_eq!(
        lines.iter().filter(|l| **l == "READY").count(),
        2,
        "{stdout}"
    );
    assert!(lines.contains(&"PROCESSING_UPLOAD"), "{stdout}");
    assert!(
        lines.contains(&r#"{"env":"demo","release":"stable"}"#),
        "{stdout}"
    );
    // The selector found exactly the labelled package: one guid line.
    let guids: Vec<&&str> = lines
        .iter()
        .filter(|l| uuid::Uuid::parse_str(l).is_ok())
        .collect();
    assert_eq!(guids.len(), 1, "{stdout}");
    assert!(lines.contains(&"lib/big.jar"), "{stdout}");
    assert!(lines.contains(&"2"), "{stdout}");
    let pool = lines
        .iter()
        .find_map(|l| l.strip_prefix("pool: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let (from_pool, sent) = pool.split_once(" sent: ").unwrap();
    assert_eq!(
        from_pool, sent,
        "the assembled package changed the pooled file"
    );
}

#[test]
fn the_configuration_table_lists_every_key_and_default() {
    let text = readme();
    for (key, default, _) in packages_config::KEYS {
        let cell = if matches!(*default, "none" | "number of cores") {
            (*default).to_owned()
        } else {
            format!("`{default}`")
        };
        let row = format!("| `{key}` | {cell} |");
        assert!(
            text.contains(&row),
            "README lacks the row for {key} ({row})"
        );
    }
}

#[tokio::test]
async fn the_direct_upload_session_works_as_written() {
    let stdout = run_session("<!-- readme-direct-session -->").await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"PROCESSING_UPLOAD"), "{stdout}");
    assert!(lines.contains(&"READY"), "{stdout}");
    let sums: Vec<&str> = lines
        .iter()
        .filter(|l| l.ends_with(" -"))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(sums.len(), 2, "{stdout}");
    assert_eq!(sums[0], sums[1], "downloaded bits differ from the zip");
}
