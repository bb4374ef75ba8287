//! `packages push` and `packages download`, run as a user runs them against the real
//! service: what a push zips (`.cfignore` and the cf CLI's defaults), that files the
//! resource pool holds are not sent again, the exit codes and texts of READY and FAILED
//! packages, uploads into an existing package, where the API and token come from (flags,
//! environment, the cf CLI's config), and downloads that hold exactly the package's bits;
//! all with plain output when stdout is not a terminal.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use packages_tests::zips::{self, Entry};
use packages_tests::{Mode, READ_WRITE, Service, metric};
use rand::RngCore;

fn packages_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PACKAGES_TEST_BIN_DIR") {
        return PathBuf::from(dir).join("packages");
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("packages")
}

/// Environment variables of a run.
type Env<'a> = Vec<(&'a str, &'a str)>;

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }

    /// Output for a file or a pipe: lines only, no carriage returns or escape sequences.
    fn assert_plain(&self) -> &Run {
        for text in [&self.stdout, &self.stderr] {
            assert!(
                !text.contains('\r') && !text.contains('\u{1b}'),
                "control characters in {self:#?}"
            );
        }
        self
    }

    fn says(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}: {self:#?}"
        );
        self
    }

    fn complains(&self, text: &str) -> &Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}: {self:#?}"
        );
        self
    }

    /// The guid and hashes a successful push prints last.
    fn pushed(&self) -> (String, String, String) {
        let value = |prefix: &str| {
            self.stdout
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line: {self:#?}"))
                .trim()
                .to_owned()
        };
        let guid = value("package ")
            .strip_suffix(" is READY")
            .unwrap_or_else(|| panic!("no READY line: {self:#?}"))
            .to_owned();
        (guid, value("sha1:"), value("sha256:"))
    }

    /// The package a push created (it prints that before anything can fail).
    fn created(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("created package "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("no package created: {self:#?}"))
            .to_owned()
    }
}

/// Runs `packages ARGS` with only `env` as its environment, `HOME` an empty directory
/// unless `env` says otherwise, in a fresh working directory; stdout and stderr are
/// pipes, as in CI.
async fn packages(args: &[&str], env: &[(&str, &str)]) -> Run {
    let work = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(packages_bin());
    command
        .env_clear()
        .env("HOME", work.path())
        .envs(env.iter().copied())
        .args(args)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("packages ran over 300 s")
        .unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // A client needs none of the server's setup: it wrote nothing where it ran (the
    // server would have generated `data/jwt-secret`).
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "files left by the client: {left:?}\n{run:#?}"
    );
    run
}

/// `packages push DIR --app APP --api … --token …`.
async fn push(svc: &Service, dir: &Path, app: &str, token: &str) -> Run {
    packages(
        &[
            "push",
            dir.to_str().unwrap(),
            "--app",
            app,
            "--api",
            &svc.base,
            "--token",
            token,
        ],
        &[],
    )
    .await
}

/// A directory holding `files`; a name ending in `/` is an empty directory.
fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        if name.ends_with('/') {
            std::fs::create_dir_all(&path).unwrap();
        } else {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
    }
    dir
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Every entry of a zip by name: its bytes (a link's target) and Unix mode.
fn read_zip(zip: &[u8]) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            let name = file.name().unwrap().into_owned();
            (name, (data, file.unix_mode().unwrap_or(0)))
        })
        .collect()
}

/// The package's bits, checked against its own SHA-1.
async fn bits(svc: &Service, guid: &str) -> Vec<u8> {
    let (_, bytes) = svc.download(guid, &svc.admin()).await;
    let bytes = bytes.expect("downloadable");
    let package = svc.package(guid).await;
    assert_eq!(package["data"]["hash"]["value"], zips::sha1_hex(&bytes));
    bytes
}

