//! The real PyPI client `cloudfoundry-client` (1.40.4, installed by `make test` into
//! `.tools/venv`) works against the service as against Cloud Controller: it discovers the
//! API from a root document (the service's own `GET /`, or one that points at the
//! service), logs in at the UAA it names, and creates, uploads, polls, lists (following
//! `next` links), copies and downloads bits packages; the service's own view agrees.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use packages_tests::zips::{sha1_hex, sha256_hex, small_app};
use packages_tests::{Mode, Options, READ_WRITE, Service};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLIENT_VERSION: &str = "1.40.4";
const PASSWORD: &str = "py-client-password";
/// Refresh tokens the stand-in UAA hands out are this prefix and the user's name.
const REFRESH_PREFIX: &str = "py-client-refresh-";

/// The interpreter of the virtualenv `make test` installs the client into.
fn python() -> String {
    std::env::var("PACKAGES_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PACKAGES_TEST_PYTHON is not set: `make test` installs cloudfoundry-client \
             {CLIENT_VERSION} into .tools/venv and sets it (scripts/python-client.sh prints \
             the interpreter to use when running this file by hand)"
        )
    })
}

/// A stand-in UAA (and, for the client's discovery, a root document pointing at the
/// service): `GET /` and `POST /oauth/token` answering the password and refresh grants of
/// the `cf` client with tokens the service accepts. Records what it was asked.
struct Uaa {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

struct UaaState {
    url: String,
    v3: String,
    users: Vec<UaaUser>,
    seen: Arc<Mutex<Vec<String>>>,
}

/// A user the stand-in UAA knows, and the access tokens it hands out for them.
struct UaaUser {
    name: String,
    /// For the password grant.
    login: String,
    /// For the refresh grant.
    refreshed: String,
}

/// A token the service accepts but for its expiry (an hour ago), as UAA shapes it.
fn expired_token(svc: &Service, user: &str) -> String {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let claims = json!({
        "jti": uuid::Uuid::new_v4().simple().to_string(),
        "sub": user,
        "user_id": user,
        "scope": READ_WRITE,
        "client_id": "cf",
        "grant_type": "password",
        "iat": now - 7200,
        "exp": now - 3600,
        "iss": "https://uaa.example.org/oauth/token",
        "aud": ["cloud_controller"],
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(svc.secret.as_bytes()),
    )
    .unwrap()
}

impl Uaa {
    /// Serves on `listener`; `svc` is where the root document's `cloud_controller_v3` points.
    /// `users`: name, and whether the password grant hands out an expired token.
    fn serve(listener: TcpListener, svc: &Service, users: &[(&str, bool)]) -> Uaa {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(UaaState {
            url: url.clone(),
            v3: format!("{}/v3", svc.base),
            users: users
                .iter()
                .map(|&(name, expired)| UaaUser {
                    name: name.to_owned(),
                    login: if expired {
                        expired_token(svc, name)
                    } else {
                        svc.token(name, READ_WRITE)
                    },
                    refreshed: svc.token(name, READ_WRITE),
                })
                .collect(),
            seen: seen.clone(),
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, state.clone()));
            }
        });
        Uaa { url, seen }
    }

    /// What it was asked since the last call, e.g. `GET /` or `POST /oauth/token password`.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// One HTTP/1.1 request on `stream`, answered with `Connection: close`.
