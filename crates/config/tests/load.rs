#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use packages_config::{
    BlobstoreKind, ConfigError, KEYS, LogFormat, QueueUrl, Settings, load, load_from,
};
use tempfile::NamedTempFile;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn config_file(text: &str) -> NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn from_file(text: &str) -> Result<Settings, ConfigError> {
    let file = config_file(text);
    load_from(Some(file.path()), env(&[]))
}

fn from_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load_from(None, env(pairs))
}

/// The error's message, checked to be the single line the contract asks for.
fn message(result: Result<Settings, ConfigError>) -> String {
    let err = result.unwrap_err();
    let message = err.to_string();
    assert!(!message.contains('\n'), "not one line: {message:?}");
    message
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_equal_the_contract() {
    let s = Settings::defaults();
    assert_eq!(s.server.bind, addr("127.0.0.1:8080"));
    assert_eq!(s.server.external_url, None);
    assert_eq!(s.worker.bind, addr("127.0.0.1:8081"));
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(s.worker.concurrency, cores);
    assert_eq!(s.database.url, "sqlite://data/packages.db");
    assert_eq!(s.database.pool_size, 16);
    assert_eq!(s.queue.url, QueueUrl::Embedded);
    assert_eq!(s.queue.prefix, "packages");
    assert_eq!(s.queue.delivery_limit, 5);
    assert_eq!(s.blobstore.kind, BlobstoreKind::Local);
    assert_eq!(s.blobstore.local.root, PathBuf::from("data/blobs"));
    assert_eq!(s.blobstore.s3.endpoint, None);
    assert_eq!(s.blobstore.s3.region, "us-east-1");
    assert_eq!(s.blobstore.s3.bucket, "cc-packages");
    assert_eq!(s.blobstore.s3.access_key, None);
    assert_eq!(s.blobstore.s3.secret_key, None);
    assert!(s.blobstore.s3.path_style);
    assert_eq!(s.blobstore.presign_expiry_secs, 3600);
    assert_eq!(s.auth.jwt_secret, None);
    assert_eq!(s.auth.jwt_public_key, None);
    assert!(!s.auth.has_key());
    assert_eq!(s.auth.audience, "cloud_controller");
    assert_eq!(s.auth.uaa_url, None);
    assert_eq!(s.upload.bits_path_root, None);
    assert_eq!(s.upload.max_body_bytes, 1024 * 1024 * 1024);
    assert_eq!(s.packages.max_package_size, 536_870_912);
    assert_eq!(s.packages.max_valid_packages_stored, 5);
    assert_eq!(s.packages.pending_timeout_secs, 1200);
    assert_eq!(s.log.format, LogFormat::Text);
    assert_eq!(s.log.level, "info");
}

#[test]
fn nothing_configured_gives_the_defaults() {
    let unrelated = env(&[
        ("PATH", "/usr/bin"),
        ("PACKAGES_CONFIG", "/nonexistent.toml"),
        ("PACKAGES_X", "1"),
    ]);
    assert_eq!(load_from(None, unrelated).unwrap(), Settings::defaults());
}

#[test]
fn keys_list_documents_the_real_defaults() {
    let concrete: Vec<(String, String)> = KEYS
        .iter()
        .filter(|(_, default, _)| !matches!(*default, "none" | "number of cores"))
        .map(|(key, default, _)| (env_name(key), (*default).to_owned()))
        .collect();
    // Setting every key to its documented default must change nothing.
    assert_eq!(load_from(None, concrete).unwrap(), Settings::defaults());
    let none = KEYS.iter().filter(|(_, d, _)| *d == "none").count();
    assert_eq!(none, 13, "optional keys");
}

#[test]
fn keys_are_unique_and_in_contract_order() {
    let names: Vec<&str> = KEYS.iter().map(|(k, _, _)| *k).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    assert_eq!(names.len(), 47);
    assert_eq!(names.first(), Some(&"server.bind"));
    assert_eq!(names.last(), Some(&"log.level"));
    let position = |k: &str| names.iter().position(|n| *n == k).unwrap();
    assert_eq!(
        position("queue.delivery_limit"),
        position("queue.prefix") + 1
    );
    assert!(position("blobstore.s3.secret_key") < position("blobstore.presign_expiry_secs"));
    assert!(position("packages.pending_timeout_secs") < position("log.format"));
}

fn env_name(key: &str) -> String {
    format!("PACKAGES__{}", key.replace('.', "__").to_ascii_uppercase())
}

/// A valid value for `key` that differs from its default.
fn sample(key: &str) -> &'static str {
    match key {
        "server.bind" | "worker.bind" | "server.ops_bind" => "0.0.0.0:9999",
        "server.external_url"
        | "blobstore.s3.endpoint"
        | "blobstore.s3.public_endpoint"
        | "auth.uaa_url"
        | "auth.issuer" => "https://h.example",
        "database.url" => "postgres://u:p@db/packages",
        "queue.url" => "amqp://u:p@mq:5672/%2f",
        "queue.prefix" => "other-prefix",
        "blobstore.kind" => "s3",
        "blobstore.local.root" | "upload.bits_path_root" => "/srv/somewhere",
        "blobstore.s3.path_style" => "false",
        "log.format" => "json",
        "log.level" => "debug",
        "auth.jwt_secret" => "a-secret-of-at-least-thirty-two-bytes",
        "upload.proxy_secret" => "a-proxy-secret-of-enough-bytes",
        "packages.encryption_key" => "an-encryption-key-of-at-least-32-characters",
        "resource_pool.maximum_size" => "1000000",
        "worker.concurrency"
        | "worker.large_job_concurrency"
        | "worker.max_attempts"
        | "worker.retry_base_ms"
        | "database.pool_size"
        | "queue.delivery_limit"
        | "blobstore.presign_expiry_secs"
        | "upload.max_body_bytes"
        | "upload.direct_link_ttl_secs"
        | "auth.token_keys_min_interval_secs"
        | "packages.max_package_size"
        | "packages.max_valid_packages_stored"
        | "packages.pending_timeout_secs"
        | "packages.max_zip_entries"
        | "packages.max_zip_name_bytes"
        | "packages.max_zip_symlinks"
        | "resource_pool.minimum_size"
        | "server.body_idle_timeout_secs"
        | "server.max_connections"
        | "server.shutdown_timeout_secs" => "777",
        _ => "some-text",
    }
}