async fn developer(svc: &Service, space: &str) -> String {
    let user = format!("dev-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    svc.grant(&user, "space_developer", space).await;
    svc.token(&user, READ_WRITE)
}

#[tokio::test]
async fn push_zips_the_directory_as_the_cf_cli_does_and_prints_the_ready_package() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let token = developer(&svc, &ctx.space).await;
    let dir = tree(&[
        ("index.html", b"<h1>pushed</h1>"),
        ("lib/app.js", b"console.log(1)"),
        ("lib/deep/data.json", b"{}"),
        ("public/empty/", b""),
        // Left out by the .cfignore below.
        ("logs/debug.log", b"noise"),
        ("notes.tmp", b"scratch"),
        ("lib/cache.tmp", b"scratch"),
        (".cfignore", b"logs/\n*.tmp\n"),
        // Left out by the cf CLI's own rules, at any depth.
        (".git/HEAD", b"ref: refs/heads/main"),
        (".gitignore", b"target/"),
        ("manifest.yml", b"applications: []"),
        ("lib/.DS_Store", b"finder"),
        ("lib/.svn/entries", b"svn"),
    ]);
    std::os::unix::fs::symlink("index.html", dir.path().join("home.html")).unwrap();
    std::fs::set_permissions(
        dir.path().join("lib/app.js"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let run = push(&svc, dir.path(), &ctx.app, &token).await;
    run.assert_code(0).assert_plain();
    let (guid, sha1, sha256) = run.pushed();
    run.says(&format!("created package {guid} for app {}", ctx.app))
        .says("0 of 3 files (0 B) are in the resource pool already")
        // Nothing matched: the bits go to the direct-upload link.
        .says("to the direct-upload link")
        .says("upload: 100% (");

    let package = svc.package(&guid).await;
    assert_eq!(package["state"], "READY");
    assert_eq!(package["data"]["hash"]["value"], sha1.as_str());
    assert_eq!(package["data"]["checksum"]["value"], sha256.as_str());
    let listed = svc
        .get(&format!("/v3/apps/{}/packages", ctx.app), &svc.admin())
        .await
        .json();
    assert_eq!(listed["resources"][0]["guid"], guid.as_str(), "{listed}");

    let entries = read_zip(&bits(&svc, &guid).await);
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "home.html",
            "index.html",
            "lib/",
            "lib/app.js",
            "lib/deep/",
            "lib/deep/data.json",
            "public/",
            "public/empty/",
        ]
    );
    assert_eq!(entries["index.html"].0, b"<h1>pushed</h1>");
    assert_eq!(entries["lib/deep/data.json"].0, b"{}");
    assert_eq!(
        entries["lib/app.js"],
        (b"console.log(1)".to_vec(), 0o100755)
    );
    assert_eq!(entries["home.html"], (b"index.html".to_vec(), 0o120777));
}

#[tokio::test]
async fn files_the_resource_pool_holds_are_not_uploaded_again() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let token = svc.admin();
    // Over resource_pool.minimum_size (64 KiB): the first push puts it into the pool.
    let big = random_bytes(100_000);
    let first = tree(&[("big.bin", &big), ("readme.txt", b"first")]);
    let run = push(&svc, first.path(), &ctx.app, &token).await;
    run.assert_code(0)
        .assert_plain()
        .says("0 of 2 files (0 B) are in the resource pool already");

    // The same file at another path, next to a new one: only the new one is sent.
    let second = tree(&[("lib/big.bin", &big), ("other.txt", b"second")]);
    let sent_before = metric(&svc.metrics().await, "upload_bytes_total", &[]);
    let run = push(&svc, second.path(), &ctx.app, &token).await;
    let sent = metric(&svc.metrics().await, "upload_bytes_total", &[]) - sent_before;
    run.assert_code(0)
        .assert_plain()
        .says("1 of 2 files (97.66 KiB) are in the resource pool already")
        .says("with the upload request");
    assert!(
        sent > 0.0 && sent < 10_000.0,
        "the upload carried {sent} bytes, as if the pooled file had been sent"
    );
    let (guid, sha1, _) = run.pushed();
    let bytes = bits(&svc, &guid).await;
    assert_eq!(zips::sha1_hex(&bytes), sha1);
    let entries = read_zip(&bytes);
    assert_eq!(
        entries.keys().map(String::as_str).collect::<Vec<_>>(),
        ["lib/", "lib/big.bin", "other.txt"]
    );
    assert_eq!(entries["lib/big.bin"].0, big);
    assert_eq!(entries["other.txt"].0, b"second");

    // Everything pooled: no zip at all, the package is made from the pool.
    let third = tree(&[("big.bin", &big)]);
    let run = push(&svc, third.path(), &ctx.app, &token).await;
    run.assert_code(0)
        .assert_plain()
        .says("1 of 1 files (97.66 KiB) are in the resource pool already")
        .says("uploading nothing: the resource pool holds every file");
    let (guid, _, _) = run.pushed();
    let entries = read_zip(&bits(&svc, &guid).await);
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["big.bin"]);
    assert_eq!(entries["big.bin"].0, big);
}

