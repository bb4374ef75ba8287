//! The binaries' command lines and exit codes, as operators meet them: bad configuration
//! stops start-up with one line on stderr and a non-zero exit.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("PACKAGES_") {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .unwrap()
}

fn one_line_error(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit code; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

/// A secret long enough to be accepted (32 bytes or more).
const SECRET: &str = "a-secret-that-is-long-enough-0123";

const PACKAGES: &str = env!("CARGO_BIN_EXE_packages");
const API: &str = env!("CARGO_BIN_EXE_packages-api");
const WORKER: &str = env!("CARGO_BIN_EXE_packages-worker");

#[test]
fn unknown_keys_and_bad_values_stop_start_up() {
    let err = one_line_error(&run(PACKAGES, &[], &[("PACKAGES__SERVER__BND", "x")]));
    assert!(err.contains("server.bnd"), "{err}");
    let err = one_line_error(&run(
        API,
        &[],
        &[("PACKAGES__SERVER__BIND", "not-an-address")],
    ));
    assert!(err.contains("server.bind"), "{err}");
    let err = one_line_error(&run(
        WORKER,
        &[],
        &[("PACKAGES__DATABASE__URL", "mysql://x")],
    ));
    assert!(err.contains("database.url"), "{err}");
    let err = one_line_error(&run(PACKAGES, &["--config", "/no/such/file.toml"], &[]));
    assert!(err.contains("/no/such/file.toml"), "{err}");
}

#[test]
fn a_config_file_is_read_and_its_unknown_keys_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("packages.toml");
    std::fs::write(&file, "[server]\nbind = \"127.0.0.1:1\"\nbnd = 2\n").unwrap();
    let err = one_line_error(&run(PACKAGES, &["--config", file.to_str().unwrap()], &[]));
    assert!(err.contains("server.bnd"), "{err}");
    let out = run(
        PACKAGES,
        &[],
        &[("PACKAGES_CONFIG", file.to_str().unwrap())],
    );
    assert!(one_line_error(&out).contains("server.bnd"));
}

#[test]
fn the_split_binaries_need_a_broker_and_a_secret() {
    let err = one_line_error(&run(API, &[], &[("PACKAGES__AUTH__JWT_SECRET", SECRET)]));
    assert!(err.contains("queue.url"), "{err}");
    let err = one_line_error(&run(
        API,
        &["token", "--user", "u", "--scopes", "cloud_controller.admin"],
        &[],
    ));
    assert!(err.contains("auth.jwt_secret"), "{err}");
}

#[test]
fn short_secrets_stop_start_up() {
    for binary in [PACKAGES, API, WORKER] {
        let err = one_line_error(&run(binary, &[], &[("PACKAGES__AUTH__JWT_SECRET", "s")]));
        assert!(
            err.contains("auth.jwt_secret: must be at least 32 bytes long, got 1"),
            "{err}"
        );
    }
    // Minting a token with one is refused too.
    let err = one_line_error(&run(
        PACKAGES,
        &["token", "--user", "u", "--scopes", "cloud_controller.admin"],
        &[("PACKAGES__AUTH__JWT_SECRET", "short")],
    ));
    assert!(err.contains("auth.jwt_secret"), "{err}");
}

#[test]
fn a_proxy_upload_root_without_its_secret_stops_start_up() {
    let err = one_line_error(&run(
        PACKAGES,
        &[],
        &[("PACKAGES__UPLOAD__BITS_PATH_ROOT", "/srv/uploads")],
    ));
    assert!(
        err.contains("upload.bits_path_root: requires upload.proxy_secret"),
        "{err}"
    );
}

#[test]
fn an_unreachable_database_stops_start_up() {
    let env = [
        (
            "PACKAGES__DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/none",
        ),
        ("PACKAGES__QUEUE__URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
        ("PACKAGES__AUTH__JWT_SECRET", SECRET),
    ];
    let err = one_line_error(&run(API, &[], &env));
    assert!(err.contains("database"), "{err}");
}

#[test]
fn tokens_are_minted_for_the_configured_secret() {
    let out = run(
        API,
        &[
            "token",
            "--user",
            "u-1",
            "--scopes",
            "cloud_controller.read,cloud_controller.write",
        ],
        &[("PACKAGES__AUTH__JWT_SECRET", SECRET)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3);
    let payload = payload_json(token);
    assert!(payload.contains("\"user_id\":\"u-1\""), "{payload}");
    assert!(payload.contains("cloud_controller.write"), "{payload}");
}

/// The token's payload, decoded without a JWT library.
fn payload_json(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn help_describes_the_commands() {
    let out = run(PACKAGES, &["--help"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--config") && text.contains("token"),
        "{text}"
    );
}

#[test]
fn a_first_start_without_a_secret_generates_one_and_says_how_to_mint_a_token() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(PACKAGES);
    for (key, _) in std::env::vars() {
        if key.starts_with("PACKAGES_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .env("PACKAGES__SERVER__BIND", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut mint = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("export TOKEN=$(") {
            mint = Some(rest.trim_end_matches(')').to_owned());
        }
        if line.contains("started") {
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM ends the process cleanly");

    let secret = dir.path().join("data/jwt-secret");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the secret is readable by its owner only");
    let mint = mint.expect("the start-up output shows the command that mints an admin token");
    assert!(mint.contains("--scopes cloud_controller.admin"), "{mint}");
    // The printed command works as printed, from the same directory.
    let out = Command::new("sh")
        .args(["-c", &mint])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(payload_json(token.trim()).contains("cloud_controller.admin"));
}
