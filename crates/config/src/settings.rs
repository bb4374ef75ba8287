//! The typed settings every binary reads, and their built-in defaults.
//!
//! The structs are deserialized by serde from the layers that `config` merges; each field
//! names the function in `value.rs` that types and checks its value, so what a key accepts
//! is said where the key is declared. Load them with `load` or `load_from`: deserialized
//! from anything else they miss the key table's checks and the rules between keys.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::Deserialize;

use crate::value::{
    MIN_ENCRYPTION_KEY_BYTES, MIN_JWT_SECRET_BYTES, MIN_PROXY_SECRET_BYTES, at_least, between,
    blobstore_kind, boolean, database_url, log_format, optional, optional_socket_addr,
    optional_url, queue_prefix, queue_url, redact_url, required, secret, socket_addr,
};

/// Upper bound of `worker.concurrency`: it becomes the AMQP prefetch count, a `u16`.
const MAX_CONCURRENCY: u64 = u16::MAX as u64;

/// Seven days: the longest lifetime S3 accepts for a presigned URL.
const MAX_PRESIGN_EXPIRY_SECS: u64 = 604_800;

/// Every setting of the service, after defaults, config file and environment are merged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: Server,
    pub worker: Worker,
    pub database: Database,
    pub queue: Queue,
    pub blobstore: Blobstore,
    pub auth: Auth,
    pub upload: Upload,
    pub packages: Packages,
    pub resource_pool: ResourcePool,
    pub log: Log,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// API listen address.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// Base of every absolute `href`, `http(s)://host[:port][/path]` without a trailing
    /// slash; `None`: the request's scheme and `Host`.
    #[serde(deserialize_with = "optional_url")]
    pub external_url: Option<String>,
    /// A request body idle this long is answered 408 and its connection closed.
    #[serde(deserialize_with = "between::<1, 86_400, _, _>")]
    pub body_idle_timeout_secs: u64,
    /// Open connections accepted at once.
    #[serde(deserialize_with = "between::<1, 1_000_000, _, _>")]
    pub max_connections: usize,
    /// On SIGTERM, how long requests in flight may still run.
    #[serde(deserialize_with = "between::<1, 86_400, _, _>")]
    pub shutdown_timeout_secs: u64,
    /// Operator endpoints on their own address; `None`: on `bind`.
    #[serde(deserialize_with = "optional_socket_addr")]
    pub ops_bind: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    /// `packages-worker`'s `/metrics`, `/healthz` and `/readyz`.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// Jobs one worker process runs at once (the AMQP prefetch); at least 1.
    #[serde(deserialize_with = "between::<1, MAX_CONCURRENCY, _, _>")]
    pub concurrency: usize,
    /// Of those, upload jobs with 8 MiB or more of bits, or with resources to assemble, at
    /// once: they hold a few MiB of buffers each, so raising `concurrency` for many small
    /// packages does not raise the memory large ones can take.
    #[serde(deserialize_with = "between::<1, MAX_CONCURRENCY, _, _>")]
    pub large_job_concurrency: usize,
    #[serde(deserialize_with = "between::<1, 1000, _, _>")]
    pub max_attempts: u32,
    #[serde(deserialize_with = "between::<1, 3_600_000, _, _>")]
    pub retry_base_ms: u64,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `sqlite://PATH`, `postgres://…` or `postgresql://…`.
    #[serde(deserialize_with = "database_url")]
    pub url: String,
    /// r2d2 pool size; at least 1.
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub pool_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    #[serde(deserialize_with = "queue_url")]
    pub url: QueueUrl,
    /// Prefix of every exchange and queue name: `[A-Za-z0-9._-]{1,200}`.
    #[serde(deserialize_with = "queue_prefix")]
    pub prefix: String,
    /// Deliveries of one job before the broker dead-letters it (`x-delivery-limit`).
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub delivery_limit: u32,
}

#[derive(Clone, PartialEq, Eq)]
pub enum QueueUrl {
    /// The in-process queue of the all-in-one `packages` binary.
    Embedded,
    /// An `amqp://` or `amqps://` broker URL, as configured.
    Amqp(String),
}

