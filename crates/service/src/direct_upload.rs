//! Direct uploads: a client asks for an upload link for a package waiting for its bits,
//! PUTs the zip to it, then completes the upload; from there the usual job runs. On S3 the
//! link is a presigned PUT, so the bytes never pass through the API; on the local
//! blobstore it points at the service itself, signed with HMAC-SHA256, expiring, and good
//! for one stored object.
//!
//! Nothing is recorded when a link is issued: the link names the package, an upload id and
//! its expiry, and its object's key is `staging/<package>/<upload id>`. An object there
//! makes the link used; a package that no longer awaits its bits refuses it; the staging
//! sweep removes an object that was never completed.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use hmac::{Hmac, Mac};
use packages_domain::validation::Invalid;
use packages_domain::{BlobKey, PackageGuid, PackageState, PackageType, Principal, Timestamp};
use packages_domain::{new_guid, staging_key};
use packages_jobs::ProcessUpload;

use crate::packages::{NOT_BITS, PackageView};
use crate::{Resource, Result, ServiceError, Services};

/// HKDF context: a key derived for one purpose is useless for any other.
const PURPOSE: &[u8] = b"packages: direct upload links";

pub const LINK_EXPIRED: &str = "The upload link has expired";
pub const LINK_USED: &str = "The upload link has already been used";
pub const NOTHING_UPLOADED: &str = "No bits have been uploaded with this link";
pub const NO_LINK_KEY: &str =
    "Direct uploads cannot be offered: packages.encryption_key is not configured";

/// Signs the service's own upload links (local blobstore).
#[derive(Clone)]
pub struct UploadLinkKey {
    key: [u8; 32],
}

impl std::fmt::Debug for UploadLinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadLinkKey(..)")
    }
}

impl UploadLinkKey {
    /// Derives the HMAC key from `packages.encryption_key` with HKDF-SHA256.
    pub fn from_material(material: &str) -> UploadLinkKey {
        UploadLinkKey {
            key: crate::credentials::derive_key(material, PURPOSE),
        }
    }