async fn answer(mut stream: TcpStream, state: Arc<UaaState>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();

    let (status, reply) = match (method, path) {
        ("GET", "/") => {
            state.seen.lock().unwrap().push("GET /".into());
            (
                200,
                json!({"links": {
                    "self": {"href": state.url},
                    "cloud_controller_v3": {"href": state.v3, "meta": {"version": "3.0.0"}},
                    "login": {"href": state.url},
                    "uaa": {"href": state.url},
                }}),
            )
        }
        ("POST", "/oauth/token") => {
            let grant = form_field(&body, "grant_type").unwrap_or_default();
            state
                .seen
                .lock()
                .unwrap()
                .push(format!("POST /oauth/token {grant}"));
            // The `cf` client with an empty secret, as the client library sends it.
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("cf:")
            );
            let user = match grant.as_str() {
                "password" if form_field(&body, "password").as_deref() == Some(PASSWORD) => {
                    form_field(&body, "username")
                }
                "refresh_token" => form_field(&body, "refresh_token")
                    .and_then(|t| t.strip_prefix(REFRESH_PREFIX).map(str::to_owned)),
                _ => None,
            };
            let token = user.and_then(|u| {
                let user = state.users.iter().find(|known| known.name == u)?;
                let token = match grant.as_str() {
                    "password" => &user.login,
                    _ => &user.refreshed,
                };
                Some((u, token.clone()))
            });
            match token {
                Some((user, token))
                    if header("authorization").as_deref() == Some(basic.as_str()) =>
                {
                    (
                        200,
                        json!({
                            "access_token": token,
                            "token_type": "bearer",
                            "refresh_token": format!("{REFRESH_PREFIX}{user}"),
                            "expires_in": 3599,
                            "scope": READ_WRITE.join(" "),
                        }),
                    )
                }
                _ => (
                    401,
                    json!({"error": "unauthorized", "error_description": "Bad credentials"}),
                ),
            }
        }
        _ => (404, json!({"error": "not_found"})),
    };
    let body = reply.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Runs the Python session against `target`, bounded in time; returns its JSON summary.
async fn run_session(svc: &Service, python: &str, target: &str, env: &[(&str, &str)]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/cf_client_session.py");
    // Bounded: a client that hangs (a poll that never ends, a dead service) fails the test
    // instead of holding `make test`.
    let out = tokio::process::Command::new("timeout")
        .args(["--kill-after=10", "300", python])
        .arg(&script)
        .env("CF_TARGET", target)
        .envs(env.iter().copied())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the client session failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        svc.logs()
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{stdout}\n{stderr}"))
}

fn strings(v: &Value) -> Vec<String> {
    let mut list: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    list.sort();
    list
}

