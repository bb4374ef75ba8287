//! Resource matching (GA spec, section 10 and the `resource_matches` row of 2.1): who may
//! ask, the request's parse and validation texts, what the pool takes from READY packages,
//! how matches are answered, uploads carrying a `resources` part, and the packages the
//! worker assembles from uploaded entries and pooled files, including every failure text.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use packages_tests::zips::{self, Entry};
use packages_tests::{Options, READ_WRITE, Reply, Service, metric};
use rand::RngCore;
use serde_json::{Value, json};

const NOT_AUTHORIZED: &str = "You are not authorized to perform the requested action";
const PARSE_ERROR: &str = "Request invalid due to parse error: invalid request body";
const PREAMBLE: &str = "Resources array contains at least one resource with";
const NEITHER: &str = "Upload must include either resources or bits";
const NOT_JSON: &str = "Resources must be valid JSON.";
const MISMATCH: &str = "One or more cached resources did not match the given checksum. They have been deleted; please retry package upload.";
const TOO_LARGE: &str = "AppBitsPackage::ZipSizeExceeded";
const INVALID_ZIP: &str = "The zip provided was not valid";

/// A file the tests put into the pool (through a plain upload) or refer to.
#[derive(Debug, Clone)]
struct PoolFile {
    path: String,
    bytes: Vec<u8>,
    sha1: String,
}

impl PoolFile {
    fn new(path: &str, bytes: Vec<u8>) -> PoolFile {
        let sha1 = zips::sha1_hex(&bytes);
        PoolFile {
            path: path.to_owned(),
            bytes,
            sha1,
        }
    }

    fn random(path: &str, size: usize) -> PoolFile {
        PoolFile::new(path, random_bytes(size))
    }

    fn size(&self) -> usize {
        self.bytes.len()
    }

    fn entry(&self) -> Entry {
        Entry::file(&self.path, &self.bytes)
    }

    /// Its key in the blobstore: `app_bits_cache/<sha1[0..2]>/<sha1[2..4]>/<sha1>`.
    fn pool_key(&self) -> String {
        let s = &self.sha1;
        format!("app_bits_cache/{}/{}/{s}", &s[..2], &s[2..4])
    }

    /// GA fingerprint.
    fn ga(&self, path: &str, mode: Option<&str>) -> Value {
        json!({"checksum": {"value": self.sha1}, "size_in_bytes": self.size(), "path": path, "mode": mode})
    }

    /// v2 fingerprint.
    fn v2(&self, path: &str, mode: Option<&str>) -> Value {
        json!({"sha1": self.sha1, "size": self.size(), "fn": path, "mode": mode})
    }
}

/// An upload that the request accepts but that the worker must fail: bits (if any),
/// resources, and the package's `data.error`.
type Failure = (Option<Vec<u8>>, Value, String);

/// An upload the request refuses: bits (if any), the `resources` part (if any), the text.
type Refusal<'a> = (Option<Vec<u8>>, Option<&'a str>, &'a str);

