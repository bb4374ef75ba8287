//! The configuration keys, one row each: name, the kind of value a config file must give
//! for it, the documented default and the meaning.
//!
//! This table is what decides which keys exist, and the public [`KEYS`] (from which the
//! README's table is checked) is derived from it, so a key cannot be documented without
//! being known, nor known without being documented. What each value must look like beyond
//! its kind is said next to its field, in `settings.rs`.

use config::ValueKind;

/// What TOML value a key takes. In the environment every value is text, and the key's own
/// deserializer reads numbers and booleans from it; in the file TOML already says what a
/// value is, and a number for a text key (a secret `123456`) is refused rather than quietly
/// turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Integer,
    Boolean,
}

use Kind::{Boolean, Integer, Text};

/// `(key, kind, default, meaning)`, in the order of the operator contract followed by the
/// keys it leaves to the implementation. A default of `none` means unset.
const TABLE: &[(&str, Kind, &str, &str)] = &[
    ("server.bind", Text, "127.0.0.1:8080", "API listen address"),
    (
        "server.external_url",
        Text,
        "none",
        "base of every absolute `href` (e.g. `https://api.example.org`); absent: the request's scheme and `Host` when they are a valid `http`/`https` origin, else the bind address",
    ),
    (
        "server.body_idle_timeout_secs",
        Integer,
        "15",
        "a request body that makes no progress for this long is answered 408 and its connection closed (idle time, not total time: slow uploads that keep sending are fine)",
    ),
    (
        "server.max_connections",
        Integer,
        "10000",
        "open connections the API accepts at once; further clients wait in the kernel's backlog, and a warning is logged when the cap is reached",
    ),
    (
        "server.shutdown_timeout_secs",
        Integer,
        "300",
        "on SIGTERM, how long requests in flight (uploads) may still run before they are cut; matches Kubernetes' grace period",
    ),
    (
        "server.ops_bind",
        Text,
        "none",
        "where the API serves its operator endpoints (`/healthz`, `/readyz`, `/metrics`) instead of `server.bind`, so they stay off the public port; absent: on `server.bind`",
    ),
    (
        "worker.bind",
        Text,
        "127.0.0.1:8081",
        "`packages-worker`'s `/metrics`, `/healthz`, `/readyz`; `packages` opens no second port: its `/metrics` on `server.bind` carries the API's and the worker's metrics",
    ),
    (
        "worker.concurrency",
        Integer,
        "number of cores",
        "jobs one worker process runs at once (AMQP prefetch)",
    ),
    (
        "worker.large_job_concurrency",
        Integer,
        "number of cores",
        "of those, upload jobs with 8 MiB or more of bits (or resources to assemble) run at once; the others wait in the process, so `worker.concurrency` can be raised for many small packages without raising the memory large ones take",
    ),
    (
        "worker.max_attempts",
        Integer,
        "5",
        "attempts of a job that keeps failing for infrastructure reasons (and re-drives of a stuck package) before its package is FAILED",
    ),
    (
        "worker.retry_base_ms",
        Integer,
        "1000",
        "first retry delay of such a job; doubles per attempt, capped at one minute",
    ),
    (
        "database.url",
        Text,
        "sqlite://data/packages.db",
        "`sqlite://PATH` or `postgres://…`; migrations run at start-up",
    ),
    ("database.pool_size", Integer, "16", "r2d2 pool size"),
    (
        "queue.url",
        Text,
        "embedded",
        "`embedded` (in-process, only valid for `packages`) or `amqp://user:pass@host:port/vhost`",
    ),
    (
        "queue.prefix",
        Text,
        "packages",
        "prefix for every exchange and queue name, so two deployments can share one broker",
    ),
    (
        "queue.delivery_limit",
        Integer,
        "5",
        "deliveries of one job before the broker dead-letters it (`x-delivery-limit`)",
    ),
    ("blobstore.kind", Text, "local", "`local` or `s3`"),
    (
        "blobstore.local.root",
        Text,
        "data/blobs",
        "directory of the local blobstore",
    ),
    (
        "blobstore.s3.endpoint",
        Text,
        "none",
        "e.g. `http://127.0.0.1:9000`; absent means AWS",
    ),
    (
        "blobstore.s3.public_endpoint",
        Text,
        "none",
        "the same S3 server as clients outside the service's network reach it (e.g. `https://s3.example.org`); every link a client receives (download redirects, direct-upload links) is signed for it; absent: `blobstore.s3.endpoint`",
    ),
    (
        "blobstore.s3.region",
        Text,
        "us-east-1",
        "region of the bucket",
    ),
    (
        "blobstore.s3.bucket",
        Text,
        "cc-packages",
        "bucket for package bits (created at start-up if missing)",
    ),
    (
        "blobstore.s3.access_key",
        Text,
        "none",
        "credentials: access key",
    ),
    (
        "blobstore.s3.secret_key",
        Text,
        "none",
        "credentials: secret key",
    ),
    (
        "blobstore.s3.path_style",
        Boolean,
        "true",
        "path-style addressing (MinIO and most S3-compatible servers)",
    ),
    (
        "blobstore.presign_expiry_secs",
        Integer,
        "3600",
        "lifetime of the download redirect URL (at most 604800, seven days)",
    ),
    (
        "auth.jwt_secret",
        Text,
        "none",
        "HS256 key (UAA symmetric key), at least 32 bytes",
    ),
    (
        "auth.jwt_public_key",
        Text,
        "none",
        "RS256 PEM public key (UAA asymmetric key), the fallback when `auth.uaa_url` is set; one of the keys or `auth.uaa_url` is required",
    ),
    (
        "auth.audience",
        Text,
        "cloud_controller",
        "required `aud` entry",
    ),
    (
        "auth.uaa_url",
        Text,
        "none",
        "UAA base URL advertised by `GET /`; RS256 tokens are then verified with UAA's keys from `/token_keys`, chosen by `kid`",
    ),
    (
        "auth.issuer",
        Text,
        "none",
        "required `iss` of every token (UAA's token endpoint URL); absent: not checked",
    ),
    (
        "auth.token_keys_min_interval_secs",
        Integer,
        "30",
        "a token naming a key UAA's set lacks fetches the set again, at most once per this many seconds (0 to 86400)",
    ),
    (
        "upload.bits_path_root",
        Text,
        "none",
        "directory that a front proxy writes uploads into; `bits_path` uploads are accepted only for files inside it, and only with `upload.proxy_secret`; absent: such uploads get 422",
    ),
    (
        "upload.proxy_secret",
        Text,
        "none",
        "shared secret the front proxy sends in `X-Upload-Proxy-Secret`; a `bits_path` upload without it is refused. Required with `upload.bits_path_root`; at least 16 bytes",
    ),
    (
        "upload.max_body_bytes",
        Integer,
        "1073741824",
        "larger request bodies get 413 before they are stored (default 1 GiB)",
    ),
    (
        "upload.direct_link_ttl_secs",
        Integer,
        "600",
        "how long a direct-upload link lasts, 1 to 604800 seconds (S3 presigns for at most a week)",
    ),
    (
        "packages.max_package_size",
        Integer,
        "536870912",
        "largest total *uncompressed* size of a package's zip; larger → FAILED",
    ),
    (
        "packages.max_valid_packages_stored",
        Integer,
        "5",
        "READY bits packages kept per app; older ones become EXPIRED and their bits are deleted",
    ),
    (
        "packages.pending_timeout_secs",
        Integer,
        "1200",
        "a package in PROCESSING_UPLOAD or COPYING longer than this is re-driven, and FAILED with a reason once its retries are spent",
    ),
    (
        "packages.max_zip_entries",
        Integer,
        "250000",
        "most entries (files, directories, links) a package's zip may have; more → FAILED",
    ),
    (
        "packages.max_zip_name_bytes",
        Integer,
        "4096",
        "longest entry name in a package's zip, in bytes (Linux's PATH_MAX); longer → FAILED",
    ),
    (
        "packages.max_zip_symlinks",
        Integer,
        "10000",
        "most symlink entries a package's zip may have; more → FAILED",
    ),
    (
        "packages.encryption_key",
        Text,
        "none",
        "key material for Docker registry passwords (stored with AES-256-GCM), at least 32 characters; `packages` generates `data/encryption-key` when unset, `packages-api` then refuses passwords with 422",
    ),
    (
        "resource_pool.minimum_size",
        Integer,
        "65536",
        "smallest file the resource pool takes (inclusive) and matches (exclusive), bytes",
    ),
    (
        "resource_pool.maximum_size",
        Integer,
        "536870912",
        "largest file the resource pool takes (inclusive) and matches (exclusive), bytes",
    ),
    (
        "log.format",
        Text,
        "text",
        "log line format: `text` or `json`",
    ),
    (
        "log.level",
        Text,
        "info",
        "`tracing` filter directive, e.g. `info` or `packages_api=debug,info`",
    ),
];