    fn mac(&self, package_guid: &str, upload_id: &str, expires: i64) -> Hmac<sha2::Sha256> {
        let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes a key of any length"),
        };
        // Lengths first: no two different triples sign the same bytes.
        for part in [package_guid.to_lowercase().as_bytes(), upload_id.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&expires.to_be_bytes());
        mac
    }

    /// Hex HMAC-SHA256 over the package, the upload id and the expiry.
    pub fn sign(&self, package_guid: &str, upload_id: &str, expires: i64) -> String {
        hex::encode(
            self.mac(package_guid, upload_id, expires)
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `signature` was made by [`UploadLinkKey::sign`] for these values (compared
    /// in constant time).
    pub fn verify(
        &self,
        package_guid: &str,
        upload_id: &str,
        expires: i64,
        signature: &str,
    ) -> bool {
        let Ok(signature) = hex::decode(signature) else {
            return false;
        };
        self.mac(package_guid, upload_id, expires)
            .verify_slice(&signature)
            .is_ok()
    }
}

/// Where the client PUTs the bytes.
#[derive(Debug, Clone)]
pub enum UploadTarget {
    /// A presigned URL of the blobstore (S3).
    Presigned(String),
    /// The service's own PUT route, with these query values.
    Service { signature: String },
}

/// An issued link.
#[derive(Debug, Clone)]
pub struct DirectUpload {
    pub upload_id: String,
    pub package_guid: PackageGuid,
    pub expires_at: Timestamp,
    pub max_size_in_bytes: u64,
    pub target: UploadTarget,
}

/// An upload id is a GUID the service made; anything else names no object.
fn upload_key(package_guid: &str, upload_id: &str) -> Option<BlobKey> {
    uuid::Uuid::parse_str(upload_id)
        .ok()
        .filter(|id| id.hyphenated().to_string() == upload_id)
        .map(|_| staging_key(package_guid, upload_id))
}

impl Services {
    /// Issues a link for a bits package awaiting its upload: the checks of an upload
    /// (scope, lookup, role, type, state), then a presigned PUT or a signed link.
    pub async fn issue_direct_upload(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
    ) -> Result<DirectUpload> {
        let package = self.uploadable_package(principal, guid).await?;
        let upload_id = new_guid();
        let ttl = self.policy.direct_link_ttl;
        let expires_at =
            Timestamp(Timestamp::now().seconds() + i64::try_from(ttl.as_secs()).unwrap_or(0));
        let key = staging_key(&package.guid, &upload_id);
        let target = match self.blobs.upload_url(&key, ttl).await? {
            Some(url) => UploadTarget::Presigned(url),
            None => {
                let Some(link_key) = &self.policy.upload_link_key else {
                    return Err(Invalid::one(NO_LINK_KEY).into());
                };
                UploadTarget::Service {
                    signature: link_key.sign(&package.guid, &upload_id, expires_at.seconds()),
                }
            }
        };
        Ok(DirectUpload {
            upload_id,
            package_guid: package.guid,
            expires_at,
            max_size_in_bytes: self.policy.max_body_bytes,
            target,
        })
    }

    /// The bytes PUT to a signed link (local blobstore): the signature (403), the expiry
    /// and the package (422, 404, 400), one object per link (422), then the body streams
    /// into the link's staging key under `upload.max_body_bytes`. Returns its size.
    pub async fn receive_direct_upload<S, E>(
        &self,
        guid: &PackageGuid,
        upload_id: &str,
        expires: i64,
        signature: &str,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let link_key = self
            .policy
            .upload_link_key
            .as_ref()
            .ok_or(ServiceError::NotAuthorized)?;
        if !link_key.verify(guid, upload_id, expires, signature) {
            return Err(ServiceError::NotAuthorized);
        }
        let key = upload_key(guid, upload_id).ok_or(ServiceError::NotAuthorized)?;
        if Timestamp::now().seconds() > expires {
            return Err(Invalid::one(LINK_EXPIRED).into());
        }
        let Some(package) = self.find_package(guid).await? else {
            return Err(ServiceError::NotFound(Resource::Package));
        };
        if package.package_type != PackageType::Bits {
            return Err(Invalid::one(NOT_BITS).into());
        }
        if package.state != PackageState::AwaitingUpload {
            return Err(ServiceError::BitsAlreadyUploaded);
        }
        if self.blobs.size(&key).await?.is_some() {
            return Err(Invalid::one(LINK_USED).into());
        }
        // Claimed while the bytes stream: two PUTs to one link cannot both store.
        let ticket = self.claim_for_upload(&package.guid).await?;
        let stored = self.ingest_into(&ticket, key.clone(), body, 0).await;
        self.release_upload(&ticket).await;
        let staged = stored?;
        Ok(staged.size)
    }

    /// Completes a direct upload like any upload is accepted: the upload's checks, then
    /// the link's object must be there (422) and within `upload.max_body_bytes` (413,
    /// and the object goes); AWAITING_UPLOAD → PROCESSING_UPLOAD with its job.
    pub async fn complete_direct_upload(
        &self,
        principal: &Principal,
        guid: &PackageGuid,
        upload_id: &str,
        request_id: &str,
    ) -> Result<PackageView> {
        let ticket = self.prepare_upload(principal, guid).await?;
        let result = async {
            let Some(key) = upload_key(&ticket.package_guid, upload_id) else {
                return Err(Invalid::one(NOTHING_UPLOADED).into());
            };
            let Some(size) = self.blobs.size(&key).await? else {
                return Err(Invalid::one(NOTHING_UPLOADED).into());
            };
            let limit = self.policy.max_body_bytes;
            if size > limit {
                self.discard_staged(&key).await;
                return Err(ServiceError::TooLarge { limit });
            }
            self.accept_upload(
                &ticket,
                Some(ProcessUpload::bits(key, size)),
                None,
                request_id,
            )
            .await
        }
        .await;
        if result.is_err() {
            self.release_upload(&ticket).await;
        }
        result
    }
}

/// How long links last unless configured (`upload.direct_link_ttl_secs`).
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_package_upload_and_expiry() {
        let key = UploadLinkKey::from_material("0123456789abcdef0123456789abcdef");
        let id = "6f1c0b5e-8a8e-4c2f-9d1e-3f6a7b8c9d0e";
        let sig = key.sign("PKG", id, 100);
        assert!(
            key.verify("pkg", id, 100, &sig),
            "package guids compare in any case"
        );
        assert!(!key.verify("other", id, 100, &sig));
        assert!(!key.verify("pkg", "6f1c0b5e-8a8e-4c2f-9d1e-3f6a7b8c9d0f", 100, &sig));
        assert!(!key.verify("pkg", id, 101, &sig));
        assert!(!key.verify("pkg", id, 100, "zz"));
        let other = UploadLinkKey::from_material("another key of at least 32 bytes!!");
        assert!(!other.verify("pkg", id, 100, &sig));
    }

    #[test]
    fn only_service_made_ids_name_an_object() {
        let id = "6f1c0b5e-8a8e-4c2f-9d1e-3f6a7b8c9d0e";
        assert_eq!(
            upload_key("PKG", id).map(|k| k.to_string()),
            Some(format!("staging/pkg/{id}"))
        );
        for bad in [
            "",
            "x",
            "../x",
            "6F1C0B5E-8A8E-4C2F-9D1E-3F6A7B8C9D0E",
            "6f1c0b5e8a8e4c2f9d1e3f6a7b8c9d0e",
        ] {
            assert!(upload_key("pkg", bad).is_none(), "{bad}");
        }
    }
}