#[test]
fn resource_pool_bounds_must_be_in_order_and_keys_long_enough() {
    let err = from_env(&[
        ("PACKAGES__RESOURCE_POOL__MINIMUM_SIZE", "2000"),
        ("PACKAGES__RESOURCE_POOL__MAXIMUM_SIZE", "1000"),
    ])
    .unwrap_err();
    assert_eq!(err.key(), Some("resource_pool.minimum_size"));
    assert!(err.to_string().contains("2000 > 1000"), "{err}");
    let err = from_env(&[("PACKAGES__PACKAGES__ENCRYPTION_KEY", "short")]).unwrap_err();
    assert_eq!(err.key(), Some("packages.encryption_key"));
    assert!(!err.to_string().contains("short"), "the key leaked: {err}");
    // Equal bounds are allowed: the pool then takes files of one size and matches none.
    let equal = from_env(&[
        ("PACKAGES__RESOURCE_POOL__MINIMUM_SIZE", "1000"),
        ("PACKAGES__RESOURCE_POOL__MAXIMUM_SIZE", "1000"),
    ])
    .unwrap();
    assert_eq!(equal.resource_pool.minimum_size, 1000);
}

#[test]
fn every_listed_key_is_a_real_key_that_changes_its_setting() {
    for (key, _, _) in KEYS {
        let name = env_name(key);
        // The proxy root is only accepted together with its secret.
        let secret = env_name("upload.proxy_secret");
        let mut vars = vec![(name.as_str(), sample(key))];
        if *key == "upload.bits_path_root" {
            vars.push((&secret, sample("upload.proxy_secret")));
        }
        let loaded = from_env(&vars).unwrap_or_else(|err| panic!("{key} via {name}: {err}"));
        assert_ne!(loaded, Settings::defaults(), "{key} changed nothing");
    }
}

