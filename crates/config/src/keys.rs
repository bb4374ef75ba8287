//! The list of configuration keys and how each one is applied to [`Settings`].

use std::path::PathBuf;

use crate::settings::{BlobstoreKind, LogFormat, MAX_CONCURRENCY, QueueUrl, Settings};
use crate::value::{
    Raw, boolean, database_url, http_url, integer, optional_text, required_text, socket_addr, text,
};

/// Every configuration key as `(key, default, meaning)`, in the order of the operator
/// contract followed by the keys it leaves to the implementation. A default of `none`
/// means unset. This list is also what decides which keys exist.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("server.bind", "127.0.0.1:8080", "API listen address"),
    (
        "server.external_url",
        "none",
        "base of every absolute `href` (e.g. `https://api.example.org`); absent: the request's scheme and `Host` when they are a valid `http`/`https` origin, else the bind address",
    ),
    (
        "server.body_idle_timeout_secs",
        "15",
        "a request body that makes no progress for this long is answered 408 and its connection closed (idle time, not total time: slow uploads that keep sending are fine)",
    ),
    (
        "server.max_connections",
        "10000",
        "open connections the API accepts at once; further clients wait in the kernel's backlog, and a warning is logged when the cap is reached",
    ),
    (
        "server.shutdown_timeout_secs",
        "300",
        "on SIGTERM, how long requests in flight (uploads) may still run before they are cut; matches Kubernetes' grace period",
    ),
    (
        "worker.bind",
        "127.0.0.1:8081",
        "`packages-worker`'s `/metrics`, `/healthz`, `/readyz`; `packages` opens no second port: its `/metrics` on `server.bind` carries the API's and the worker's metrics",
    ),
    (
        "worker.concurrency",
        "number of cores",
        "jobs one worker process runs at once (AMQP prefetch)",
    ),
    (
        "worker.max_attempts",
        "5",
        "attempts of a job that keeps failing for infrastructure reasons (and re-drives of a stuck package) before its package is FAILED",
    ),
    (
        "worker.retry_base_ms",
        "1000",
        "first retry delay of such a job; doubles per attempt, capped at one minute",
    ),
    (
        "database.url",
        "sqlite://data/packages.db",
        "`sqlite://PATH` or `postgres://…`; migrations run at start-up",
    ),
    ("database.pool_size", "16", "r2d2 pool size"),
    (
        "queue.url",
        "embedded",
        "`embedded` (in-process, only valid for `packages`) or `amqp://user:pass@host:port/vhost`",
    ),
    (
        "queue.prefix",
        "packages",
        "prefix for every exchange and queue name, so two deployments can share one broker",
    ),
    (
        "queue.delivery_limit",
        "5",
        "deliveries of one job before the broker dead-letters it (`x-delivery-limit`)",
    ),
    ("blobstore.kind", "local", "`local` or `s3`"),
    (
        "blobstore.local.root",
        "data/blobs",
        "directory of the local blobstore",
    ),
    (
        "blobstore.s3.endpoint",
        "none",
        "e.g. `http://127.0.0.1:9000`; absent means AWS",
    ),
    ("blobstore.s3.region", "us-east-1", "region of the bucket"),
    (
        "blobstore.s3.bucket",
        "cc-packages",
        "bucket for package bits (created at start-up if missing)",
    ),
    ("blobstore.s3.access_key", "none", "credentials: access key"),
    ("blobstore.s3.secret_key", "none", "credentials: secret key"),
    (
        "blobstore.s3.path_style",
        "true",
        "path-style addressing (MinIO and most S3-compatible servers)",
    ),
    (
        "blobstore.presign_expiry_secs",
        "3600",
        "lifetime of the download redirect URL (at most 604800, seven days)",
    ),
    (
        "auth.jwt_secret",
        "none",
        "HS256 key (UAA symmetric key), at least 32 bytes",
    ),
    (
        "auth.jwt_public_key",
        "none",
        "RS256 PEM public key (UAA asymmetric key); at least one of the two is required",
    ),
    ("auth.audience", "cloud_controller", "required `aud` entry"),
    ("auth.uaa_url", "none", "UAA base URL advertised by `GET /`"),
    (
        "upload.bits_path_root",
        "none",
        "directory that a front proxy writes uploads into; `bits_path` uploads are accepted only for files inside it, and only with `upload.proxy_secret`; absent: such uploads get 422",
    ),
    (
        "upload.proxy_secret",
        "none",
        "shared secret the front proxy sends in `X-Upload-Proxy-Secret`; a `bits_path` upload without it is refused. Required with `upload.bits_path_root`; at least 16 bytes",
    ),
    (
        "upload.max_body_bytes",
        "1073741824",
        "larger request bodies get 413 before they are stored (default 1 GiB)",
    ),
    (
        "packages.max_package_size",
        "536870912",
        "largest total *uncompressed* size of a package's zip; larger → FAILED",
    ),
    (
        "packages.max_valid_packages_stored",
        "5",
        "READY bits packages kept per app; older ones become EXPIRED and their bits are deleted",
    ),
    (
        "packages.pending_timeout_secs",
        "1200",
        "a package in PROCESSING_UPLOAD or COPYING longer than this is re-driven, and FAILED with a reason once its retries are spent",
    ),
    (
        "packages.max_zip_entries",
        "250000",
        "most entries (files, directories, links) a package's zip may have; more → FAILED",
    ),
    (
        "packages.max_zip_name_bytes",
        "4096",
        "longest entry name in a package's zip, in bytes (Linux's PATH_MAX); longer → FAILED",
    ),
    (
        "packages.max_zip_symlinks",
        "10000",
        "most symlink entries a package's zip may have; more → FAILED",
    ),
    ("log.format", "text", "log line format: `text` or `json`"),
    (
        "log.level",
        "info",
        "`tracing` filter directive, e.g. `info` or `packages_api=debug,info`",
    ),
];

