//! The package: an app's source, either uploaded bits or a Docker image reference, and the
//! state machine that moves it from creation to READY, FAILED or EXPIRED.

use strum::{Display, EnumString, IntoStaticStr, VariantArray};

use crate::ids::{AppGuid, BlobKey, PackageGuid};
use crate::time::Timestamp;

/// How a package's source is given: uploaded bits or a Docker image reference.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum PackageType {
    Bits,
    Docker,
}

impl PackageType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where a package is in its life, spelled as the API shows it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum PackageState {
    AwaitingUpload,
    ProcessingUpload,
    Ready,
    Failed,
    Copying,
    Expired,
}

impl PackageState {
    pub const ALL: &[PackageState] = PackageState::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The state a new package starts in: bits wait for an upload, a Docker image is
    /// usable at once.
    pub fn initial(package_type: PackageType) -> Self {
        match package_type {
            PackageType::Bits => PackageState::AwaitingUpload,
            PackageType::Docker => PackageState::Ready,
        }
    }

    /// The state of a copy of a package of this type: bits must be copied by a job.
    pub fn initial_for_copy(source_type: PackageType) -> Self {
        match source_type {
            PackageType::Bits => PackageState::Copying,
            PackageType::Docker => PackageState::Ready,
        }
    }

    /// A job is under way and the package will still change by itself.
    pub fn is_pending(self) -> bool {
        matches!(self, PackageState::ProcessingUpload | PackageState::Copying)
    }
}

/// Every state change a package can make after creation. Storage applies a transition as
/// one conditional update (`… WHERE state IN from()`), so a duplicate or late job, or a
/// second concurrent upload, finds the package no longer in a `from` state and changes
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// An upload was stored and its job recorded.
    AcceptUpload,
    /// The upload job validated and stored the bits.
    UploadSucceeded,
    /// The upload job found the bits unusable or gave up.
    UploadFailed,
    /// The copy job stored the bits.
    CopySucceeded,
    /// The copy job could not copy the bits.
    CopyFailed,
    /// Newer READY packages of the same app pushed this one out.
    Expire,
}

impl Transition {
    pub fn from(self) -> &'static [PackageState] {
        match self {
            Transition::AcceptUpload => &[PackageState::AwaitingUpload],
            Transition::UploadSucceeded | Transition::UploadFailed => {
                &[PackageState::ProcessingUpload]
            }
            Transition::CopySucceeded | Transition::CopyFailed => &[PackageState::Copying],
            Transition::Expire => &[PackageState::Ready],
        }
    }

    pub fn to(self) -> PackageState {
        match self {
            Transition::AcceptUpload => PackageState::ProcessingUpload,
            Transition::UploadSucceeded | Transition::CopySucceeded => PackageState::Ready,
            Transition::UploadFailed | Transition::CopyFailed => PackageState::Failed,
            Transition::Expire => PackageState::Expired,
        }
    }

    /// The failure transition for a pending state, used when a job gives up.
    pub fn failure_from(state: PackageState) -> Option<Transition> {
        match state {
            PackageState::ProcessingUpload => Some(Transition::UploadFailed),
            PackageState::Copying => Some(Transition::CopyFailed),
            _ => None,
        }
    }

    pub fn applies_to(self, state: PackageState) -> bool {
        self.from().contains(&state)
    }
}

/// A package as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub guid: PackageGuid,
    pub app_guid: AppGuid,
    pub package_type: PackageType,
    pub state: PackageState,
    /// Lowercase hex SHA-1 of the stored zip; set while READY.
    pub sha1: Option<String>,
    /// Lowercase hex SHA-256 of the stored zip; set while READY.
    pub sha256: Option<String>,
    /// Why the package is FAILED.
    pub error: Option<String>,
    /// Docker image reference of a docker package.
    pub url: Option<String>,
    pub created_at: Timestamp,
    /// `None` until the package first changes (Cloud Controller's E2015 behaviour).
    pub updated_at: Option<Timestamp>,
    /// Registry user of a docker package.
    pub docker_username: Option<String>,
    /// Registry password of a docker package, sealed by the service; never shown.
    pub docker_password: Option<String>,
}

impl Package {
    /// Bits of a bits package live under this key once READY.
    pub fn blob_key(&self) -> BlobKey {
        blob_key(&self.guid)
    }
}

/// What a create or copy request asks to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPackage {
    pub guid: PackageGuid,
    pub app_guid: AppGuid,
    pub package_type: PackageType,
    pub state: PackageState,
    pub url: Option<String>,
    pub created_at: Timestamp,
    /// Registry user of a docker package.
    pub docker_username: Option<String>,
    /// Registry password of a docker package, already sealed by the service.
    pub docker_password: Option<String>,
}

/// Blobstore key of a package's bits, partitioned as Cloud Controller does:
/// lowercase, then `ab/cd/abcd…` from the first four characters.
pub fn blob_key(package_guid: &str) -> BlobKey {
    let key = package_guid.to_lowercase();
    let mut chars = key.chars();
    let first: String = chars.by_ref().take(2).collect();
    let second: String = chars.take(2).collect();
    BlobKey::new(format!("{first}/{second}/{key}"))
}