#[test]
fn every_listed_key_is_accepted_in_the_file() {
    for (key, _, _) in KEYS {
        let (section, leaf) = key.rsplit_once('.').unwrap();
        let value = sample(key);
        let value = if value.parse::<u64>().is_ok() || value == "false" {
            value.to_owned()
        } else {
            format!("{value:?}")
        };
        let mut text = format!("[{section}]\n{leaf} = {value}\n");
        if *key == "upload.bits_path_root" {
            text.push_str("proxy_secret = \"a-proxy-secret-of-enough-bytes\"\n");
        }
        let loaded = from_file(&text).unwrap_or_else(|err| panic!("{key}: {err}"));
        assert_ne!(loaded, Settings::defaults(), "{key} changed nothing");
    }
}

#[test]
fn file_overrides_defaults_and_may_be_partial() {
    let s = from_file(
        r#"
[server]
bind = "0.0.0.0:80"
external_url = "https://api.example.org/"

[database]
pool_size = 4

[blobstore]
kind = "s3"
presign_expiry_secs = 60
s3 = { endpoint = "http://127.0.0.1:9000", access_key = "minio", secret_key = "minio123", path_style = false }

[auth]
jwt_secret = "s3cret-s3cret-s3cret-s3cret-s3cret"
"#,
    )
    .unwrap();
    assert_eq!(s.server.bind, addr("0.0.0.0:80"));
    assert_eq!(
        s.server.external_url.as_deref(),
        Some("https://api.example.org")
    );
    assert_eq!(s.database.pool_size, 4);
    assert_eq!(s.blobstore.kind, BlobstoreKind::S3);
    assert_eq!(s.blobstore.presign_expiry_secs, 60);
    assert_eq!(
        s.blobstore.s3.endpoint.as_deref(),
        Some("http://127.0.0.1:9000")
    );
    assert_eq!(s.blobstore.s3.access_key.as_deref(), Some("minio"));
    assert_eq!(s.blobstore.s3.secret_key.as_deref(), Some("minio123"));
    assert!(!s.blobstore.s3.path_style);
    assert!(s.auth.has_key());
    // Untouched keys keep their defaults.
    let d = Settings::defaults();
    assert_eq!(s.database.url, d.database.url);
    assert_eq!(s.blobstore.s3.bucket, d.blobstore.s3.bucket);
    assert_eq!(s.worker, d.worker);
    assert_eq!(s.packages, d.packages);
}

#[test]
fn env_overrides_file() {
    let file = config_file("[database]\nurl = \"sqlite://file.db\"\npool_size = 4\n");
    let s = load_from(
        Some(file.path()),
        env(&[
            ("PACKAGES__DATABASE__URL", "postgresql://db/packages"),
            ("PACKAGES__QUEUE__URL", "amqps://mq/vhost"),
        ]),
    )
    .unwrap();
    assert_eq!(s.database.url, "postgresql://db/packages");
    assert_eq!(s.database.pool_size, 4);
    assert_eq!(s.queue.url, QueueUrl::Amqp("amqps://mq/vhost".to_owned()));
}

