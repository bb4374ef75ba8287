//! The package store's domain: packages and their states, the apps, spaces and
//! organizations they hang off, who may do what, and the rules for requests.
//!
//! Nothing here does I/O. Adapters (database, blobstore, queue, HTTP) build on these types
//! so that every backend shares the same rules.

pub mod access;
pub mod context;
pub mod failure;
pub mod ga;
pub mod ids;
pub mod list;
pub mod metadata;
pub mod package;
pub mod request_id;
pub mod resources;
pub mod selector;
pub mod time;
pub mod upload;
pub mod validation;

pub use access::{Access, Principal, RoleType, Scope};
pub use failure::FailureReason;
pub use ga::{CreateRequest, DockerData, UpdateRequest};
pub use ids::{AppGuid, BlobKey, OrgGuid, PackageGuid, SpaceGuid};
pub use list::{
    DropletListQuery, ListQuery, ListRoute, OrderBy, OrderField, PackageFilter, PackageListQuery,
    PageWindow, Relation, TimeFilter, link_query,
};
pub use metadata::{Metadata, MetadataKey, MetadataLimit, MetadataUpdate};
pub use package::{
    JobKind, NewPackage, Outcome, Package, PackageState, PackageType, STAGING_PREFIX, Transition,
    blob_key, parse_staging_key, staging_key,
};
pub use resources::{CheckedResource, Fingerprint, ResourceMatch, UnsafeResource};
pub use selector::{LabelSelector, Requirement};
pub use time::Timestamp;
pub use validation::Invalid;

/// A fresh random GUID, as Cloud Controller hands out.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The text of a domain enum, as the API, the database and the metrics spell it.
pub trait Label: Copy + Into<&'static str> {
    fn label(self) -> &'static str {
        self.into()
    }
}

impl<T: Copy + Into<&'static str>> Label for T {}
