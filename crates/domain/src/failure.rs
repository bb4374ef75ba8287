//! Why a package ends FAILED: the text a client reads in `data.error`, and a short label
//! for metrics.

use strum::{EnumDiscriminants, IntoStaticStr, VariantArray};

/// The label of `packages_failed_total{reason}` is the discriminant's name
/// ([`FailureLabel`]), so the metric's label set is this enum's variants.
#[derive(Debug, Clone, PartialEq, Eq, EnumDiscriminants)]
#[strum_discriminants(name(FailureLabel))]
#[strum_discriminants(derive(IntoStaticStr, VariantArray))]
#[strum_discriminants(strum(serialize_all = "snake_case"))]
pub enum FailureReason {
    /// Not a zip, unreadable, or without entries.
    InvalidZip,
    /// An entry or a symlink target escapes the package root.
    UnsafeEntry(String),
    /// The zip passes a limit on entries, name length or symlinks.
    ZipLimit(String),
    /// The zip's local headers say something else than its central directory, or its
    /// entries overlap: it would unpack differently depending on the unpacker.
    InconsistentZip(String),
    /// More uncompressed bytes than `packages.max_package_size`.
    TooLarge,
    /// The copy job could not copy the source's bits.
    CopyFailed(String),
    /// The package stayed pending past `packages.pending_timeout_secs` with its retries
    /// spent.
    TimedOut { seconds: u64 },
    /// Infrastructure kept failing (blobstore, database) until the job's retries ran out.
    #[strum_discriminants(strum(serialize = "infrastructure"))]
    GaveUp(String),
    /// A resource's path or mode may not be used (GA uploads with resources); the text is
    /// Cloud Controller's.
    UnsafeResource(String),
    /// A resource is not in the pool with its size.
    UnknownResource(String),
    /// Pool entries did not match their SHA-1; they were removed.
    ResourceChecksum,
    /// Runs of the job kept ending with their process (killed, out of memory): the job is
    /// not run again, so a package that brings a worker down cannot do it for ever.
    Crashed { runs: u32 },
}

impl FailureReason {
    /// Cloud Controller's texts where it has one.
    pub fn message(&self) -> String {
        match self {
            FailureReason::InvalidZip => "The zip provided was not valid".into(),
            FailureReason::UnsafeEntry(detail)
            | FailureReason::ZipLimit(detail)
            | FailureReason::InconsistentZip(detail) => {
                format!("The zip provided was not valid: {detail}")
            }
            FailureReason::TooLarge => "AppBitsPackage::ZipSizeExceeded".into(),
            FailureReason::CopyFailed(detail) => format!("failed to copy - {detail}"),
            FailureReason::TimedOut { seconds } => format!(
                "Package processing timed out: still pending after {seconds} seconds and its retries are spent"
            ),
            FailureReason::GaveUp(detail) => {
                format!("Package processing failed after repeated infrastructure errors: {detail}")
            }
            FailureReason::UnsafeResource(text) | FailureReason::UnknownResource(text) => {
                text.clone()
            }
            FailureReason::ResourceChecksum => "One or more cached resources did not match the given checksum. They have been deleted; please retry package upload.".into(),
            FailureReason::Crashed { runs } => format!(
                "Package processing failed: the package could not be processed ({runs} attempts ended with the worker process)"
            ),
        }
    }

    /// Label of `packages_failed_total{reason}`.
    pub fn label(&self) -> &'static str {
        FailureLabel::from(self).into()
    }
}

#[cfg(test)]
mod tests {
    use super::FailureReason;

    #[test]
    fn cloud_controller_texts() {
        assert_eq!(
            FailureReason::InvalidZip.message(),
            "The zip provided was not valid"
        );
        assert_eq!(
            FailureReason::TooLarge.message(),
            "AppBitsPackage::ZipSizeExceeded"
        );
        assert_eq!(
            FailureReason::CopyFailed("CloudController::Blobstore::Client::FileNotFound".into())
                .message(),
            "failed to copy - CloudController::Blobstore::Client::FileNotFound"
        );
        assert_eq!(
            FailureReason::ResourceChecksum.message(),
            "One or more cached resources did not match the given checksum. They have been deleted; please retry package upload."
        );
        assert_eq!(FailureReason::ResourceChecksum.label(), "resource_checksum");
        assert_eq!(
            FailureReason::UnsafeResource(String::new()).label(),
            "unsafe_resource"
        );
        assert_eq!(
            FailureReason::UnknownResource("Could not find object 'x'".into()).message(),
            "Could not find object 'x'"
        );
        assert!(
            FailureReason::UnsafeEntry("x".into())
                .message()
                .starts_with("The zip provided was not valid")
        );
    }
}