#[tokio::test]
async fn a_failed_package_or_a_refused_request_exits_1_with_the_reason() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let token = svc.admin();
    let guid_of = |run: &Run| run.created();

    // No entries to zip: the service fails the package, the client says why.
    let empty = tempfile::tempdir().unwrap();
    let only_ignored = tree(&[(".git/HEAD", b"ref"), ("manifest.yml", b"x")]);
    for dir in [empty.path(), only_ignored.path()] {
        let run = push(&svc, dir, &ctx.app, &token).await;
        run.assert_code(1).assert_plain();
        let guid = guid_of(&run);
        run.complains(&format!(
            "packages: package {guid} FAILED: The zip provided was not valid\n"
        ));
        let package = svc.package(&guid).await;
        assert_eq!(package["state"], "FAILED");
        assert_eq!(package["data"]["error"], "The zip provided was not valid");
    }

    let app_dir = tree(&[("index.html", b"hi")]);
    let dir = app_dir.path().to_str().unwrap();
    // A refused token, an unknown app, an API nobody answers, a missing directory.
    let closed = format!("http://127.0.0.1:{}", packages_tests::service::free_port());
    let missing = app_dir.path().join("nowhere");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "--app",
                &ctx.app,
                "--api",
                &svc.base,
                "--token",
                "not-a-token",
            ],
            "POST /v3/packages: 401 CF-InvalidAuthToken: Invalid Auth Token".to_owned(),
        ),
        (
            vec![
                "--app",
                "no-such-app",
                "--api",
                &svc.base,
                "--token",
                &token,
            ],
            "POST /v3/packages: 422 CF-UnprocessableEntity".to_owned(),
        ),
        (
            vec!["--app", &ctx.app, "--api", &closed, "--token", &token],
            format!("POST /v3/packages: error sending request for url ({closed}/v3/packages)"),
        ),
    ];
    for (flags, text) in cases {
        let mut args = vec!["push", dir];
        args.extend(flags);
        let run = packages(&args, &[]).await;
        run.assert_code(1).assert_plain().complains(&text);
    }
    let run = packages(
        &[
            "push",
            missing.to_str().unwrap(),
            "--app",
            &ctx.app,
            "--api",
            &svc.base,
            "--token",
            &token,
        ],
        &[],
    )
    .await;
    run.assert_code(1)
        .complains(&format!("{}: No such file or directory", missing.display()));
    assert!(
        !run.stdout.contains("created package"),
        "nothing is created for a directory that is not there: {run:#?}"
    );

    // Usage errors keep clap's exit code 2: neither or both of --app and --package.
    for args in [
        vec!["push", dir],
        vec!["push", dir, "--app", "a", "--package", "p"],
        vec!["download", "guid"],
    ] {
        packages(&args, &[]).await.assert_code(2);
    }
}