/// Where uploads wait for the worker in the blobstore.
pub const STAGING_PREFIX: &str = "staging/";

/// Blobstore key where one upload attempt of a package waits for the worker.
pub fn staging_key(package_guid: &str, upload_id: &str) -> BlobKey {
    BlobKey::new(format!(
        "{STAGING_PREFIX}{}/{upload_id}",
        package_guid.to_lowercase()
    ))
}

/// The package GUID and upload id of a key made by [`staging_key`].
pub fn parse_staging_key(key: &str) -> Option<(&str, &str)> {
    let (package_guid, upload_id) = key.strip_prefix(STAGING_PREFIX)?.split_once('/')?;
    (!package_guid.is_empty() && !upload_id.is_empty() && !upload_id.contains('/'))
        .then_some((package_guid, upload_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_keys_parse_back() {
        let key = staging_key("Guid-1", "upload-2");
        assert_eq!(key, "staging/guid-1/upload-2");
        assert_eq!(parse_staging_key(&key), Some(("guid-1", "upload-2")));
        for bad in [
            "staging/",
            "staging/g",
            "staging//u",
            "staging/g/",
            "other/g/u",
            "staging/g/u/x",
        ] {
            assert_eq!(parse_staging_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_are_partitioned_like_cloud_controller() {
        assert_eq!(
            blob_key("guid-e036ecfe-35d3-482d-a6da-5276a9d4d01e"),
            "gu/id/guid-e036ecfe-35d3-482d-a6da-5276a9d4d01e"
        );
        assert_eq!(blob_key("8F1F294D-cef8"), "8f/1f/8f1f294d-cef8");
        assert_eq!(blob_key("ab"), "ab//ab");
        assert_eq!(staging_key("ABC", "u1"), "staging/abc/u1");
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for &state in PackageState::ALL {
            assert_eq!(state.as_str().parse::<PackageState>(), Ok(state));
        }
        assert!("ready".parse::<PackageState>().is_err());
        assert_eq!("bits".parse::<PackageType>(), Ok(PackageType::Bits));
        assert!("url".parse::<PackageType>().is_err());
    }

    #[test]
    fn initial_states() {
        assert_eq!(
            PackageState::initial(PackageType::Bits),
            PackageState::AwaitingUpload
        );
        assert_eq!(
            PackageState::initial(PackageType::Docker),
            PackageState::Ready
        );
        assert_eq!(
            PackageState::initial_for_copy(PackageType::Bits),
            PackageState::Copying
        );
        assert_eq!(
            PackageState::initial_for_copy(PackageType::Docker),
            PackageState::Ready
        );
    }

    #[test]
    fn uploads_are_accepted_only_while_awaiting() {
        for &state in PackageState::ALL {
            assert_eq!(
                Transition::AcceptUpload.applies_to(state),
                state == PackageState::AwaitingUpload,
                "{state}"
            );
        }
    }

    #[test]
    fn jobs_only_finish_pending_packages() {
        for t in [Transition::UploadSucceeded, Transition::UploadFailed] {
            assert_eq!(t.from(), &[PackageState::ProcessingUpload]);
        }
        for t in [Transition::CopySucceeded, Transition::CopyFailed] {
            assert_eq!(t.from(), &[PackageState::Copying]);
        }
        // A finished package is never changed by a duplicate or late job.
        for finished in [
            PackageState::Ready,
            PackageState::Failed,
            PackageState::Expired,
        ] {
            for t in [
                Transition::UploadSucceeded,
                Transition::UploadFailed,
                Transition::CopySucceeded,
                Transition::CopyFailed,
            ] {
                assert!(!t.applies_to(finished));
            }
        }
        assert_eq!(
            Transition::failure_from(PackageState::Copying),
            Some(Transition::CopyFailed)
        );
        assert_eq!(Transition::failure_from(PackageState::Ready), None);
    }

    #[test]
    fn only_ready_packages_expire() {
        assert_eq!(Transition::Expire.from(), &[PackageState::Ready]);
        assert_eq!(Transition::Expire.to(), PackageState::Expired);
    }
}

/// What a final transition writes besides the state: the hashes of READY bits, or the
/// reason of a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub error: Option<String>,
}

/// What a job does; the `kind` of a job message, a job row and the job metrics.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Display,
    EnumString,
    IntoStaticStr,
    VariantArray,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Validate a staged upload, hash it, make the package READY.
    ProcessUpload,
    /// Copy another package's bits.
    CopyBits,
    /// Delete the bits of a package that is gone or expired.
    DeleteBits,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub const ALL: &[JobKind] = JobKind::VARIANTS;

    /// The jobs that end a package's pending state.
    pub const FOR_PENDING_PACKAGES: [JobKind; 2] = [JobKind::ProcessUpload, JobKind::CopyBits];
}
