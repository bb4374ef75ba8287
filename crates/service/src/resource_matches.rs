//! `POST /v3/resource_matches` (GA): which of a client's files the resource pool already
//! holds, so that it uploads only the others.

use packages_domain::Principal;
use packages_domain::resources::{self, ResourceMatch};
use packages_domain::validation;
use packages_storage::resource_pool;

use crate::lookup::require_write_scope;
use crate::{Result, ServiceError, Services};

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
        let body = validation::parse_object(body).map_err(|e| ServiceError::Unparsable(e.0))?;
        let wanted = resources::resource_matches(&body)?;
        let bounds = self.policy.resource_pool;
        // Only sizes the pool takes can match; the others need no lookup.
        let candidates: Vec<(String, u64)> = wanted
            .iter()
            .filter(|r| bounds.matches(r.size_in_bytes))
            .map(|r| (r.sha1(), r.size_in_bytes))
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .db
            .run(move |conn| {
                let keys: Vec<(&str, u64)> =
                    candidates.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                resource_pool::contains_each(conn, &keys)
            })
            .await?;
        let mut found = found.into_iter();
        Ok(wanted
            .into_iter()
            .filter(|r| bounds.matches(r.size_in_bytes) && found.next().unwrap_or(false))
            .collect())
    }
}