impl QueueUrl {
    pub fn is_embedded(&self) -> bool {
        matches!(self, QueueUrl::Embedded)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blobstore {
    #[serde(deserialize_with = "blobstore_kind")]
    pub kind: BlobstoreKind,
    pub local: LocalBlobstore,
    pub s3: S3Blobstore,
    /// Lifetime of the download redirect URL, 1..=604800 (S3's limit of seven days).
    #[serde(deserialize_with = "between::<1, MAX_PRESIGN_EXPIRY_SECS, _, _>")]
    pub presign_expiry_secs: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobstoreKind {
    Local,
    S3,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalBlobstore {
    /// Directory of the local blobstore; relative paths are relative to the working
    /// directory, not to the config file.
    #[serde(deserialize_with = "required")]
    pub root: PathBuf,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Blobstore {
    /// `http(s)://host[:port]`; `None` means AWS.
    #[serde(deserialize_with = "optional_url")]
    pub endpoint: Option<String>,
    /// `http(s)://host[:port]` that clients reach the same server at; `None`: `endpoint`.
    #[serde(deserialize_with = "optional_url")]
    pub public_endpoint: Option<String>,
    #[serde(deserialize_with = "required")]
    pub region: String,
    #[serde(deserialize_with = "required")]
    pub bucket: String,
    #[serde(deserialize_with = "optional")]
    pub access_key: Option<String>,
    #[serde(deserialize_with = "optional")]
    pub secret_key: Option<String>,
    #[serde(deserialize_with = "boolean")]
    pub path_style: bool,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// HS256 key (UAA symmetric key).
    #[serde(deserialize_with = "secret::<MIN_JWT_SECRET_BYTES, _>")]
    pub jwt_secret: Option<String>,
    /// RS256 PEM public key (UAA asymmetric key).
    #[serde(deserialize_with = "optional")]
    pub jwt_public_key: Option<String>,
    /// Required `aud` entry.
    #[serde(deserialize_with = "required")]
    pub audience: String,
    /// UAA base URL advertised by `GET /`, without a trailing slash; its `/token_keys`
    /// verify RS256 tokens.
    #[serde(deserialize_with = "optional_url")]
    pub uaa_url: Option<String>,
    /// Required `iss` of every token.
    #[serde(deserialize_with = "optional")]
    pub issuer: Option<String>,
    /// Least time between two fetches of UAA's keys.
    #[serde(deserialize_with = "between::<0, 86_400, _, _>")]
    pub token_keys_min_interval_secs: u64,
}

impl Auth {
    /// Whether a token verification key is configured. Not enforced while loading: the
    /// all-in-one binary generates a secret when none is set.
    pub fn has_key(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some()
    }
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// Directory a front proxy writes uploads into; `None`: `bits_path` uploads get 422.
    #[serde(deserialize_with = "optional")]
    pub bits_path_root: Option<PathBuf>,
    /// Secret a front proxy proves itself with (`X-Upload-Proxy-Secret`).
    #[serde(deserialize_with = "secret::<MIN_PROXY_SECRET_BYTES, _>")]
    pub proxy_secret: Option<String>,
    /// Larger request bodies get 413 before they are stored.
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub max_body_bytes: u64,
    /// How long a direct-upload link lasts (S3 presigns for at most a week).
    #[serde(deserialize_with = "between::<1, 604_800, _, _>")]
    pub direct_link_ttl_secs: u64,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    /// Largest total uncompressed size of a package's zip.
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub max_package_size: u64,
    /// READY bits packages kept per app.
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub max_valid_packages_stored: u32,
    /// Age after which a package in PROCESSING_UPLOAD or COPYING is re-driven.
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub pending_timeout_secs: u64,
    /// Most entries a package's zip may have.
    #[serde(deserialize_with = "at_least::<1, _, _>")]
    pub max_zip_entries: u64,
    /// Longest entry name in a package's zip, in bytes.
    #[serde(deserialize_with = "between::<1, 65_535, _, _>")]
    pub max_zip_name_bytes: usize,
    /// Most symlink entries a package's zip may have.
    #[serde(deserialize_with = "at_least::<0, _, _>")]
    pub max_zip_symlinks: u64,
    /// Key material for Docker registry passwords; `None`: `packages` generates one,
    /// `packages-api` refuses passwords.
    #[serde(deserialize_with = "secret::<MIN_ENCRYPTION_KEY_BYTES, _>")]
    pub encryption_key: Option<String>,
}

/// Which files the resource pool takes and matches, by size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePool {
    /// Smallest file the pool takes (inclusive) and matches (exclusive), bytes.
    #[serde(deserialize_with = "at_least::<0, _, _>")]
    pub minimum_size: u64,
    /// Largest file the pool takes (inclusive) and matches (exclusive), bytes.
    #[serde(deserialize_with = "at_least::<0, _, _>")]
    pub maximum_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(deserialize_with = "log_format")]
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive string, e.g. `info`.
    #[serde(deserialize_with = "required")]
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// The built-in defaults of the operator contract.
    pub fn defaults() -> Settings {
        Settings {
            server: Server {
                bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
                external_url: None,
                body_idle_timeout_secs: 15,
                max_connections: 10_000,
                shutdown_timeout_secs: 300,
                ops_bind: None,
            },
            worker: Worker {
                bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
                concurrency: default_concurrency(),
                large_job_concurrency: default_concurrency(),
                max_attempts: 5,
                retry_base_ms: 1000,
            },
            database: Database {
                url: "sqlite://data/packages.db".to_owned(),
                pool_size: 16,
            },
            queue: Queue {
                url: QueueUrl::Embedded,
                prefix: "packages".to_owned(),
                delivery_limit: 5,
            },
            blobstore: Blobstore {
                kind: BlobstoreKind::Local,
                local: LocalBlobstore {
                    root: PathBuf::from("data/blobs"),
                },
                s3: S3Blobstore {
                    endpoint: None,
                    public_endpoint: None,
                    region: "us-east-1".to_owned(),
                    bucket: "cc-packages".to_owned(),
                    access_key: None,
                    secret_key: None,
                    path_style: true,
                },
                presign_expiry_secs: 3600,
            },
            auth: Auth {
                jwt_secret: None,
                jwt_public_key: None,
                audience: "cloud_controller".to_owned(),
                uaa_url: None,
                issuer: None,
                token_keys_min_interval_secs: 30,
            },
            upload: Upload {
                bits_path_root: None,
                proxy_secret: None,
                max_body_bytes: 1 << 30,
                direct_link_ttl_secs: 600,
            },
            packages: Packages {
                max_package_size: 536_870_912,
                max_valid_packages_stored: 5,
                pending_timeout_secs: 1200,
                max_zip_entries: 250_000,
                max_zip_name_bytes: 4096,
                max_zip_symlinks: 10_000,
                encryption_key: None,
            },
            resource_pool: ResourcePool {
                minimum_size: 65_536,
                maximum_size: 536_870_912,
            },
            log: Log {
                format: LogFormat::Text,
                level: "info".to_owned(),
            },
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::defaults()
    }
}

/// Number of cores; 1 when the platform cannot tell.
pub(crate) fn default_concurrency() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    cores.min(usize::from(u16::MAX))
}

// Settings end up in logs and panic messages; these impls keep passwords and secret keys
// out of them.

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl fmt::Debug for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueUrl::Embedded => f.write_str("Embedded"),
            QueueUrl::Amqp(url) => f.debug_tuple("Amqp").field(&redact_url(url)).finish(),
        }
    }
}

impl fmt::Debug for S3Blobstore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Blobstore")
            .field("endpoint", &self.endpoint)
            .field("public_endpoint", &self.public_endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| REDACTED))
            .field("path_style", &self.path_style)
            .finish()
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| REDACTED))
            .field("jwt_public_key", &self.jwt_public_key)
            .field("audience", &self.audience)
            .field("uaa_url", &self.uaa_url)
            .field("issuer", &self.issuer)
            .field(
                "token_keys_min_interval_secs",
                &self.token_keys_min_interval_secs,
            )
            .finish()
    }
}

impl fmt::Debug for Packages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packages")
            .field("max_package_size", &self.max_package_size)
            .field("max_valid_packages_stored", &self.max_valid_packages_stored)
            .field("pending_timeout_secs", &self.pending_timeout_secs)
            .field("max_zip_entries", &self.max_zip_entries)
            .field("max_zip_name_bytes", &self.max_zip_name_bytes)
            .field("max_zip_symlinks", &self.max_zip_symlinks)
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("bits_path_root", &self.bits_path_root)
            .field(
                "proxy_secret",
                &self.proxy_secret.as_ref().map(|_| REDACTED),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .field("direct_link_ttl_secs", &self.direct_link_ttl_secs)
            .finish()
    }
}