#[test]
fn env_numbers_and_booleans_are_parsed() {
    let s = from_env(&[
        ("PACKAGES__UPLOAD__MAX_BODY_BYTES", "2048"),
        ("PACKAGES__WORKER__CONCURRENCY", "3"),
        ("PACKAGES__PACKAGES__PENDING_TIMEOUT_SECS", "60"),
        ("PACKAGES__BLOBSTORE__S3__PATH_STYLE", "false"),
        ("PACKAGES__QUEUE__DELIVERY_LIMIT", "9"),
    ])
    .unwrap();
    assert_eq!(s.upload.max_body_bytes, 2048);
    assert_eq!(s.worker.concurrency, 3);
    assert_eq!(s.packages.pending_timeout_secs, 60);
    assert!(!s.blobstore.s3.path_style);
    assert_eq!(s.queue.delivery_limit, 9);
}

#[test]
fn string_keys_stay_text_even_when_they_look_like_numbers() {
    let s = from_env(&[
        ("PACKAGES__BLOBSTORE__S3__ACCESS_KEY", "12345"),
        ("PACKAGES__BLOBSTORE__S3__SECRET_KEY", "00123"),
        ("PACKAGES__UPLOAD__PROXY_SECRET", "12345678901234567890"),
        ("PACKAGES__BLOBSTORE__S3__BUCKET", "2024"),
        ("PACKAGES__AUTH__AUDIENCE", "1.5"),
    ])
    .unwrap();
    assert_eq!(s.blobstore.s3.access_key.as_deref(), Some("12345"));
    assert_eq!(s.blobstore.s3.secret_key.as_deref(), Some("00123"));
    assert_eq!(
        s.upload.proxy_secret.as_deref(),
        Some("12345678901234567890")
    );
    assert_eq!(s.blobstore.s3.bucket, "2024");
    assert_eq!(s.auth.audience, "1.5");
}

#[test]
fn empty_env_value_unsets_an_optional_key() {
    let file = config_file(
        "[server]\nexternal_url = \"https://a.example\"\n[auth]\njwt_secret = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n",
    );
    let s = load_from(
        Some(file.path()),
        env(&[
            ("PACKAGES__SERVER__EXTERNAL_URL", ""),
            ("PACKAGES__AUTH__JWT_SECRET", ""),
            ("PACKAGES__UPLOAD__BITS_PATH_ROOT", ""),
        ]),
    )
    .unwrap();
    assert_eq!(s.server.external_url, None);
    assert_eq!(s.auth.jwt_secret, None);
    assert_eq!(s.upload.bits_path_root, None);
}

#[test]
fn empty_env_value_for_a_required_key_is_an_error() {
    let m = message(from_env(&[("PACKAGES__DATABASE__URL", "")]));
    assert!(m.starts_with("database.url: "), "{m}");
    let m = message(from_env(&[("PACKAGES__AUTH__AUDIENCE", "")]));
    assert!(m.starts_with("auth.audience: must not be empty"), "{m}");
    let m = message(from_env(&[("PACKAGES__DATABASE__POOL_SIZE", "")]));
    assert!(m.starts_with("database.pool_size: "), "{m}");
}

#[test]
fn unknown_key_in_file_is_an_error() {
    let m = message(from_file("[server]\nbnd = \"127.0.0.1:1\"\n"));
    assert!(
        m.starts_with("unknown configuration key 'server.bnd'"),
        "{m}"
    );
    assert!(m.contains("in config file"), "{m}");
    let m = message(from_file(
        "[blobstore.s3]\nregion = \"x\"\nsecret = \"y\"\n",
    ));
    assert!(m.contains("'blobstore.s3.secret'"), "{m}");
    let m = message(from_file("bind = \"127.0.0.1:1\"\n"));
    assert!(m.contains("'bind'"), "{m}");
}

#[test]
fn unknown_section_is_an_error() {
    let m = message(from_file("[servr]\nbind = \"127.0.0.1:1\"\n"));
    assert!(m.starts_with("unknown configuration key 'servr'"), "{m}");
    let m = message(from_file("[blobstore.gcs]\nbucket = \"b\"\n"));
    assert!(m.contains("'blobstore.gcs'"), "{m}");
    let m = message(from_env(&[("PACKAGES__METRICS__BIND", "127.0.0.1:1")]));
    assert!(m.contains("'metrics.bind'"), "{m}");
}