#[tokio::test]
async fn push_with_package_uploads_into_the_existing_package() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let token = developer(&svc, &ctx.space).await;
    let guid = svc.new_package(&ctx.app).await;
    let dir = tree(&[("index.html", b"into an existing package")]);
    let args = [
        "push",
        dir.path().to_str().unwrap(),
        "--package",
        &guid,
        "--api",
        &svc.base,
        "--token",
        &token,
    ];
    let run = packages(&args, &[]).await;
    run.assert_code(0)
        .assert_plain()
        .says(&format!("uploading into package {guid}"));
    assert!(!run.stdout.contains("created package"), "{run:#?}");
    let (pushed, sha1, _) = run.pushed();
    assert_eq!(pushed, guid);
    let package = svc.package(&guid).await;
    assert_eq!(package["state"], "READY");
    assert_eq!(package["data"]["hash"]["value"], sha1.as_str());
    let entries = read_zip(&bits(&svc, &guid).await);
    assert_eq!(entries["index.html"].0, b"into an existing package");
    let listed = svc
        .get(&format!("/v3/apps/{}/packages", ctx.app), &svc.admin())
        .await
        .json();
    assert_eq!(listed["pagination"]["total_results"], 1, "{listed}");

    // The package has its bits now: a second push into it is refused, and says so.
    let run = packages(&args, &[]).await;
    run.assert_code(1)
        .assert_plain()
        .complains("400 CF-PackageBitsAlreadyUploaded");
}

#[tokio::test]
async fn the_api_and_token_come_from_flags_then_environment_then_the_cf_config() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let token = svc.admin();
    let dir = tree(&[("index.html", b"target")]);
    let dir = dir.path().to_str().unwrap();
    let nobody = format!("http://127.0.0.1:{}", packages_tests::service::free_port());
    let cf_home = |target: &str, access: &str| {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".cf")).unwrap();
        let config = serde_json::json!({
            "ConfigVersion": 3,
            "Target": target,
            "AccessToken": access,
            "RefreshToken": "refresh",
        });
        std::fs::write(home.path().join(".cf/config.json"), config.to_string()).unwrap();
        home
    };
    let bearer = format!("bearer {token}");
    let logged_in = cf_home(&format!("{}/", svc.base), &bearer);
    let logged_in = logged_in.path().to_str().unwrap();
    let elsewhere = cf_home(&nobody, &bearer);
    let elsewhere = elsewhere.path().to_str().unwrap();

    let with_flags = ["--api", svc.base.as_str(), "--token", token.as_str()];
    let cases: Vec<(&str, Vec<&str>, Env)> = vec![
        (
            "environment",
            vec![],
            vec![("PACKAGES_API", &svc.base), ("PACKAGES_TOKEN", &token)],
        ),
        (
            "flags over environment",
            with_flags.to_vec(),
            vec![("PACKAGES_API", &nobody), ("PACKAGES_TOKEN", "wrong")],
        ),
        ("the cf CLI's config", vec![], vec![("HOME", logged_in)]),
        (
            "environment over the cf CLI's config",
            vec![],
            vec![
                ("HOME", elsewhere),
                ("PACKAGES_API", &svc.base),
                ("PACKAGES_TOKEN", &token),
            ],
        ),
        (
            "the cf CLI's token for its own target given as a flag",
            vec!["--api", &svc.base],
            vec![("HOME", logged_in)],
        ),
    ];
    for (name, flags, env) in cases {
        let mut args = vec!["push", dir, "--app", &ctx.app];
        args.extend(flags);
        let run = packages(&args, &env).await;
        assert_eq!(run.code, Some(0), "{name}: {run:#?}");
        let (guid, _, _) = run.pushed();
        assert_eq!(svc.package(&guid).await["state"], "READY", "{name}");
    }

    // The cf CLI's token never goes to another API; with nothing at all, the client
    // says what it needs.
    let refused: Vec<(Vec<&str>, Env, String)> = vec![
        (
            vec!["--api", &svc.base],
            vec![("HOME", elsewhere)],
            format!("no token for {}: pass --token TOKEN", svc.base),
        ),
        (
            vec![],
            vec![],
            "no API to talk to: pass --api URL, set PACKAGES_API".to_owned(),
        ),
    ];
    for (flags, env, text) in refused {
        let mut args = vec!["push", dir, "--app", &ctx.app];
        args.extend(flags);
        let run = packages(&args, &env).await;
        run.assert_code(1).complains(&text);
        assert!(!run.stdout.contains("created package"), "{run:#?}");
    }
}

