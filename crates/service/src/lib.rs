//! The package store's use cases: what each API request does, with its checks in Cloud
//! Controller's order, independent of HTTP and of which backends are configured.
//!
//! [`Services`] holds the backends behind their traits (database through
//! `packages-storage`, bits through `packages-blobstore`); the job queue is reached only
//! through the outbox and its [`relay`].

pub mod context;
pub mod credentials;
pub mod direct_upload;
mod error;
pub mod jobs;
mod lookup;
pub mod packages;
pub mod relay;
pub mod resource_pool;
pub mod upload;
pub mod work;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use packages_blobstore::Blobstore;
use packages_domain::{ListQuery, PageWindow};
use packages_storage::Database;

use crate::credentials::CredentialKey;
use crate::lookup::PackageReads;
use tokio::sync::Notify;

pub use error::{Resource, Result, ServiceError};
/// The database's errors, as [`ServiceError`] carries them.
pub use packages_storage::StorageError;

/// Limits and policies from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest upload accepted (`upload.max_body_bytes`).
    pub max_body_bytes: u64,
    /// Directory a front proxy stores uploads in (`upload.bits_path_root`).
    pub bits_path_root: Option<PathBuf>,
    /// Largest uncompressed package (`packages.max_package_size`).
    pub max_package_size: u64,
    /// READY bits packages kept per app (`packages.max_valid_packages_stored`).
    pub max_valid_packages_stored: u32,
    /// How long a package may stay pending before it is re-driven or failed
    /// (`packages.pending_timeout_secs`).
    pub pending_timeout: Duration,
    /// Most entries of a package's zip (`packages.max_zip_entries`).
    pub max_zip_entries: u64,
    /// Longest entry name (`packages.max_zip_name_bytes`).
    pub max_zip_name_bytes: usize,
    /// Most symlink entries (`packages.max_zip_symlinks`).
    pub max_zip_symlinks: u64,
    /// Seals Docker registry passwords (`packages.encryption_key`); `None`: passwords are
    /// refused.
    pub credential_key: Option<CredentialKey>,
    /// Which files the resource pool takes and matches (`resource_pool.*`).
    pub resource_pool: ResourcePoolBounds,
    /// Signs direct-upload links to the service itself (derived from
    /// `packages.encryption_key`); `None`: the local blobstore offers no direct uploads.
    pub upload_link_key: Option<direct_upload::UploadLinkKey>,
    /// How long a direct-upload link lasts (`upload.direct_link_ttl_secs`).
    pub direct_link_ttl: Duration,
}

/// Sizes of the files the resource pool takes (inclusive) and matches (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourcePoolBounds {
    pub minimum_size: u64,
    pub maximum_size: u64,
}

impl ResourcePoolBounds {
    /// Whether the worker adds a file of this size to the pool.
    pub fn takes(&self, size: u64) -> bool {
        (self.minimum_size..=self.maximum_size).contains(&size)
    }

    /// Whether a fingerprint of this size may match (strict, as Cloud Controller matches).
    pub fn matches(&self, size: u64) -> bool {
        self.minimum_size < size && size < self.maximum_size
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_body_bytes: 1 << 30,
            bits_path_root: None,
            max_package_size: 536_870_912,
            max_valid_packages_stored: 5,
            pending_timeout: Duration::from_secs(1200),
            max_zip_entries: 250_000,
            max_zip_name_bytes: 4096,
            max_zip_symlinks: 10_000,
            credential_key: None,
            resource_pool: ResourcePoolBounds {
                minimum_size: 65_536,
                maximum_size: 536_870_912,
            },
            upload_link_key: None,
            direct_link_ttl: direct_upload::DEFAULT_LINK_TTL,
        }
    }
}

/// Everything a use case needs; cheap to clone. The only writer of package state and
/// job rows: the API and the worker go through its methods.
#[derive(Clone)]
pub struct Services {
    db: Database,
    /// `GET /v3/packages/:guid`'s reads, batched under load.
    package_reads: PackageReads,
    blobs: Arc<dyn Blobstore>,
    policy: Arc<Policy>,
    /// Wakes the outbox relay of this process when a job was recorded, so jobs are
    /// published at once instead of at the next poll.
    relay_wake: Arc<Notify>,
}

impl Services {
    pub fn new(db: Database, blobs: Arc<dyn Blobstore>, policy: Policy) -> Self {
        Services {
            package_reads: lookup::package_reads(&db),
            db,
            blobs,
            policy: Arc::new(policy),
            relay_wake: Arc::new(Notify::new()),
        }
    }

    /// The limits and policies this service runs with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Where the bits live.
    pub fn blobs(&self) -> &Arc<dyn Blobstore> {
        &self.blobs
    }

    fn job_recorded(&self) {
        self.relay_wake.notify_one();
    }
}

/// One page of a list and where it sits.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub resources: Vec<T>,
    pub query: ListQuery,
    pub window: PageWindow,
    /// The filters and ordering the client gave, repeated in the pagination links.
    pub echo: Vec<(String, String)>,
}

impl<T> Page<T> {
    fn new(resources: Vec<T>, total: u64, query: ListQuery) -> Self {
        Page {
            resources,
            window: query.window(total),
            query,
            echo: Vec::new(),
        }
    }

    fn echoing(self, echo: Vec<(String, String)>) -> Self {
        Page { echo, ..self }
    }

    /// The query string of the link to page `page` of this list.
    pub fn link_query(&self, page: u64) -> String {
        packages_domain::list::link_query(&self.echo, page, self.query.per_page)
    }
}

/// Parses list parameters (E2015: only `page` and `per_page`).
pub fn list_query(pairs: &[(String, String)]) -> Result<ListQuery> {
    ListQuery::parse(pairs).map_err(ServiceError::BadQuery)
}