#[tokio::test]
async fn the_python_client_creates_uploads_lists_copies_and_downloads_packages() {
    let python = python();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uaa_url = format!("http://{}", listener.local_addr().unwrap());
    // The service advertises the stand-in UAA in its own root document.
    let svc = Service::start_with(Options::default().with("auth.uaa_url", &uaa_url)).await;
    let users = [
        ("py-dev-test-root", false),
        ("py-dev-service-root", false),
        ("py-dev-expired", true),
    ];
    let uaa = Uaa::serve(listener, &svc, &users);
    assert_eq!(uaa.url, uaa_url);

    // (case, target the client is given, user, what the stand-in UAA must have been asked)
    let cases = [
        (
            "discovery through a root document pointing at the service",
            uaa.url.clone(),
            users[0].0,
            vec!["GET /", "POST /oauth/token password"],
        ),
        (
            "discovery through the service's own GET /",
            svc.base.clone(),
            users[1].0,
            vec!["POST /oauth/token password"],
        ),
        // The login hands out an expired token: the service's 401 `CF-InvalidAuthToken`
        // (code 1000) is what the client recognises to refresh it and retry, once.
        (
            "an expired token refreshed on the service's 401",
            svc.base.clone(),
            users[2].0,
            vec![
                "POST /oauth/token password",
                "POST /oauth/token refresh_token",
            ],
        ),
    ];
    let work = tempfile::tempdir().unwrap();
    for (case, target, user, asked) in cases {
        // A space developer of the app's space and of the copy's (another space).
        let ctx = svc.ctx().await;
        let other_space = svc.create_space(&ctx.org, "copies").await;
        let copy_app = svc.create_app(&other_space, "copy").await;
        svc.grant(user, "space_developer", &ctx.space).await;
        svc.grant(user, "space_developer", &other_space).await;
        let zip = small_app(case);
        let zip_path = work.path().join(format!("{user}.zip"));
        std::fs::write(&zip_path, &zip).unwrap();

        let s = run_session(
            &svc,
            &python,
            &target,
            &[
                ("CF_USERNAME", user),
                ("CF_PASSWORD", PASSWORD),
                ("CF_APP_GUID", &ctx.app),
                ("CF_COPY_APP_GUID", &copy_app),
                ("CF_ZIP_PATH", zip_path.to_str().unwrap()),
            ],
        )
        .await;
        println!("{case}: {s}");
        let (sha1, sha256) = (sha1_hex(&zip), sha256_hex(&zip));

        // What the client saw.
        assert_eq!(uaa.take(), asked, "{case}: {s}");
        assert_eq!(s["api_v3_url"], format!("{}/v3", svc.base), "{case}");
        assert_eq!(s["authorization_endpoint"], uaa.url, "{case}");
        assert_eq!(s["failures"], json!([]), "{case}");
        assert_eq!(s["created_state"], "AWAITING_UPLOAD", "{case}");
        assert_eq!(s["upload_state"], "PROCESSING_UPLOAD", "{case}");
        assert_eq!(s["state"], "READY", "{case}");
        assert_eq!(s["hash"], sha1, "{case}");
        assert_eq!(s["checksum"], sha256, "{case}");
        assert_eq!(s["copy_initial_state"], "COPYING", "{case}");
        assert_eq!(s["copy_state"], "READY", "{case}");
        assert_eq!(s["copy_hash"], sha1, "{case}");
        let (guid, copy) = (
            s["package"].as_str().unwrap().to_owned(),
            s["copy"].as_str().unwrap().to_owned(),
        );
        assert_eq!(s["listed_for_app"], json!([guid]), "{case}");
        // The user sees exactly these two, one a page, through the `next` links.
        let mut both = vec![guid.clone(), copy.clone()];
        both.sort();
        assert_eq!(strings(&s["paged_guids"]), both, "{case}: {s}");
        assert_eq!(s["paged_total"], 2, "{case}");
        assert_eq!(s["download_sha1"], sha1, "{case}");
        assert_eq!(s["copy_download_sha1"], sha1, "{case}");
        // The local blobstore streams the bits; S3 redirects to a presigned URL, which
        // the client follows without the token.
        let statuses = match svc.mode {
            Mode::Embedded => json!([200]),
            Mode::Stack => json!([302, 200]),
        };
        assert_eq!(s["download_statuses"], statuses, "{case}");
        assert_eq!(s["copy_download_statuses"], statuses, "{case}");

        // What the service holds.
        for (package, app) in [(&guid, &ctx.app), (&copy, &copy_app)] {
            let p = svc.package(package).await;
            assert_eq!(p["state"], "READY", "{case}: {p}");
            assert_eq!(p["type"], "bits", "{case}: {p}");
            assert_eq!(p["data"]["hash"]["value"], sha1, "{case}: {p}");
            assert_eq!(p["data"]["checksum"]["value"], sha256, "{case}: {p}");
            assert_eq!(p["data"]["error"], Value::Null, "{case}: {p}");
            assert_eq!(
                p["relationships"]["app"]["data"]["guid"], *app,
                "{case}: {p}"
            );
            let (_, bytes) = svc.download(package, &svc.admin()).await;
            assert_eq!(bytes.as_deref(), Some(&zip[..]), "{case}: {package}");
        }
        let listed = svc
            .get(&format!("/v3/apps/{copy_app}/packages"), &svc.admin())
            .await;
        assert_eq!(listed.status, 200, "{}", listed.text());
        assert_eq!(
            listed.json()["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["guid"].clone())
                .collect::<Vec<_>>(),
            vec![json!(copy)],
            "{case}"
        );
    }
}