/// Seven days: the longest lifetime S3 accepts for a presigned URL.
const MAX_PRESIGN_EXPIRY_SECS: u32 = 604_800;

/// Shortest HS256 key: RFC 7518 asks for a key at least as long as the hash (256 bits);
/// a short one can be found by brute force and then signs anyone's token.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Shortest `upload.proxy_secret`: it stands between any client and a file on disk.
pub const MIN_PROXY_SECRET_BYTES: usize = 16;

/// Longest `queue.prefix`, leaving room for suffixes within AMQP's 255-byte names.
const MAX_PREFIX_LEN: usize = 200;

pub(crate) fn is_key(key: &str) -> bool {
    KEYS.iter().any(|(k, _, _)| *k == key)
}

/// Whether `key` names a table of keys, such as `blobstore` or `blobstore.s3`.
pub(crate) fn is_section(key: &str) -> bool {
    KEYS.iter().any(|(k, _, _)| {
        k.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

pub(crate) enum Problem {
    Unknown,
    Invalid(String),
}

impl From<String> for Problem {
    fn from(message: String) -> Self {
        Problem::Invalid(message)
    }
}

/// Types `raw` as the setting `key` and stores it in `settings`.
pub(crate) fn apply(settings: &mut Settings, key: &str, raw: Raw<'_>) -> Result<(), Problem> {
    let s = settings;
    match key {
        "server.bind" => s.server.bind = socket_addr(&text(raw)?)?,
        "server.external_url" => s.server.external_url = optional_url(raw)?,
        "server.body_idle_timeout_secs" => {
            s.server.body_idle_timeout_secs = integer(raw, 1, 86_400)?;
        }
        "server.max_connections" => s.server.max_connections = integer(raw, 1, 1_000_000)?,
        "server.shutdown_timeout_secs" => {
            s.server.shutdown_timeout_secs = integer(raw, 1, 86_400)?;
        }
        "worker.bind" => s.worker.bind = socket_addr(&text(raw)?)?,
        "worker.concurrency" => s.worker.concurrency = integer(raw, 1, MAX_CONCURRENCY)?,
        "worker.max_attempts" => s.worker.max_attempts = integer(raw, 1, 1000)?,
        "worker.retry_base_ms" => s.worker.retry_base_ms = integer(raw, 1, 3_600_000)?,
        "database.url" => s.database.url = database_url(&text(raw)?)?,
        "database.pool_size" => s.database.pool_size = integer(raw, 1, u32::MAX)?,
        "queue.url" => s.queue.url = queue_url(&text(raw)?)?,
        "queue.prefix" => s.queue.prefix = queue_prefix(text(raw)?)?,
        "queue.delivery_limit" => s.queue.delivery_limit = integer(raw, 1, u32::MAX)?,
        "blobstore.kind" => s.blobstore.kind = blobstore_kind(&text(raw)?)?,
        "blobstore.local.root" => s.blobstore.local.root = PathBuf::from(required_text(raw)?),
        "blobstore.s3.endpoint" => s.blobstore.s3.endpoint = optional_url(raw)?,
        "blobstore.s3.region" => s.blobstore.s3.region = required_text(raw)?,
        "blobstore.s3.bucket" => s.blobstore.s3.bucket = required_text(raw)?,
        "blobstore.s3.access_key" => s.blobstore.s3.access_key = optional_text(raw)?,
        "blobstore.s3.secret_key" => s.blobstore.s3.secret_key = optional_text(raw)?,
        "blobstore.s3.path_style" => s.blobstore.s3.path_style = boolean(raw)?,
        "blobstore.presign_expiry_secs" => {
            s.blobstore.presign_expiry_secs = integer(raw, 1, MAX_PRESIGN_EXPIRY_SECS)?;
        }
        "auth.jwt_secret" => s.auth.jwt_secret = optional_secret(raw, MIN_JWT_SECRET_BYTES)?,
        "auth.jwt_public_key" => s.auth.jwt_public_key = optional_text(raw)?,
        "auth.audience" => s.auth.audience = required_text(raw)?,
        "auth.uaa_url" => s.auth.uaa_url = optional_url(raw)?,
        "upload.bits_path_root" => {
            s.upload.bits_path_root = optional_text(raw)?.map(PathBuf::from);
        }
        "upload.proxy_secret" => {
            s.upload.proxy_secret = optional_secret(raw, MIN_PROXY_SECRET_BYTES)?;
        }
        "upload.max_body_bytes" => s.upload.max_body_bytes = integer(raw, 1, u64::MAX)?,
        "packages.max_package_size" => s.packages.max_package_size = integer(raw, 1, u64::MAX)?,
        "packages.max_valid_packages_stored" => {
            s.packages.max_valid_packages_stored = integer(raw, 1, u32::MAX)?;
        }
        "packages.pending_timeout_secs" => {
            s.packages.pending_timeout_secs = integer(raw, 1, u64::MAX)?;
        }
        "packages.max_zip_entries" => s.packages.max_zip_entries = integer(raw, 1, u64::MAX)?,
        "packages.max_zip_name_bytes" => {
            s.packages.max_zip_name_bytes = integer(raw, 1, 65_535)?;
        }
        "packages.max_zip_symlinks" => s.packages.max_zip_symlinks = integer(raw, 0, u64::MAX)?,
        "log.format" => s.log.format = log_format(&text(raw)?)?,
        "log.level" => s.log.level = required_text(raw)?,
        _ => return Err(Problem::Unknown),
    }
    Ok(())
}

/// A secret that, when set, has at least `min` bytes. The value never reaches the message.
fn optional_secret(raw: Raw<'_>, min: usize) -> Result<Option<String>, String> {
    match optional_text(raw)? {
        Some(secret) if secret.len() < min => Err(format!(
            "must be at least {min} bytes long, got {} (generate one with `openssl rand -hex 32`)",
            secret.len()
        )),
        other => Ok(other),
    }
}

fn optional_url(raw: Raw<'_>) -> Result<Option<String>, String> {
    optional_text(raw)?.map(|u| http_url(&u)).transpose()
}

fn queue_url(s: &str) -> Result<QueueUrl, String> {
    if s == "embedded" {
        Ok(QueueUrl::Embedded)
    } else if s.starts_with("amqp://") || s.starts_with("amqps://") {
        Ok(QueueUrl::Amqp(s.to_owned()))
    } else {
        Err(format!(
            "unsupported queue URL '{}' (expected `embedded` or amqp://user:pass@host:port/vhost)",
            crate::value::redact_url(s)
        ))
    }
}

fn queue_prefix(s: String) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if s.len() > MAX_PREFIX_LEN {
        return Err(format!(
            "must be at most {MAX_PREFIX_LEN} characters, got {}",
            s.len()
        ));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "'{s}' may contain only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(s)
}

fn blobstore_kind(s: &str) -> Result<BlobstoreKind, String> {
    match s {
        "local" => Ok(BlobstoreKind::Local),
        "s3" => Ok(BlobstoreKind::S3),
        _ => Err(format!(
            "unknown blobstore kind '{s}' (expected local or s3)"
        )),
    }
}

fn log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("unknown log format '{s}' (expected text or json)")),
    }
}