/// Every configuration key as `(key, default, meaning)`, in the order of the operator
/// contract followed by the keys it leaves to the implementation. A default of `none`
/// means unset. This list is also what decides which keys exist.
pub const KEYS: &[(&str, &str, &str)] = &documented();

const fn documented() -> [(&'static str, &'static str, &'static str); TABLE.len()] {
    let mut keys = [("", "", ""); TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        let (key, _, default, meaning) = TABLE[i];
        keys[i] = (key, default, meaning);
        i += 1;
    }
    keys
}

/// The kind of value `key` takes, or `None` if there is no such key.
pub(crate) fn kind(key: &str) -> Option<Kind> {
    TABLE.iter().find(|row| row.0 == key).map(|row| row.1)
}

/// Whether `key` names a table of keys, such as `blobstore` or `blobstore.s3`.
pub(crate) fn is_section(key: &str) -> bool {
    TABLE.iter().any(|row| {
        row.0
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The built-in defaults as `(key, value)`, in table order: the lowest layer, read by the
/// same deserializers as the environment's text. An unset key is empty, which every
/// optional key reads as unset.
pub(crate) fn defaults() -> impl Iterator<Item = (&'static str, String)> {
    TABLE.iter().map(|&(key, _, default, _)| {
        let value = match default {
            "none" => String::new(),
            "number of cores" => crate::settings::default_concurrency().to_string(),
            other => other.to_owned(),
        };
        (key, value)
    })
}

impl Kind {
    /// Whether a value from the config file is of this kind. The value itself never
    /// appears in the message: the key may be a secret.
    pub(crate) fn admits(self, value: &ValueKind) -> Result<(), String> {
        let got = kind_name(value);
        let scalar = matches!(
            value,
            ValueKind::I64(_)
                | ValueKind::I128(_)
                | ValueKind::U64(_)
                | ValueKind::U128(_)
                | ValueKind::Float(_)
                | ValueKind::Boolean(_)
        );
        match (self, got) {
            (Text, "string") | (Integer, "integer") | (Boolean, "boolean") => Ok(()),
            (Text, _) if scalar => Err(format!(
                "expected a string, got {got}; quote it to use it as text"
            )),
            (Text, _) => Err(format!("expected a string, got {got}")),
            (Integer, _) => Err(format!("expected a non-negative integer, got {got}")),
            (Boolean, _) => Err(format!("expected true or false, got {got}")),
        }
    }
}

/// TOML's name for the kind of `value`.
pub(crate) fn kind_name(value: &ValueKind) -> &'static str {
    match value {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "integer"
        }
        ValueKind::Float(_) => "float",
        ValueKind::String(_) => "string",
        ValueKind::Table(_) => "table",
        ValueKind::Array(_) => "array",
    }
}
