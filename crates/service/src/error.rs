//! What can go wrong in a use case. The API crate maps each case to its Cloud Controller
//! error, in one place.

use packages_blobstore::BlobError;
use packages_domain::Invalid;
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
    /// A backend (database, blobstore, queue) cannot be reached right now. `what` is
    /// for the client (`Database connection failure`); `cause` for the logs.
    #[error("{what}: {cause}")]
    Unavailable { what: &'static str, cause: String },
    /// The bits of a READY package are missing from the blobstore, or similar breakage.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(cause) => ServiceError::Unavailable {
                what: "Database connection failure",
                cause,
            },
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Unavailable(cause) => ServiceError::Unavailable {
                what: "Blobstore unavailable",
                cause,
            },
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<QueueError> for ServiceError {
    fn from(e: QueueError) -> Self {
        ServiceError::Unavailable {
            what: "Job queue unavailable",
            cause: e.to_string(),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
