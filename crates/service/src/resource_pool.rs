//! The resource pool (GA's app bits cache): files of READY packages kept by SHA-1 in the
//! blobstore, indexed in the database. `POST /v3/resource_matches` asks which of a
//! client's files it holds; uploads name those files instead of sending them, and the
//! worker fills the pool from every package that becomes READY.
//!
//! A pool entry is written to the blobstore first (atomically: a reader never sees half of
//! it) and indexed after, so the index never names a file that is not there; an entry
//! that fails its integrity check leaves the index first.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::StreamExt;
use packages_domain::resources::{self, Fingerprint, ResourceMatch};
use packages_domain::{BlobKey, Principal, validation};
use packages_storage::resource_pool;

use crate::lookup::require_write_scope;
use crate::{Result, ServiceError, Services};

/// Where pool files live in the blobstore: Cloud Controller's `RESOURCE_POOL_DIR`.
pub const POOL_PREFIX: &str = "app_bits_cache/";

/// The blob key of the pool file with this (lowercase) SHA-1, partitioned like Cloud
/// Controller's: `app_bits_cache/ab/cd/abcd…`.
pub fn pool_key(sha1: &str) -> BlobKey {
    let (first, rest) = sha1.split_at(sha1.len().min(2));
    let second = &rest[..rest.len().min(2)];
    BlobKey::new(format!("{POOL_PREFIX}{first}/{second}/{sha1}"))
}

/// Longest fingerprints list a worker reads back: what an upload may send, with room for
/// the JSON it was re-encoded as.
const MAX_STAGED_RESOURCES: usize = 16 << 20;

impl Services {
    /// The entries of the request the pool holds with exactly their size, in request
    /// order, as the client sent them. Any user with the write scope may ask: the pool is
    /// shared by every package, as in Cloud Controller. One indexed query per request.
    pub async fn match_resources(
        &self,
        principal: &Principal,
        body: &[u8],
    ) -> Result<Vec<ResourceMatch>> {
        require_write_scope(principal)?;
        let body = validation::parse_ga_object(body).map_err(|e| ServiceError::Unparsable(e.0))?;
        let wanted = resources::resource_matches(&body)?;
        let bounds = self.policy.resource_pool;
        // Only sizes the pool takes can match; the others need no lookup.
        let candidates: Vec<(String, u64)> = wanted
            .iter()
            .filter(|r| bounds.matches(r.size_in_bytes))
            .map(|r| (r.sha1(), r.size_in_bytes))
            .collect();
        let mut found = self.pool_holds(candidates).await?.into_iter();
        Ok(wanted
            .into_iter()
            .filter(|r| bounds.matches(r.size_in_bytes) && found.next().unwrap_or(false))
            .collect())
    }

    /// Which of these (SHA-1, size) pairs the pool holds, in order.
    pub async fn pool_holds(&self, entries: Vec<(String, u64)>) -> Result<Vec<bool>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .db
            .run(move |conn| {
                let keys: Vec<(&str, u64)> =
                    entries.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                resource_pool::contains_each(conn, &keys)
            })
            .await?)
    }

    /// Which of `sizes` the pool holds any file of.
    pub async fn pool_sizes_held(&self, sizes: Vec<u64>) -> Result<BTreeSet<u64>> {
        if sizes.is_empty() {
            return Ok(BTreeSet::new());
        }
        Ok(self
            .db
            .run(move |conn| resource_pool::sizes_held(conn, &sizes))
            .await?)
    }

    /// Indexes a pool file once it is stored under [`pool_key`].
    pub async fn pool_added(&self, sha1: &str, size: u64) -> Result<()> {
        let sha1 = sha1.to_owned();
        self.db
            .run(move |conn| resource_pool::insert(conn, &sha1, size))
            .await?;
        Ok(())
    }

    /// Removes a pool entry that failed its integrity check: the index first, so no match
    /// names it any more, then the file.
    pub async fn pool_remove(&self, sha1: &str) -> Result<()> {
        let owned = sha1.to_owned();
        self.db
            .run(move |conn| resource_pool::remove(conn, &owned))
            .await?;
        self.blobs.delete(&pool_key(sha1)).await?;
        Ok(())
    }

    /// The fingerprints an upload staged with [`Services::stage_resources`].
    pub async fn staged_resources(&self, key: &str) -> Result<Vec<Fingerprint>> {
        let mut stream = self.blobs.read(key).await?;
        let mut json = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk?;
            if json.len() + chunk.len() > MAX_STAGED_RESOURCES {
                return Err(ServiceError::Invalid(validation::Invalid::one(
                    resources::RESOURCES_NOT_JSON,
                )));
            }
            json.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&json).map_err(|_| {
            ServiceError::Invalid(validation::Invalid::one(resources::RESOURCES_NOT_JSON))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::pool_key;

    #[test]
    fn pool_keys_are_partitioned_like_cloud_controller() {
        assert_eq!(
            pool_key("a9993e364706816aba3e25717850c26c9cd0d89d"),
            "app_bits_cache/a9/99/a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
