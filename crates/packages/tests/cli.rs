//! The binaries' command lines and exit codes, as operators meet them: bad configuration
//! stops start-up with one line on stderr and exit code 2, a failure at run time (a
//! database out of reach, a port taken) with exit code 1.
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
    one_line_failure(out, 2)
}

fn one_line_failure(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
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
    let err = one_line_failure(&run(API, &[], &env), 1);
    assert!(err.contains("database"), "{err}");
}

#[test]
fn a_taken_port_is_a_runtime_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = one_line_failure(
        &run(
            PACKAGES,
            &[],
            &[
                ("PACKAGES__SERVER__BIND", addr.as_str()),
                ("PACKAGES__AUTH__JWT_SECRET", SECRET),
            ],
        ),
        1,
    );
    assert!(err.contains("server.bind"), "{err}");
}

#[test]
fn the_command_line_wins_over_packages_config() {
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good.toml"), dir.path().join("bad.toml"));
    std::fs::write(&bad, "[server]\nbnd = 2\n").unwrap();
    std::fs::write(&good, "[server]\nbind = \"not-an-address\"\n").unwrap();
    // The file named on the command line is the one read: its own error shows.
    let err = one_line_error(&run(
        PACKAGES,
        &["--config", good.to_str().unwrap()],
        &[("PACKAGES_CONFIG", bad.to_str().unwrap())],
    ));
    assert!(
        err.contains("server.bind") && !err.contains("server.bnd"),
        "{err}"
    );
    // An empty PACKAGES_CONFIG is a usage error, like an empty --config.
    let out = run(PACKAGES, &[], &[("PACKAGES_CONFIG", "")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn every_binary_tells_its_version_and_what_it_is() {
    for binary in [PACKAGES, API, WORKER] {
        let name = std::path::Path::new(binary)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let out = run(binary, &["--version"], &[]);
        assert!(out.status.success(), "{name} --version");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
        let out = run(binary, &["--help"], &[]);
        assert!(out.status.success(), "{name} --help");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let about = help.lines().next().unwrap_or_default();
        assert!(about.contains("package store"), "{name}: {help}");
        assert!(help.contains("[env: PACKAGES_CONFIG="), "{name}: {help}");
        assert!(help.contains("migrate"), "{name}: {help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for binary in [PACKAGES, API, WORKER] {
        let out = run(binary, &["--no-such-flag"], &[]);
        assert_eq!(out.status.code(), Some(2), "{binary}");
        let out = run(binary, &["no-such-command"], &[]);
        assert_eq!(out.status.code(), Some(2), "{binary}");
    }
}

#[test]
fn migrate_creates_the_schema_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("migrated.db");
    let url = format!("sqlite://{}", db.display());
    for binary in [PACKAGES, WORKER] {
        // Twice each: migrating a migrated database changes nothing and succeeds.
        let out = run(
            binary,
            &["migrate"],
            &[("PACKAGES__DATABASE__URL", url.as_str())],
        );
        assert!(
            out.status.success(),
            "{binary}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("database migrated (sqlite)"));
    }
    let tables = std::fs::read(&db).unwrap();
    // The file holds the schema: SQLite stores each table's CREATE statement as text.
    let text = String::from_utf8_lossy(&tables);
    assert!(text.contains("CREATE TABLE packages"), "no packages table");
    assert!(
        text.contains("__diesel_schema_migrations"),
        "no migration record"
    );
    // Nothing but the database was created: no server ran, no secret was generated.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.to_string_lossy().starts_with("migrated.db")),
        "{names:?}"
    );
}

/// On PostgreSQL, `packages-api migrate` is what a Kubernetes Job runs before the API.
#[test]
fn migrate_runs_on_postgres() {
    let Ok(server) = std::env::var("PACKAGES_TEST_POSTGRES_URL") else {
        eprintln!(
            "SKIPPED migrate_runs_on_postgres: PACKAGES_TEST_POSTGRES_URL is not set (make test sets it)"
        );
        return;
    };
    let name = format!("pkgtest_migrate_{}", std::process::id());
    let admin = run_sql(&server, &format!("CREATE DATABASE {name}"));
    assert!(admin, "cannot create a database on {server}");
    let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
    let out = run(
        API,
        &["migrate"],
        &[("PACKAGES__DATABASE__URL", url.as_str())],
    );
    let ok = out.status.success();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    run_sql(&server, &format!("DROP DATABASE IF EXISTS {name}"));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("database migrated (postgres)"), "{stdout}");
}

/// Runs one statement through psql; whether it succeeded.
fn run_sql(url: &str, sql: &str) -> bool {
    Command::new("psql")
        .args([url, "-q", "-c", sql])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
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