#[test]
fn unknown_key_in_env_is_an_error() {
    let m = message(from_env(&[("PACKAGES__SERVER__BND", "127.0.0.1:1")]));
    assert_eq!(
        m,
        "unknown configuration key 'server.bnd' (from environment variable PACKAGES__SERVER__BND)"
    );
    let m = message(from_env(&[("PACKAGES__SERVER", "x")]));
    assert!(m.contains("'server'"), "{m}");
    let m = message(from_env(&[("PACKAGES__SERVER.BIND", "127.0.0.1:1")]));
    assert!(m.starts_with("unknown configuration key"), "{m}");
}

#[test]
fn quoted_dotted_key_does_not_alias_a_nested_key() {
    let m = message(from_file("\"server.bind\" = \"127.0.0.1:1\"\n"));
    assert!(m.starts_with("unknown configuration key"), "{m}");
}

#[test]
fn a_section_must_be_a_table() {
    let m = message(from_file("server = 5\n"));
    assert!(m.starts_with("server: expected a table"), "{m}");
}

#[test]
fn bad_socket_address_names_the_key() {
    let m = message(from_env(&[("PACKAGES__SERVER__BIND", "x")]));
    assert!(
        m.starts_with("server.bind: invalid socket address 'x'"),
        "{m}"
    );
    assert!(
        m.ends_with("(from environment variable PACKAGES__SERVER__BIND)"),
        "{m}"
    );
    let m = message(from_file("[worker]\nbind = \"localhost\"\n"));
    assert!(m.starts_with("worker.bind: invalid socket address"), "{m}");
}

#[test]
fn bad_database_url_names_the_key_without_the_password() {
    let m = message(from_env(&[(
        "PACKAGES__DATABASE__URL",
        "mysql://u:hunter2@db/x",
    )]));
    assert!(
        m.starts_with("database.url: unsupported database URL"),
        "{m}"
    );
    assert!(!m.contains("hunter2"), "{m}");
    let m = message(from_env(&[("PACKAGES__DATABASE__URL", "sqlite://")]));
    assert!(m.starts_with("database.url: "), "{m}");
    assert!(from_env(&[("PACKAGES__DATABASE__URL", "sqlite:///abs/p.db")]).is_ok());
}

#[test]
fn bad_queue_url_names_the_key() {
    let m = message(from_env(&[("PACKAGES__QUEUE__URL", "redis://h")]));
    assert!(
        m.starts_with("queue.url: unsupported queue URL 'redis://h'"),
        "{m}"
    );
    let m = message(from_env(&[("PACKAGES__QUEUE__URL", "Embedded")]));
    assert!(m.starts_with("queue.url: "), "{m}");
}

#[test]
fn bad_enumerations_name_the_key() {
    let m = message(from_env(&[("PACKAGES__BLOBSTORE__KIND", "gcs")]));
    assert!(
        m.starts_with("blobstore.kind: unknown blobstore kind 'gcs'"),
        "{m}"
    );
    let m = message(from_env(&[("PACKAGES__LOG__FORMAT", "yaml")]));
    assert!(m.starts_with("log.format: "), "{m}");
    let m = message(from_env(&[("PACKAGES__BLOBSTORE__S3__PATH_STYLE", "yes")]));
    assert!(m.starts_with("blobstore.s3.path_style: "), "{m}");
}