#[tokio::test]
async fn download_writes_exactly_the_package_bits_to_the_file() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let token = developer(&svc, &ctx.space).await;
    // A few MiB that do not compress, so the download takes many reads.
    let zip = zips::zip(&[
        Entry::file("index.html", b"<h1>download</h1>"),
        Entry::file("data.bin", &random_bytes(3 << 20)),
    ]);
    let package = svc.upload_and_wait(&ctx.app, zip.clone()).await;
    assert_eq!(package["state"], "READY");
    let guid = package["guid"].as_str().unwrap();
    let sha1 = package["data"]["hash"]["value"].as_str().unwrap();
    // Embedded streams the bits itself; the stack answers 302 to the object store.
    let (reply, _) = svc.download(guid, &token).await;
    let expected_status = match svc.mode {
        Mode::Embedded => 200,
        Mode::Stack => 302,
    };
    assert_eq!(reply.status, expected_status);

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("bits.zip");
    // An older file there is replaced.
    std::fs::write(&file, b"stale").unwrap();
    let target = ["--api", svc.base.as_str(), "--token", token.as_str()];
    let mut args = vec!["download", guid, "-o", file.to_str().unwrap()];
    args.extend(target);
    let run = packages(&args, &[]).await;
    run.assert_code(0)
        .assert_plain()
        .says("download: 100% (")
        .says(&format!("sha1:   {sha1}"));
    let written = std::fs::read(&file).unwrap();
    assert_eq!(zips::sha1_hex(&written), sha1);
    assert!(written == zip, "the file holds other bytes than uploaded");

    // No bits to download: exit 1, and neither the file nor a partial one is written.
    let awaiting = svc.new_package(&ctx.app).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let other = out.path().join("other.zip");
    for (guid, text) in [
        (
            awaiting.as_str(),
            format!("GET /v3/packages/{awaiting}/download: "),
        ),
        (
            unknown.as_str(),
            format!("GET /v3/packages/{unknown}: 404 CF-ResourceNotFound"),
        ),
    ] {
        let mut args = vec!["download", guid, "-o", other.to_str().unwrap()];
        args.extend(target);
        packages(&args, &[])
            .await
            .assert_code(1)
            .assert_plain()
            .complains(&text);
    }
    let left: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["bits.zip"], "only the complete download is there");
}

#[tokio::test]
async fn the_readme_push_session_works_as_written() {
    let svc = Service::start().await;
    let ctx = svc.ctx().await;
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let after = readme
        .split_once("<!-- readme-push-session -->")
        .expect("session marker")
        .1;
    let start = after.find("```sh\n").unwrap() + "```sh\n".len();
    let end = after[start..].find("```").unwrap();
    let script = after[start..start + end]
        .replace("http://127.0.0.1:8080", &svc.base)
        .replace(
            "./target/release/packages",
            &packages_bin().display().to_string(),
        );
    let work = tempfile::tempdir().unwrap();
    // Bounded, and with nothing of this process's environment but a PATH for the shell.
    let out = tokio::process::Command::new("timeout")
        .args(["--kill-after=10", "300", "bash", "-euo", "pipefail", "-c"])
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", work.path())
        .env("APP", &ctx.app)
        .env("PACKAGES__AUTH__JWT_SECRET", &svc.secret)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let guid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("package ")?.strip_suffix(" is READY"))
        .unwrap_or_else(|| panic!("no READY line: {stdout}"));
    let downloaded = std::fs::read(work.path().join("my-app.zip")).unwrap();
    let package = svc.package(guid).await;
    assert_eq!(
        package["data"]["hash"]["value"],
        zips::sha1_hex(&downloaded)
    );
    // The .cfignore of the session kept logs/ home.
    let entries = read_zip(&downloaded);
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["index.html"]);
    assert_eq!(entries["index.html"].0, b"<h1>pushed</h1>\n");
}