fn random_bytes(size: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A GA fingerprint as it is sent to `POST /v3/resource_matches`, without path or mode.
fn fingerprint(sha1: &str, size: usize) -> Value {
    json!({"checksum": {"value": sha1}, "size_in_bytes": size})
}

fn small_pool() -> Options {
    Options::default()
        .with("resource_pool.minimum_size", 16)
        .with("resource_pool.maximum_size", 100_000)
}

/// Uploads `files` as a plain package and waits for READY: the files go into the pool.
async fn seed(svc: &Service, app: &str, files: &[&PoolFile]) -> String {
    let entries: Vec<Entry> = files.iter().map(|f| f.entry()).collect();
    let p = svc.upload_and_wait(app, zips::zip(&entries)).await;
    assert_eq!(p["state"], "READY", "{p}");
    p["guid"].as_str().unwrap().to_owned()
}

/// `POST /v3/resource_matches` with `{"resources": resources}`: the matched entries.
async fn matches(svc: &Service, token: &str, resources: Value) -> Vec<Value> {
    let r = svc
        .post(
            "/v3/resource_matches",
            token,
            &json!({"resources": resources}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let body = r.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["resources"], "{body}");
    body["resources"].as_array().unwrap().clone()
}

/// The multipart upload form with an optional `resources` field and `bits` file part.
async fn upload_parts(
    svc: &Service,
    guid: &str,
    token: &str,
    bits: Option<Vec<u8>>,
    resources: Option<&str>,
) -> Reply {
    let mut form = reqwest::multipart::Form::new();
    if let Some(resources) = resources {
        form = form.text("resources", resources.to_owned());
    }
    if let Some(bits) = bits {
        form = form.part(
            "bits",
            reqwest::multipart::Part::bytes(bits).file_name("package.zip"),
        );
    }
    svc.send(
        svc.http
            .post(format!("{}/v3/packages/{guid}/upload", svc.base))
            .bearer_auth(token)
            .multipart(form),
    )
    .await
}

/// Uploads `bits` (if any) with `resources` to a new package of `app`; checks the 200
/// `PROCESSING_UPLOAD` answer and returns the package once it left that state.
async fn assemble(svc: &Service, app: &str, bits: Option<Vec<u8>>, resources: &Value) -> Value {
    let guid = svc.new_package(app).await;
    let r = upload_parts(svc, &guid, &svc.admin(), bits, Some(&resources.to_string())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "PROCESSING_UPLOAD", "{}", r.text());
    svc.wait_final(&guid).await
}

/// Downloads a READY package's zip.
async fn download(svc: &Service, guid: &str) -> Vec<u8> {
    let (r, bytes) = svc.download(guid, &svc.admin()).await;
    bytes.unwrap_or_else(|| panic!("download of {guid}: {} {}", r.status, r.text()))
}

/// Overwrites a pool entry's bytes behind the service's back.
async fn overwrite_pool_entry(svc: &Service, key: &str, bytes: Vec<u8>) {
    match &svc.s3 {
        None => {
            let path = svc.blob_root().join(key);
            assert!(path.exists(), "pool entry {key} missing");
            std::fs::write(path, bytes).unwrap();
        }
        Some(settings) => {
            use packages_blobstore::Blobstore;
            let store = packages_blobstore::S3Blobstore::connect(settings.clone()).unwrap();
            let size = bytes.len() as u64;
            let body: packages_blobstore::ByteStream =
                Box::pin(futures_util::stream::once(async move {
                    Ok(bytes::Bytes::from(bytes))
                }));
            store.put_stream(key, size, body).await.unwrap();
        }
    }
}

/// Polls the metrics until `packages_failed_total{reason}` reaches `expected` (a worker
/// may count a failure just after the state flip), then asserts it.
async fn assert_failed_count(svc: &Service, reason: &str, expected: f64) {
    let started = Instant::now();
    loop {
        let value = metric(
            &svc.metrics().await,
            "packages_failed_total",
            &[("reason", reason)],
        );
        if value == expected || started.elapsed() > Duration::from_secs(10) {
            assert_eq!(value, expected, "packages_failed_total{{reason={reason}}}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Looking inside downloaded packages.

#[derive(Debug)]
struct ZipEntry {
    name: String,
    /// Unix mode from the external attributes.
    mode: u32,
    data: Vec<u8>,
}

/// Every entry of `zip`, in central-directory order, read whole (CRC-32 checked).
fn read_zip(zip: &[u8]) -> Vec<ZipEntry> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            ZipEntry {
                name: file.name().unwrap().into_owned(),
                mode: file.unix_mode().unwrap_or(0),
                data,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// POST /v3/resource_matches: scope, parse errors, validation texts.

#[tokio::test]
async fn resource_matches_need_the_write_scope_only_and_validate_with_cc_texts() {
    let svc = Service::start_with(small_pool()).await;
    let ctx = svc.ctx().await;
    let one = json!({"resources": [fingerprint(&"a".repeat(40), 100)]});

    // Scope: a read-only token is refused before the body is judged.
    let reader = svc.token("reader-only", &["cloud_controller.read"]);
    for body in [
        one.to_string().into_bytes(),
        b"not json".to_vec(),
        Vec::new(),
    ] {
        svc.post_raw("/v3/resource_matches", &reader, "application/json", body)
            .await
            .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    }

    // Any user with the write scope, whatever their roles (the pool is global).
    let developer = uuid::Uuid::new_v4().to_string();
    svc.grant(&developer, "space_developer", &ctx.space).await;
    let auditor = uuid::Uuid::new_v4().to_string();
    svc.grant(&auditor, "space_auditor", &ctx.space).await;
    let tokens = [
        svc.admin(),
        svc.token(&developer, READ_WRITE),
        svc.token(&auditor, READ_WRITE),
        svc.token(&uuid::Uuid::new_v4().to_string(), READ_WRITE),
        svc.token(
            &uuid::Uuid::new_v4().to_string(),
            &["cloud_controller.write"],
        ),
    ];
    for token in &tokens {
        let r = svc.post("/v3/resource_matches", token, &one).await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json(), json!({"resources": []}));
    }
    let user = &tokens[3];

    let sha = "002d760bea1be268e27077412e11a320d0f164d3";
    let valid = |extra: Value| {
        let mut entry = json!({"checksum": {"value": sha}, "size_in_bytes": 1});
        for (k, v) in extra.as_object().unwrap() {
            entry[k] = v.clone();
        }
        entry
    };
    let each = |text: &str| format!("{PREAMBLE} {text}");
    let too_many: Vec<Value> = std::iter::once(json!(1))
        .chain(std::iter::repeat_n(fingerprint(sha, 1), 5000))
        .collect();
    let cases: Vec<(Value, String)> = vec![
        (
            json!({}),
            "Resources must be an array, Resources must have at least 1 resource".into(),
        ),
        (
            json!({"other": [fingerprint(sha, 1)]}),
            "Resources must be an array, Resources must have at least 1 resource".into(),
        ),
        (
            json!({"resources": "abc"}),
            "Resources must be an array".into(),
        ),
        (
            json!({"resources": {"a": 1}}),
            "Resources must be an array".into(),
        ),
        (
            json!({"resources": []}),
            "Resources must have at least 1 resource".into(),
        ),
        (
            json!({"resources": too_many}),
            format!(
                "Resources array can have at most 5000 resources, {}, {}",
                each("a non-object checksum"),
                each("a non-integer size_in_bytes")
            ),
        ),
        (
            json!({"resources": [{"checksum": "abc", "size_in_bytes": 1}]}),
            each("a non-object checksum"),
        ),
        (
            json!({"resources": [{"size_in_bytes": 1}]}),
            each("a non-object checksum"),
        ),
        (
            json!({"resources": [1]}),
            format!(
                "{}, {}",
                each("a non-object checksum"),
                each("a non-integer size_in_bytes")
            ),
        ),
        (
            json!({"resources": ["x"]}),
            format!(
                "{}, {}",
                each("a non-object checksum"),
                each("a non-integer size_in_bytes")
            ),
        ),
        (
            json!({"resources": [{"checksum": {"value": 5}, "size_in_bytes": 1}]}),
            each("a non-string checksum value"),
        ),
        (
            json!({"resources": [{"checksum": {}, "size_in_bytes": 1}]}),
            each("a non-string checksum value"),
        ),
        (
            json!({"resources": [{"checksum": {"value": "abc"}, "size_in_bytes": 1}]}),
            each("a non-SHA1 checksum value"),
        ),
        (
            json!({"resources": [{"checksum": {"value": format!("{sha}0")}, "size_in_bytes": 1}]}),
            each("a non-SHA1 checksum value"),
        ),
        (
            json!({"resources": [valid(json!({"size_in_bytes": "12"}))]}),
            each("a non-integer size_in_bytes"),
        ),
        (
            json!({"resources": [valid(json!({"size_in_bytes": 1.5}))]}),
            each("a non-integer size_in_bytes"),
        ),
        (
            json!({"resources": [{"checksum": {"value": sha}}]}),
            each("a non-integer size_in_bytes"),
        ),
        (
            json!({"resources": [valid(json!({"size_in_bytes": -1}))]}),
            each("a negative size_in_bytes"),
        ),
        (
            json!({"resources": [valid(json!({"mode": 644}))]}),
            each("a non-string mode"),
        ),
        (
            json!({"resources": [valid(json!({"mode": true}))]}),
            each("a non-string mode"),
        ),
        (
            json!({"resources": [valid(json!({"mode": "0648"}))]}),
            each("an incorrect mode"),
        ),
        (
            json!({"resources": [valid(json!({"mode": "644abc"}))]}),
            each("an incorrect mode"),
        ),
        // v2 fingerprints are an upload's business: matching reads GA ones only.
        (
            json!({"resources": [{"sha1": sha, "size": 1, "fn": "a.txt", "mode": "644"}]}),
            format!(
                "{}, {}",
                each("a non-object checksum"),
                each("a non-integer size_in_bytes")
            ),
        ),
        // Joined with ", ", each message once, in order of first occurrence (not in the
        // order of the table: a negative size before a non-integer one, an incorrect mode
        // before a non-string one).
        (
            json!({"resources": [
                {"checksum": "x", "size_in_bytes": 1},
                {"checksum": "x", "size_in_bytes": -1},
                valid(json!({"size_in_bytes": "1"})),
                valid(json!({"mode": "9"})),
                valid(json!({"mode": 7})),
                {"checksum": "y", "size_in_bytes": -5, "mode": "8"},
                valid(json!({"size_in_bytes": 2.5, "mode": 1})),
            ]}),
            [
                each("a non-object checksum"),
                each("a negative size_in_bytes"),
                each("a non-integer size_in_bytes"),
                each("an incorrect mode"),
                each("a non-string mode"),
            ]
            .join(", "),
        ),
    ];
    for (body, detail) in &cases {
        svc.post("/v3/resource_matches", user, body)
            .await
            .assert_error(422, 10008, "UnprocessableEntity", detail);
    }

    // Valid edge cases: exactly 5000 entries; only the checksum's length is checked; mode
    // null, "0" or any octal string; size 0; top-level keys other than resources ignored.
    let most: Vec<Value> = std::iter::repeat_n(fingerprint(sha, 1), 5000).collect();
    assert_eq!(matches(&svc, user, json!(most)).await, Vec::<Value>::new());
    let r = svc
        .post(
            "/v3/resource_matches",
            user,
            &json!({
                "resources": [
                    fingerprint(&"z".repeat(40), 0),
                    valid(json!({"mode": null, "path": 7})),
                    valid(json!({"mode": "0"})),
                    valid(json!({"mode": "777777"})),
                ],
                "foo": "bar",
                "page": 1,
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json(), json!({"resources": []}));

    // JSON that is not an object, an empty body, a body that is not JSON: 400.
    for body in [
        "[]",
        "[{\"resources\": []}]",
        "\"resources\"",
        "42",
        "null",
        "",
        "not json",
        "{\"resources\": [",
    ] {
        svc.post_raw(
            "/v3/resource_matches",
            user,
            "application/json",
            body.as_bytes().to_vec(),
        )
        .await
        .assert_error(400, 1001, "MessageParseError", PARSE_ERROR);
    }
}

// ---------------------------------------------------------------------------------------
// The pool (10.1) and matching (10.3).

#[tokio::test]
async fn ready_packages_fill_the_pool_and_matches_answer_in_request_order() {
    let svc = Service::start_with(
        Options::default()
            .with("resource_pool.minimum_size", 16)
            .with("resource_pool.maximum_size", 4096),
    )
    .await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let user = svc.token("any-writer", READ_WRITE);

    let below = PoolFile::random("small.bin", 15);
    let at_min = PoolFile::random("min.bin", 16);
    let mid = PoolFile::random("lib/mid.jar", 1000);
    let other = PoolFile::random("other.bin", 2000);
    let at_max = PoolFile::random("max.bin", 4096);
    let above = PoolFile::random("big.bin", 4097);
    let target = "a-symlink-target-well-above-the-minimum.txt";
    let link = PoolFile::new("link", target.as_bytes().to_vec());
    let mut entries: Vec<Entry> = [&below, &at_min, &mid, &other, &at_max, &above]
        .iter()
        .map(|f| f.entry())
        .collect();
    entries.push(Entry::file("assets/", b""));
    entries.push(Entry::symlink("link", target));
    let p = svc.upload_and_wait(&ctx.app, zips::zip(&entries)).await;
    assert_eq!(p["state"], "READY", "{p}");
    let seeded = p["guid"].as_str().unwrap().to_owned();

    // Matchable as soon as the package is READY: no waiting.
    assert_eq!(
        matches(&svc, &user, json!([mid.ga("lib/mid.jar", Some("644"))])).await,
        [mid.ga("lib/mid.jar", Some("644"))]
    );

    // Files within [min, max] are stored at their pool key; others, and links, are not.
    for f in [&at_min, &mid, &other, &at_max] {
        assert!(
            svc.blob_exists(&f.pool_key()).await,
            "{} ({} bytes) is pooled",
            f.path,
            f.size()
        );
    }
    for f in [&below, &above, &link] {
        assert!(
            !svc.blob_exists(&f.pool_key()).await,
            "{} ({} bytes) is not pooled",
            f.path,
            f.size()
        );
    }

    // Matching is strict at both bounds, needs the pooled size, ignores the SHA-1's case,
    // keeps the request's order and values (path and mode null when not sent, other keys
    // dropped), and answers a duplicate as often as it is asked.
    let unknown = zips::sha1_hex(b"never uploaded");
    let upper = json!({
        "checksum": {"value": mid.sha1.to_uppercase(), "algorithm": "sha1"},
        "size_in_bytes": 1000,
        "path": "app/lib/mid.jar",
        "mode": "0644",
        "extra": {"ignored": true},
    });
    let request = json!([
        upper,
        fingerprint(&unknown, 1000),
        fingerprint(&at_min.sha1, 16),
        fingerprint(&other.sha1, 2000),
        fingerprint(&at_max.sha1, 4096),
        fingerprint(&above.sha1, 4097),
        fingerprint(&below.sha1, 15),
        fingerprint(&link.sha1, link.size()),
        fingerprint(&mid.sha1, 999),
        fingerprint(&mid.sha1, 1001),
        fingerprint(&other.sha1, 1000),
        mid.ga("dup/one.jar", None),
        {"checksum": {"value": mid.sha1}, "size_in_bytes": 1000, "path": "dup/two.jar"},
        {"checksum": {"value": mid.sha1}, "size_in_bytes": 1000, "mode": "755"},
    ]);
    assert_eq!(
        matches(&svc, &user, request).await,
        [
            json!({"checksum": {"value": mid.sha1.to_uppercase()}, "size_in_bytes": 1000, "path": "app/lib/mid.jar", "mode": "0644"}),
            json!({"checksum": {"value": other.sha1}, "size_in_bytes": 2000, "path": null, "mode": null}),
            json!({"checksum": {"value": mid.sha1}, "size_in_bytes": 1000, "path": "dup/one.jar", "mode": null}),
            json!({"checksum": {"value": mid.sha1}, "size_in_bytes": 1000, "path": "dup/two.jar", "mode": null}),
            json!({"checksum": {"value": mid.sha1}, "size_in_bytes": 1000, "path": null, "mode": "755"}),
        ]
    );

    // A package that ends FAILED adds nothing, not even its good files.
    let lost = PoolFile::random("lost.bin", 700);
    let failed = svc
        .upload_and_wait(
            &ctx.app,
            zips::zip(&[
                lost.entry(),
                Entry::file("../evil.txt", b"escaping the root"),
            ]),
        )
        .await;
    assert_eq!(failed["state"], "FAILED", "{failed}");
    assert!(!svc.blob_exists(&lost.pool_key()).await);
    assert!(
        matches(&svc, &user, json!([fingerprint(&lost.sha1, 700)]))
            .await
            .is_empty()
    );

    // Deleting the package (its bits included) leaves its pool entries.
    let r = svc.delete(&format!("/v3/packages/{seeded}"), &admin).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let started = Instant::now();
    while svc.bits_exist(&seeded).await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "bits of the deleted package are still there\n{}",
            svc.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for f in [&at_min, &mid, &other, &at_max] {
        assert!(svc.blob_exists(&f.pool_key()).await, "{} kept", f.path);
    }
    assert_eq!(
        matches(
            &svc,
            &user,
            json!([fingerprint(&mid.sha1, 1000), fingerprint(&other.sha1, 2000)])
        )
        .await
        .len(),
        2
    );
}

// ---------------------------------------------------------------------------------------
// Uploads with resources (10.4): what the request accepts.

#[tokio::test]
async fn uploads_take_a_resources_part_with_or_without_bits() {
    let svc = Service::start_with(small_pool()).await;
    let ctx = svc.ctx().await;
    let admin = svc.admin();
    let pooled = PoolFile::random("pooled.bin", 1000);
    seed(&svc, &ctx.app, &[&pooled]).await;
    let resources = json!([pooled.ga("lib/pooled.bin", Some("644"))]).to_string();

    // Bits with `[]`: today's upload, the zip stored unchanged.
    let plain = zips::small_app("plain");
    let guid = svc.new_package(&ctx.app).await;
    let r = upload_parts(&svc, &guid, &admin, Some(plain.clone()), Some("[]")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = svc.wait_final(&guid).await;
    assert_eq!(p["state"], "READY", "{p}");
    assert_eq!(p["data"]["hash"]["value"], zips::sha1_hex(&plain));
    assert_eq!(download(&svc, &guid).await, plain);

    // Bits and resources: PROCESSING_UPLOAD, then READY with both.
    let p = assemble(
        &svc,
        &ctx.app,
        Some(zips::small_app("both")),
        &json!([pooled.ga("lib/pooled.bin", Some("644"))]),
    )
    .await;
    assert_eq!(p["state"], "READY", "{p}");
    let names: Vec<String> = read_zip(&download(&svc, p["guid"].as_str().unwrap()).await)
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["index.html", "lib/app.js", "lib/pooled.bin"]);

    // Resources alone: READY, the package holds just them.
    let p = assemble(
        &svc,
        &ctx.app,
        None,
        &json!([pooled.v2("pooled.bin", None)]),
    )
    .await;
    assert_eq!(p["state"], "READY", "{p}");
    let entries = read_zip(&download(&svc, p["guid"].as_str().unwrap()).await);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "pooled.bin");
    assert_eq!(entries[0].data, pooled.bytes);

    // Refusals leave the package waiting for an upload.
    let guid = svc.new_package(&ctx.app).await;
    let refusals: Vec<Refusal<'_>> = vec![
        (None, Some("[]"), NEITHER),
        (None, Some(" [ ] "), NEITHER),
        (None, Some("{}"), NOT_JSON),
        (None, Some("\"x\""), NOT_JSON),
        (None, Some("[1]"), NOT_JSON),
        (None, Some("null"), NOT_JSON),
        (None, Some("not json"), NOT_JSON),
        (None, Some(""), NOT_JSON),
        (Some(zips::small_app("x")), Some("{}"), NOT_JSON),
        (
            Some(zips::small_app("x")),
            Some("[{\"path\": \"a\"}, 2]"),
            NOT_JSON,
        ),
        (Some(zips::small_app("x")), Some("[[]]"), NOT_JSON),
    ];
    for (bits, resources, detail) in refusals {
        upload_parts(&svc, &guid, &admin, bits, resources)
            .await
            .assert_error(422, 10008, "UnprocessableEntity", detail);
        assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    }

    // A resources part over 8 MiB is refused like an oversized body; 8 MiB is accepted
    // (and here read as an empty list).
    let limit = 8 << 20;
    let over = format!("[{}]", " ".repeat(limit - 1));
    upload_parts(&svc, &guid, &admin, None, Some(&over))
        .await
        .assert_error(
            413,
            150001,
            "AppPackageInvalid",
            "The app package is invalid: Package may not be larger than 8388608 bytes",
        );
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");
    let at_limit = format!("[{}]", " ".repeat(limit - 2));
    upload_parts(&svc, &guid, &admin, None, Some(&at_limit))
        .await
        .assert_error(422, 10008, "UnprocessableEntity", NEITHER);

    // The 2015 proxy form still knows no resources.
    svc.post_raw(
        &format!("/v3/packages/{guid}/upload"),
        &admin,
        "application/x-www-form-urlencoded",
        b"bits_name=a.zip&bits_path=%2Ftmp%2Fa.zip&resources=%5B%5D".to_vec(),
    )
    .await
    .assert_error(
        422,
        10008,
        "UnprocessableEntity",
        "Unknown field(s): 'resources'",
    );
    assert_eq!(svc.package(&guid).await["state"], "AWAITING_UPLOAD");

    // The body is judged after scope, lookup and state.
    let reader = svc.token("reader", &["cloud_controller.read"]);
    upload_parts(&svc, &guid, &reader, None, Some("{}"))
        .await
        .assert_error(403, 10003, "NotAuthorized", NOT_AUTHORIZED);
    upload_parts(&svc, "no-such-package", &admin, None, Some("{}"))
        .await
        .assert_error(404, 10010, "ResourceNotFound", "Package not found");
    let ready = p["guid"].as_str().unwrap();
    let r = upload_parts(&svc, ready, &admin, None, Some("{}")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error_code"], "CF-PackageBitsAlreadyUploaded");

    // The package that saw every refusal still takes an upload.
    let r = upload_parts(&svc, &guid, &admin, None, Some(&resources)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "PROCESSING_UPLOAD");
    assert_eq!(svc.wait_final(&guid).await["state"], "READY");
}

// ---------------------------------------------------------------------------------------
// Assembly (10.5).

#[tokio::test]
async fn assembled_packages_hold_uploaded_entries_and_pooled_files() {
    let svc = Service::start_with(small_pool()).await;
    let ctx = svc.ctx().await;
    let user = svc.token("any-writer", READ_WRITE);
    let first = PoolFile::random("first.bin", 3000);
    let text: String = (0..40)
        .map(|i| format!("setting-{i} = {}\n", i * 7))
        .collect();
    let second = PoolFile::new("settings.txt", text.into_bytes());
    let third = PoolFile::random("third.bin", 1200);
    seed(&svc, &ctx.app, &[&first, &second, &third]).await;

    let fresh = PoolFile::random("new.bin", 700);
    let uploaded_settings = b"{\"uploaded\": true, \"replaced\": \"by a resource\"}";
    let bits = zips::zip(&[
        Entry::file("index.html", b"<h1>assembled</h1>"),
        Entry::file("lib/app.js", b"console.log('hi')"),
        Entry::file("config/settings.json", uploaded_settings),
        fresh.entry(),
    ]);
    let resources = json!([
        first.ga("a/../b.bin", Some("0644")),
        {"sha1": second.sha1.to_uppercase(), "size": second.size(), "fn": "config/settings.json", "mode": "0755"},
        third.ga("dup.bin", Some("0600")),
        first.v2("dup.bin", Some("0640")),
        third.ga("no-mode.bin", None),
        second.ga("./deep/./x.txt", Some("644")),
    ]);
    let p = assemble(&svc, &ctx.app, Some(bits), &resources).await;
    assert_eq!(p["state"], "READY", "{p}");
    assert_eq!(p["data"]["error"], Value::Null);
    let guid = p["guid"].as_str().unwrap();
    let zip = download(&svc, guid).await;
    assert_eq!(p["data"]["hash"]["value"], zips::sha1_hex(&zip));
    assert_eq!(p["data"]["checksum"]["value"], zips::sha256_hex(&zip));

    let entries = read_zip(&zip);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    // The uploaded entries a resource does not replace, in their order, then the resources.
    assert_eq!(
        names[..3],
        ["index.html", "lib/app.js", "new.bin"],
        "{names:?}"
    );
    let mut resource_names = names[3..].to_vec();
    resource_names.sort_unstable();
    assert_eq!(
        resource_names,
        [
            "b.bin",
            "config/settings.json",
            "deep/x.txt",
            "dup.bin",
            "no-mode.bin"
        ],
        "{names:?}"
    );
    let entry = |name: &str| entries.iter().find(|e| e.name == name).unwrap();
    assert_eq!(entry("index.html").data, b"<h1>assembled</h1>");
    assert_eq!(entry("lib/app.js").data, b"console.log('hi')");
    assert_eq!(entry("new.bin").data, fresh.bytes);
    assert_eq!(entry("new.bin").mode, 0o100_644);
    for (name, file, mode) in [
        ("b.bin", &first, 0o100_644),
        ("config/settings.json", &second, 0o100_755),
        ("dup.bin", &first, 0o100_640),
        ("no-mode.bin", &third, 0o100_744),
        ("deep/x.txt", &second, 0o100_644),
    ] {
        assert_eq!(entry(name).data, file.bytes, "bytes of {name}");
        assert_eq!(
            entry(name).mode,
            mode,
            "mode of {name}: {:o}",
            entry(name).mode
        );
    }

    // An assembled package fills the pool too.
    assert!(svc.blob_exists(&fresh.pool_key()).await);
    assert_eq!(
        matches(&svc, &user, json!([fingerprint(&fresh.sha1, 700)])).await,
        [
            json!({"checksum": {"value": fresh.sha1}, "size_in_bytes": 700, "path": null, "mode": null})
        ]
    );

    // The same upload and resources give the same package, byte for byte.
    let again = assemble(
        &svc,
        &ctx.app,
        Some(zips::zip(&[
            Entry::file("index.html", b"<h1>assembled</h1>"),
            Entry::file("lib/app.js", b"console.log('hi')"),
            Entry::file("config/settings.json", uploaded_settings),
            fresh.entry(),
        ])),
        &resources,
    )
    .await;
    assert_eq!(again["data"]["hash"], p["data"]["hash"]);
}

#[tokio::test]
async fn assembly_failures_end_failed_with_cc_texts() {
    let svc = Service::start_with(small_pool().with("packages.max_package_size", 20_000)).await;
    let ctx = svc.ctx().await;
    let small = PoolFile::random("small.bin", 1000);
    let large = PoolFile::random("large.bin", 8000);
    seed(&svc, &ctx.app, &[&small, &large]).await;
    let before = svc.metrics().await;
    let count = |reason: &str| metric(&before, "packages_failed_total", &[("reason", reason)]);
    let (unsafe_before, unknown_before) = (count("unsafe_resource"), count("unknown_resource"));
    let (too_large_before, invalid_before) = (count("too_large"), count("invalid_zip"));

    let path_text =
        |path: &str| format!("The resource file path is invalid: File path '{path}' is not safe.");
    let mode_text = |mode: &str, path: &str| {
        format!(
            "The resource file mode is invalid: File mode '{mode}' with path '{path}' is invalid. Minimum file mode is '0600'"
        )
    };
    let unknown_upper = zips::sha1_hex(b"not in the pool").to_uppercase();
    let app_zip = || Some(zips::small_app("failing"));
    let with_directory = zips::zip(&[
        Entry::file("assets/", b""),
        Entry::file("index.html", b"<h1>x</h1>"),
    ]);
    let near_limit = zips::zip(&[Entry::file("padding.bin", &random_bytes(12_500))]);

    let unsafe_cases: Vec<Failure> = vec![
        (
            None,
            json!([small.ga("/etc/evil.bin", None)]),
            path_text("/etc/evil.bin"),
        ),
        (
            None,
            json!([small.ga("../evil.bin", None)]),
            path_text("../evil.bin"),
        ),
        (
            None,
            json!([small.ga("a/../../evil.bin", None)]),
            path_text("a/../../evil.bin"),
        ),
        (
            None,
            json!([small.v2("C:/evil.bin", None)]),
            path_text("C:/evil.bin"),
        ),
        (None, json!([small.ga("a/..", None)]), path_text("a/..")),
        (
            None,
            json!([{"checksum": {"value": small.sha1}, "size_in_bytes": 1000, "mode": "644"}]),
            path_text(""),
        ),
        (
            None,
            json!([{"sha1": small.sha1, "size": 1000}]),
            path_text(""),
        ),
        (None, json!([{}]), path_text("")),
        (
            None,
            json!([small.ga("a.bin", Some("0400"))]),
            mode_text("0400", "a.bin"),
        ),
        (
            None,
            json!([small.ga("a.bin", Some("abc"))]),
            mode_text("abc", "a.bin"),
        ),
        (
            None,
            json!([{"checksum": {"value": small.sha1}, "size_in_bytes": 1000, "path": "a.bin", "mode": 420}]),
            mode_text("420", "a.bin"),
        ),
        // Paths and modes of every fingerprint are checked before the pool is asked; the
        // first failure ends it.
        (
            None,
            json!([
                {"checksum": {"value": unknown_upper}, "size_in_bytes": 10, "path": "ok.bin"},
                small.ga("../evil.bin", None)
            ]),
            path_text("../evil.bin"),
        ),
        (
            None,
            json!([
                small.ga("x.bin", Some("0200")),
                small.ga("../evil.bin", None)
            ]),
            mode_text("0200", "x.bin"),
        ),
        // A resource colliding with a directory of the package.
        (
            app_zip(),
            json!([small.ga("lib", Some("644"))]),
            path_text("lib"),
        ),
        (
            Some(with_directory),
            json!([small.ga("assets", Some("644"))]),
            path_text("assets"),
        ),
        (
            None,
            json!([small.ga("x/y.bin", None), small.ga("x", None)]),
            path_text("x"),
        ),
    ];
    let unknown_cases: Vec<Failure> = vec![
        (
            None,
            json!([small.ga("ok.bin", None), {"checksum": {"value": unknown_upper}, "size_in_bytes": 1000, "path": "b.bin"}]),
            format!("Could not find object '{unknown_upper}'"),
        ),
        (
            app_zip(),
            json!([{"checksum": {"value": small.sha1}, "size_in_bytes": 999, "path": "a.bin"}]),
            format!("Could not find object '{}'", small.sha1),
        ),
        (
            None,
            json!([{"sha1": small.sha1, "size": 8000, "fn": "a.bin"}]),
            format!("Could not find object '{}'", small.sha1),
        ),
        (
            None,
            json!([{"checksum": {}, "size_in_bytes": 1000, "path": "a.bin"}]),
            "Could not find object ''".to_owned(),
        ),
        (
            None,
            json!([{"size": 1000, "fn": "a.bin"}]),
            "Could not find object ''".to_owned(),
        ),
    ];
    let other_cases: Vec<Failure> = vec![
        // Resources over packages.max_package_size, alone or with the upload's entries.
        (
            None,
            json!([
                large.ga("1.bin", None),
                large.ga("2.bin", None),
                large.ga("3.bin", None)
            ]),
            TOO_LARGE.to_owned(),
        ),
        (
            Some(near_limit),
            json!([large.ga("1.bin", None)]),
            TOO_LARGE.to_owned(),
        ),
        // An empty uploaded zip is not valid, resources or not.
        (
            Some(zips::zip(&[])),
            json!([small.ga("a.bin", None)]),
            INVALID_ZIP.to_owned(),
        ),
    ];
    for (bits, resources, error) in unsafe_cases
        .iter()
        .chain(&unknown_cases)
        .chain(&other_cases)
    {
        let p = assemble(&svc, &ctx.app, bits.clone(), resources).await;
        assert_eq!(p["state"], "FAILED", "{resources}: {p}");
        assert_eq!(p["data"]["error"], error.as_str(), "{resources}");
        assert_eq!(p["data"]["hash"]["value"], Value::Null, "{p}");
    }
    let counted = |n: usize| n as f64;
    assert_failed_count(
        &svc,
        "unsafe_resource",
        unsafe_before + counted(unsafe_cases.len()),
    )
    .await;
    assert_failed_count(
        &svc,
        "unknown_resource",
        unknown_before + counted(unknown_cases.len()),
    )
    .await;
    assert_failed_count(&svc, "too_large", too_large_before + 2.0).await;
    assert_failed_count(&svc, "invalid_zip", invalid_before + 1.0).await;

    // Within the limit, the same files assemble.
    let p = assemble(
        &svc,
        &ctx.app,
        None,
        &json!([
            large.ga("1.bin", None),
            large.ga("2.bin", None),
            small.ga("3.bin", None)
        ]),
    )
    .await;
    assert_eq!(p["state"], "READY", "{p}");
}

#[tokio::test]
async fn corrupt_pool_entries_fail_the_package_and_leave_the_pool() {
    let svc = Service::start_with(small_pool()).await;
    let ctx = svc.ctx().await;
    let user = svc.token("any-writer", READ_WRITE);
    let first = PoolFile::random("first.bin", 1000);
    let second = PoolFile::random("second.bin", 1200);
    let third = PoolFile::random("third.bin", 1500);
    seed(&svc, &ctx.app, &[&first, &second, &third]).await;
    let reason = |text: &str| {
        metric(
            text,
            "packages_failed_total",
            &[("reason", "resource_checksum")],
        )
    };
    let before = reason(&svc.metrics().await);

    // Two entries lose their bytes (same length: the index still agrees on the size).
    overwrite_pool_entry(&svc, &first.pool_key(), random_bytes(1000)).await;
    overwrite_pool_entry(&svc, &third.pool_key(), random_bytes(1500)).await;

    let resources = json!([
        first.ga("a.bin", None),
        second.ga("b.bin", None),
        third.v2("c.bin", Some("644")),
    ]);
    let p = assemble(&svc, &ctx.app, Some(zips::small_app("corrupt")), &resources).await;
    assert_eq!(p["state"], "FAILED", "{p}");
    assert_eq!(p["data"]["error"], MISMATCH);
    assert_failed_count(&svc, "resource_checksum", before + 1.0).await;

    // The corrupt entries are gone, from the blobstore and from matching; the good one
    // stays.
    assert!(!svc.blob_exists(&first.pool_key()).await);
    assert!(!svc.blob_exists(&third.pool_key()).await);
    assert!(svc.blob_exists(&second.pool_key()).await);
    assert_eq!(
        matches(
            &svc,
            &user,
            json!([
                fingerprint(&first.sha1, 1000),
                fingerprint(&second.sha1, 1200),
                fingerprint(&third.sha1, 1500)
            ])
        )
        .await,
        [
            json!({"checksum": {"value": second.sha1}, "size_in_bytes": 1200, "path": null, "mode": null})
        ]
    );

    // As the text says: upload the files again, then the same resources assemble.
    seed(&svc, &ctx.app, &[&first, &third]).await;
    assert!(svc.blob_exists(&first.pool_key()).await);
    let p = assemble(&svc, &ctx.app, Some(zips::small_app("retry")), &resources).await;
    assert_eq!(p["state"], "READY", "{p}");
    let entries = read_zip(&download(&svc, p["guid"].as_str().unwrap()).await);
    let data = |name: &str| &entries.iter().find(|e| e.name == name).unwrap().data;
    assert_eq!(data("a.bin"), &first.bytes);
    assert_eq!(data("b.bin"), &second.bytes);
    assert_eq!(data("c.bin"), &third.bytes);
}

/// A file whose bytes do not match its CRC-32 (the headers all agree, so only the pass
/// that hashes the pool's files can tell): the package would not unpack, so it is FAILED
/// and the pool takes none of its files, not even the intact ones read before it (the
/// large one was already being written into the pool as it was read).
#[tokio::test]
async fn damaged_files_fail_the_package_before_the_pool_takes_any() {
    let svc = Service::start_with(
        Options::default()
            .with("resource_pool.minimum_size", 16)
            .with("resource_pool.maximum_size", 4 << 20),
    )
    .await;
    let ctx = svc.ctx().await;
    let good = PoolFile::random("good.bin", 1000);
    let large = PoolFile::random("lib/large.bin", 2 << 20);
    let bad = PoolFile::random("lib/bad.bin", 1200);
    let mut zip = zips::zip(&[good.entry(), large.entry(), bad.entry()]);
    let at = zip
        .windows(bad.size())
        .position(|w| w == bad.bytes.as_slice())
        .expect("the stored bytes are in the zip");
    zip[at + 600] ^= 0x01;

    let p = svc.upload_and_wait(&ctx.app, zip).await;
    assert_eq!(p["state"], "FAILED", "{p}");
    let error = p["data"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("The zip provided was not valid: entry 'lib/bad.bin'")
            && error.ends_with("is damaged: its CRC-32 does not match"),
        "{error}"
    );
    for f in [&good, &large, &bad] {
        assert!(
            !svc.blob_exists(&f.pool_key()).await,
            "{} is not pooled",
            f.path
        );
    }
    let guid = p["guid"].as_str().unwrap();
    assert!(
        !svc.blob_exists(&format!("{}/{}/{guid}", &guid[..2], &guid[2..4]))
            .await,
        "no bits are kept"
    );
    assert_eq!(svc.staged_blobs().await, Vec::<String>::new());
}

/// Pool files do not make the package wait for the disk: they match as soon as the
/// package is READY, and the same job syncs them right after it.
#[tokio::test]
async fn pool_files_match_at_ready_and_are_synced_after_it() {
    let svc = Service::start_with(small_pool()).await;
    let ctx = svc.ctx().await;
    let user = svc.token("any-writer", READ_WRITE);
    let a = PoolFile::random("a.bin", 5000);
    let b = PoolFile::random("lib/b.bin", 7000);
    let guid = seed(&svc, &ctx.app, &[&a, &b]).await;
    let request = json!([
        fingerprint(&a.sha1, a.size()),
        fingerprint(&b.sha1, b.size())
    ]);
    assert_eq!(matches(&svc, &user, request).await.len(), 2);

    // Every line the job logged, wherever it ran.
    let logs = || svc.api_log() + &svc.worker_logs();
    let synced = |logs: &str| {
        logs.lines()
            .any(|l| l.contains(&guid) && l.contains("resource pool synced files=2"))
    };
    svc.wait_until(Duration::from_secs(30), || synced(&logs()))
        .await;
    let logs = logs();
    let job: Vec<&str> = logs.lines().filter(|l| l.contains(&guid)).collect();
    let at = |what: &str| job.iter().position(|l| l.contains(what));
    let (ready, synced) = (at("package READY"), at("resource pool synced"));
    assert!(
        ready.is_some() && ready < synced,
        "READY, then the sync:\n{}",
        job.join("\n")
    );
}

/// Files of 1 MiB or more that the pool lacks are written into it while the package is
/// read; one whose size the pool already holds is not, and still is pooled when its
/// SHA-1 is new. On S3 a stored (uncompressed) one is instead copied by the server from
/// its range of the package, so its bytes do not pass through the worker again; a
/// deflated one is written ahead there too. Either way the pool ends with exactly the
/// files, and nothing is left in the staging area.
#[tokio::test]
async fn large_files_reach_the_pool_whole_whichever_way_they_are_written() {
    let svc = Service::start_with(
        Options::default()
            .with("resource_pool.minimum_size", 16)
            .with("resource_pool.maximum_size", 8 << 20),
    )
    .await;
    let ctx = svc.ctx().await;
    let user = svc.token("any-writer", READ_WRITE);
    let first = PoolFile::random("a.bin", 3 << 20);
    let twin = PoolFile::new("copy/a.bin", first.bytes.clone());
    let small = PoolFile::random("s.bin", 5000);
    seed(&svc, &ctx.app, &[&first, &small, &twin]).await;
    // Same size as `first`, other bytes: written after the pass, from the package.
    let same_size = PoolFile::random("b.bin", 3 << 20);
    let other = PoolFile::random("c.bin", (1 << 20) + 7);
    seed(&svc, &ctx.app, &[&same_size, &first, &other]).await;
    // Deflated: its stored bytes are not the file's.
    let deflated = PoolFile::random("d.bin", 2 << 20);
    let p = svc
        .upload_and_wait(&ctx.app, deflated_zip(&[&deflated, &small]))
        .await;
    assert_eq!(p["state"], "READY", "{p}");

    // How each upload added its files.
    let filled: Vec<String> = svc
        .logs()
        .lines()
        .filter(|l| l.contains("resource pool filled"))
        .map(|l| {
            l.split("filled")
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect();
    let expected = match packages_tests::mode() {
        packages_tests::Mode::Embedded => [
            "added=2 written_ahead=1 copied_in_store=0",
            "added=2 written_ahead=1 copied_in_store=0",
            "added=1 written_ahead=1 copied_in_store=0",
        ],
        packages_tests::Mode::Stack => [
            "added=2 written_ahead=0 copied_in_store=1",
            "added=2 written_ahead=0 copied_in_store=2",
            "added=1 written_ahead=1 copied_in_store=0",
        ],
    };
    assert_eq!(filled, expected);
    let pooled = [&first, &small, &same_size, &other, &deflated];
    for f in pooled {
        let key = f.pool_key();
        assert!(svc.blob_exists(&key).await, "{} is pooled", f.path);
    }
    let request: Vec<Value> = pooled
        .iter()
        .map(|f| fingerprint(&f.sha1, f.size()))
        .collect();
    assert_eq!(matches(&svc, &user, json!(request)).await.len(), 5);
    // Pooled bytes are the files': a package assembled from them downloads them back.
    let resources = json!([
        first.ga("x/a.bin", None),
        same_size.ga("x/b.bin", None),
        other.ga("x/c.bin", None),
        deflated.ga("x/d.bin", None),
    ]);
    let p = assemble(
        &svc,
        &ctx.app,
        Some(zips::small_app("from-pool")),
        &resources,
    )
    .await;
    assert_eq!(p["state"], "READY", "{p}");
    let entries = read_zip(&download(&svc, p["guid"].as_str().unwrap()).await);
    let data = |name: &str| &entries.iter().find(|e| e.name == name).unwrap().data;
    assert!(*data("x/a.bin") == first.bytes);
    assert!(*data("x/b.bin") == same_size.bytes);
    assert!(*data("x/c.bin") == other.bytes);
    assert!(*data("x/d.bin") == deflated.bytes);
    assert_eq!(svc.staged_blobs().await, Vec::<String>::new());
}

/// A zip of `files`, each deflated.
fn deflated_zip(files: &[&PoolFile]) -> Vec<u8> {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for f in files {
        zip.start_file(f.path.as_str(), options).unwrap();
        zip.write_all(&f.bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}
