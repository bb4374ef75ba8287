//! Docker registry passwords at rest: sealed with AES-256-GCM under a key derived from
//! `packages.encryption_key`, bound to their package, never stored or shown in the clear.
//! Nothing in this service reads a password back; [`CredentialKey::open`] exists for the
//! component that pulls images, and for tests.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// Marks the format of a sealed value, so a later format can be told apart.
const VERSION: &str = "v1:";
const NONCE_BYTES: usize = 12;
/// HKDF context: a key derived for one purpose is useless for any other.
const PURPOSE: &[u8] = b"packages: docker registry passwords";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the password could not be sealed")]
    Seal,
    #[error("the sealed value is malformed or was sealed under another key or package")]
    Open,
}

/// A 256-bit key for one `purpose`, derived from `packages.encryption_key` with
/// HKDF-SHA256: any string of enough entropy (hex, base64, a passphrase) makes a uniform
/// key, and a key derived for one purpose is useless for any other.
pub(crate) fn derive_key(material: &str, purpose: &[u8]) -> [u8; 32] {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, material.as_bytes());
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
    if hkdf.expand(purpose, &mut key).is_err() {
        unreachable!("HKDF-SHA256 yields 32 bytes");
    }
    key
}

/// The key passwords are sealed with.
#[derive(Clone)]
pub struct CredentialKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialKey(..)")
    }
}

impl CredentialKey {
    /// Derives the AES-256 key from the configured material with HKDF-SHA256, so any
    /// string of enough entropy (hex, base64, a passphrase) makes a uniform key.
    pub fn from_material(material: &str) -> CredentialKey {
        CredentialKey {
            cipher: Aes256Gcm::new(&derive_key(material, PURPOSE).into()),
        }
    }

    /// `v1:` + base64(nonce ‖ ciphertext ‖ tag), with a fresh random nonce. The package
    /// GUID is authenticated with it, so a sealed value moved to another row fails to open.
    pub fn seal(&self, package_guid: &str, password: &str) -> Result<String, SealError> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: password.as_bytes(),
                    aad: package_guid.as_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{VERSION}{}", STANDARD_NO_PAD.encode(bytes)))
    }

    pub fn open(&self, package_guid: &str, sealed: &str) -> Result<String, SealError> {
        let encoded = sealed.strip_prefix(VERSION).ok_or(SealError::Open)?;
        let bytes = STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Open)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Open)?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: package_guid.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_purpose_gets_its_own_key() {
        let material = "0123456789abcdef0123456789abcdef";
        assert_eq!(derive_key(material, b"a"), derive_key(material, b"a"));
        assert_ne!(derive_key(material, b"a"), derive_key(material, b"b"));
        assert_ne!(
            derive_key(material, b"a"),
            derive_key("another material of 32 chars!!!", b"a")
        );
    }

    const MATERIAL: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn sealed_passwords_open_only_with_their_key_and_package() {
        let key = CredentialKey::from_material(MATERIAL);
        let sealed = key.seal("pkg-1", "s3cret").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(key.open("pkg-1", &sealed).unwrap(), "s3cret");
        assert!(key.open("pkg-2", &sealed).is_err(), "bound to its package");
        let other = CredentialKey::from_material("another key of at least 32 characters");
        assert!(other.open("pkg-1", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open("pkg-1", &tampered).is_err());
        assert!(key.open("pkg-1", "s3cret").is_err());
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let key = CredentialKey::from_material(MATERIAL);
        let a = key.seal("pkg", "same").unwrap();
        let b = key.seal("pkg", "same").unwrap();
        assert_ne!(a, b);
        assert_eq!(format!("{key:?}"), "CredentialKey(..)");
    }
}
