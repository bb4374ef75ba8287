//! Labels and annotations (GA metadata): their keys, the rules Cloud Controller checks
//! them by, and how an update merges into what a package already has.

use std::collections::BTreeMap;
use std::fmt;

/// Most labels one package may carry (CC's `max_labels_per_resource`).
pub const MAX_LABELS: usize = 50;
/// Most annotations one package may carry (CC's `max_annotations_per_resource`).
pub const MAX_ANNOTATIONS: usize = 200;

/// A label or annotation key, `[prefix/]name`, as given (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetadataKey {
    pub prefix: Option<String>,
    pub name: String,
}

impl fmt::Display for MetadataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(prefix) => write!(f, "{prefix}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A package's labels and annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub labels: BTreeMap<MetadataKey, String>,
    pub annotations: BTreeMap<MetadataKey, String>,
}

/// What a create or PATCH body asks for: each key set to a value, or deleted (`None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataUpdate {
    pub labels: Vec<(MetadataKey, Option<String>)>,
    pub annotations: Vec<(MetadataKey, Option<String>)>,
}

/// An update that would leave a package with more labels or annotations than allowed.
/// `requested` is the number the request named (CC's `<n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetadataLimit {
    #[error("Failed to add {requested} labels because it would exceed maximum of {MAX_LABELS}")]
    Labels { requested: usize },
    #[error(
        "Failed to add {requested} annotations because it would exceed maximum of {MAX_ANNOTATIONS}"
    )]
    Annotations { requested: usize },
}