#[test]
fn bad_numbers_name_the_key() {
    let m = message(from_file("[database]\npool_size = -1\n"));
    assert!(
        m.starts_with("database.pool_size: expected a non-negative integer, got -1"),
        "{m}"
    );
    let m = message(from_env(&[("PACKAGES__UPLOAD__MAX_BODY_BYTES", "abc")]));
    assert!(
        m.starts_with("upload.max_body_bytes: expected a non-negative integer, got 'abc'"),
        "{m}"
    );
    let m = message(from_env(&[("PACKAGES__PACKAGES__MAX_PACKAGE_SIZE", "-5")]));
    assert!(m.starts_with("packages.max_package_size: "), "{m}");
    let m = message(from_env(&[("PACKAGES__DATABASE__POOL_SIZE", "4294967296")]));
    assert!(m.starts_with("database.pool_size: "), "{m}");
    let m = message(from_file("[database]\npool_size = \"16\"\n"));
    assert!(
        m.starts_with("database.pool_size: expected a non-negative integer, got string"),
        "{m}"
    );
    let m = message(from_file("[database]\npool_size = 1.5\n"));
    assert!(m.starts_with("database.pool_size: "), "{m}");
}

#[test]
fn zero_concurrency_and_pool_size_are_errors() {
    let m = message(from_env(&[("PACKAGES__WORKER__CONCURRENCY", "0")]));
    assert_eq!(
        m,
        "worker.concurrency: must be between 1 and 65535, got 0 (from environment variable PACKAGES__WORKER__CONCURRENCY)"
    );
    let m = message(from_file("[database]\npool_size = 0\n"));
    assert!(
        m.starts_with("database.pool_size: must be at least 1, got 0"),
        "{m}"
    );
    let m = message(from_env(&[("PACKAGES__QUEUE__DELIVERY_LIMIT", "0")]));
    assert!(m.starts_with("queue.delivery_limit: "), "{m}");
}

#[test]
fn presign_expiry_is_bounded() {
    assert!(from_env(&[("PACKAGES__BLOBSTORE__PRESIGN_EXPIRY_SECS", "604800")]).is_ok());
    let m = message(from_env(&[(
        "PACKAGES__BLOBSTORE__PRESIGN_EXPIRY_SECS",
        "604801",
    )]));
    assert!(
        m.starts_with("blobstore.presign_expiry_secs: must be between 1 and 604800"),
        "{m}"
    );
}

#[test]
fn queue_prefix_is_checked() {
    assert!(from_env(&[("PACKAGES__QUEUE__PREFIX", "a.b_c-D9")]).is_ok());
    for bad in ["", "has space", "a/b", &"x".repeat(201)] {
        let m = message(from_env(&[("PACKAGES__QUEUE__PREFIX", bad)]));
        assert!(m.starts_with("queue.prefix: "), "{m}");
    }
    assert!(from_env(&[("PACKAGES__QUEUE__PREFIX", &"x".repeat(200))]).is_ok());
}

#[test]
fn urls_are_validated_and_lose_their_trailing_slash() {
    let s = from_env(&[
        (
            "PACKAGES__SERVER__EXTERNAL_URL",
            "http://localhost:8080/cf/",
        ),
        ("PACKAGES__AUTH__UAA_URL", "https://uaa.example.org/"),
    ])
    .unwrap();
    assert_eq!(
        s.server.external_url.as_deref(),
        Some("http://localhost:8080/cf")
    );
    assert_eq!(s.auth.uaa_url.as_deref(), Some("https://uaa.example.org"));
    let m = message(from_env(&[(
        "PACKAGES__SERVER__EXTERNAL_URL",
        "api.example.org",
    )]));
    assert!(m.starts_with("server.external_url: "), "{m}");
    let m = message(from_env(&[(
        "PACKAGES__BLOBSTORE__S3__ENDPOINT",
        "s3.local:9000",
    )]));
    assert!(m.starts_with("blobstore.s3.endpoint: "), "{m}");
}

#[test]
fn wrong_type_in_file_names_the_key_but_not_the_value() {
    let m = message(from_file("[auth]\njwt_secret = 123456\n"));
    assert!(
        m.starts_with("auth.jwt_secret: expected a string, got integer"),
        "{m}"
    );
    assert!(!m.contains("123456"), "{m}");
    let m = message(from_file("[blobstore.s3]\npath_style = \"true\"\n"));
    assert!(m.starts_with("blobstore.s3.path_style: "), "{m}");
    let m = message(from_file("[server.bind]\nx = 1\n"));
    assert!(
        m.starts_with("server.bind: expected a string, got table"),
        "{m}"
    );
}

