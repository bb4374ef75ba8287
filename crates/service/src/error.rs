//! What can go wrong in a use case. The API crate maps each case to its Cloud Controller
//! error, in one place.

use packages_blobstore::BlobError;
use packages_domain::{Invalid, PackageGuid};
use packages_jobs::QueueError;
use packages_storage::StorageError;

/// Kinds of resources a lookup can miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Package,
    App,
    Space,
    Organization,
    Role,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::Package => "Package",
            Resource::App => "App",
            Resource::Space => "Space",
            Resource::Organization => "Organization",
            Resource::Role => "Role",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Missing scope, or a reader without the role to write.
    #[error("not authorized")]
    NotAuthorized,
    /// Missing, or invisible to the caller (which must look the same).
    #[error("{} not found", .0.name())]
    NotFound(Resource),
    /// A body or request that breaks a rule; messages as Cloud Controller words them.
    #[error("invalid request: {0}")]
    Invalid(#[from] Invalid),
    /// A name already taken where names are unique (Cloud Controller's UniquenessError).
    #[error("{0}")]
    NotUnique(String),
    /// A body that is not JSON or not an object; the text follows
    /// `Request invalid due to parse error: `.
    #[error("unparsable request: {0}")]
    Unparsable(String),
    /// Query parameters that are not accepted.
    #[error("bad query: {}", .0.join(", "))]
    BadQuery(Vec<String>),
    /// The package no longer awaits an upload.
    #[error("bits already uploaded")]
    BitsAlreadyUploaded,
    /// The upload is larger than `upload.max_body_bytes`.
    #[error("upload larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The request body broke off or could not be read.
    #[error("upload interrupted: {0}")]
    UploadInterrupted(String),
    /// Staging is another service's job.
    #[error("staging is not offered by this service")]
    StagingNotOffered,
    /// The database cannot be reached right now (answered `Database connection failure`).
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] StorageError),
    /// The blobstore cannot be reached right now.
    #[error("the blobstore is unavailable")]
    BlobstoreUnavailable(#[source] BlobError),
    /// The job queue cannot be reached right now.
    #[error("the job queue is unavailable")]
    QueueUnavailable(#[source] QueueError),
    /// The database refused an operation it should have taken.
    #[error("the database failed")]
    Database(#[source] StorageError),
    /// The blobstore refused an operation it should have taken.
    #[error("the blobstore failed")]
    Blobstore(#[source] BlobError),
    /// The bits of a READY package are missing from the blobstore.
    #[error("the bits of READY package {guid} are missing")]
    MissingBits {
        guid: PackageGuid,
        #[source]
        source: BlobError,
    },
    /// A create or PATCH would leave a package with too many labels or annotations.
    #[error(transparent)]
    MetadataLimit(#[from] packages_domain::MetadataLimit),
    /// A registry password could not be sealed.
    #[error("sealing a registry password failed")]
    Credentials(#[source] crate::credentials::SealError),
    /// A blocking task did not finish (the runtime is shutting down).
    #[error("a background task did not finish")]
    Task(#[source] tokio::task::JoinError),
}

impl ServiceError {
    /// Whether the same request may succeed later: a backend was out of reach, not the
    /// request at fault.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ServiceError::DatabaseUnavailable(_)
                | ServiceError::BlobstoreUnavailable(_)
                | ServiceError::QueueUnavailable(_)
                | ServiceError::Task(_)
        )
    }
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        if e.is_retryable() {
            ServiceError::DatabaseUnavailable(e)
        } else {
            ServiceError::Database(e)
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        if e.is_retryable() {
            ServiceError::BlobstoreUnavailable(e)
        } else {
            ServiceError::Blobstore(e)
        }
    }
}

impl From<QueueError> for ServiceError {
    fn from(e: QueueError) -> Self {
        ServiceError::QueueUnavailable(e)
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
