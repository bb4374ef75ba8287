//! Identities as types. A GUID read from a path or a row is wrapped at that edge, so a
//! function that takes a package and an app cannot be handed them the other way round.
//! They dereference to `str` for the adapters (SQL, blob keys, logs) that need the text.

use std::fmt;
use std::ops::Deref;

macro_rules! identity {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                $name(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                $name(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                $name(value.to_owned())
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

identity!(
    /// A package's GUID.
    PackageGuid
);
identity!(
    /// An app's GUID.
    AppGuid
);
identity!(
    /// A space's GUID.
    SpaceGuid
);
identity!(
    /// An organization's GUID.
    OrgGuid
);
identity!(
    /// Where a blob lives in the blobstore (`gu/id/guid…`, `staging/…`).
    BlobKey
);
