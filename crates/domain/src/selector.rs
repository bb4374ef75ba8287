//! Label selectors (`label_selector=env in (prod,staging),!canary`): the requirements a
//! list filter is made of.

use crate::metadata::MetadataKey;

/// Most requirements one selector may hold.
pub const MAX_REQUIREMENTS: usize = 50;

/// One requirement of a selector; all of a selector's requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`, `key==value`: the label is there with that value.
    Equal { key: MetadataKey, value: String },
    /// `key!=value`: the label is missing, or has another value.
    NotEqual { key: MetadataKey, value: String },
    /// `key in (a,b)`: the label is there with one of the values.
    In {
        key: MetadataKey,
        values: Vec<String>,
    },
    /// `key notin (a,b)`: the label is missing, or has none of the values.
    NotIn {
        key: MetadataKey,
        values: Vec<String>,
    },
    /// `key`: the label is there.
    Exists { key: MetadataKey },
    /// `!key`: the label is missing.
    NotExists { key: MetadataKey },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);