#[test]
fn missing_explicit_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let m = message(load_from(Some(&path), env(&[])));
    assert!(
        m.starts_with(&format!("cannot read config file '{}': ", path.display())),
        "{m}"
    );
    let m = message(load(Some(&path)));
    assert!(m.starts_with("cannot read config file"), "{m}");
}

#[test]
fn malformed_file_is_a_one_line_error() {
    let m = message(from_file("[server]\nbind = \"127.0.0.1:1\n"));
    assert!(m.starts_with("cannot parse config file '"), "{m}");
    assert!(m.contains("line 2"), "{m}");
}

#[test]
fn errors_expose_the_key() {
    let err = from_env(&[("PACKAGES__SERVER__BIND", "x")]).unwrap_err();
    assert_eq!(err.key(), Some("server.bind"));
    let err = load_from(Some(Path::new("/nonexistent/p.toml")), env(&[])).unwrap_err();
    assert_eq!(err.key(), None);
}

#[test]
fn later_duplicate_env_entry_wins() {
    let s = from_env(&[
        ("PACKAGES__DATABASE__POOL_SIZE", "2"),
        ("PACKAGES__DATABASE__POOL_SIZE", "3"),
    ])
    .unwrap();
    assert_eq!(s.database.pool_size, 3);
}

#[test]
fn debug_output_hides_secrets() {
    let s = from_env(&[
        (
            "PACKAGES__AUTH__JWT_SECRET",
            "jwt-topsecret-jwt-topsecret-jwt-topsecret",
        ),
        ("PACKAGES__UPLOAD__PROXY_SECRET", "proxy-topsecret-proxy"),
        ("PACKAGES__BLOBSTORE__S3__SECRET_KEY", "s3-topsecret"),
        ("PACKAGES__DATABASE__URL", "postgres://u:db-topsecret@db/x"),
        ("PACKAGES__QUEUE__URL", "amqp://u:mq-topsecret@mq/v"),
    ])
    .unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("topsecret"), "{debug}");
    assert!(debug.contains("postgres://u:***@db/x"), "{debug}");
}

#[test]
fn short_secrets_are_refused_without_showing_them() {
    let m = message(from_env(&[("PACKAGES__AUTH__JWT_SECRET", "s")]));
    assert!(
        m.starts_with("auth.jwt_secret: must be at least 32 bytes long, got 1"),
        "{m}"
    );
    let m = message(from_env(&[(
        "PACKAGES__AUTH__JWT_SECRET",
        "31-bytes-31-bytes-31-bytes-3133",
    )]));
    assert!(m.contains("got 31"), "{m}");
    assert!(!m.contains("31-bytes"), "{m}");
    let m = message(from_env(&[("PACKAGES__UPLOAD__PROXY_SECRET", "short")]));
    assert!(
        m.starts_with("upload.proxy_secret: must be at least 16 bytes"),
        "{m}"
    );
}

#[test]
fn a_proxy_root_needs_the_proxy_secret() {
    let m = message(from_env(&[("PACKAGES__UPLOAD__BITS_PATH_ROOT", "/srv/up")]));
    assert!(
        m.starts_with("upload.bits_path_root: requires upload.proxy_secret"),
        "{m}"
    );
    let s = from_env(&[
        ("PACKAGES__UPLOAD__BITS_PATH_ROOT", "/srv/up"),
        ("PACKAGES__UPLOAD__PROXY_SECRET", "sixteen-bytes-or-more"),
    ])
    .unwrap();
    assert_eq!(
        s.upload.proxy_secret.as_deref(),
        Some("sixteen-bytes-or-more")
    );
}
