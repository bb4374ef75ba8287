//! UAA's signing keys (`GET {auth.uaa_url}/token_keys`, a JWK set), chosen by a token's
//! `kid`. A token naming a key the set does not hold makes the set be fetched again, at
//! most once per `auth.token_keys_min_interval_secs` whoever asks, so a key rotation at UAA
//! needs no restart while a flood of invented `kid`s costs one request per interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set read; UAA's holds a handful of keys.
const MAX_BODY_BYTES: usize = 1 << 20;
/// The most keys kept from one set.
const MAX_KEYS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching {url} failed")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered more than {MAX_BODY_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url} answered no JWK set")]
    Malformed {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The signing keys of one UAA.
pub struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// Counts the sets taken; a token checked against an earlier set is checked again.
    generation: AtomicU64,
    /// When the set was last fetched; held across a fetch, so concurrent callers share it.
    fetched: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Keys of the UAA at `uaa_url`; nothing is fetched until [`Jwks::refresh`].
    pub fn new(uaa_url: &str, min_interval: Duration) -> Jwks {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Jwks {
            url: format!("{}/token_keys", uaa_url.trim_end_matches('/')),
            http,
            keys: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            fetched: tokio::sync::Mutex::new(None),
            min_interval,
        }
    }

    pub(crate) fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Fetches the set again unless it was fetched within the minimum interval (then
    /// returns `Ok(false)`). Callers that arrive during a fetch wait for it and do not
    /// fetch again. The keys are replaced only by a set that was read whole.
    pub async fn refresh(&self) -> Result<bool, JwksError> {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() < self.min_interval) {
            return Ok(false);
        }
        *fetched = Some(Instant::now());
        let keys = self.fetch().await?;
        tracing::info!(url = %self.url, keys = keys.len(), "UAA signing keys fetched");
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Which set of keys is in use: it changes with every set taken.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, JwksError> {
        let fetch_error = |source| JwksError::Fetch {
            url: self.url.clone(),
            source,
        };
        let mut response = self.http.get(&self.url).send().await.map_err(fetch_error)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: self.url.clone(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(JwksError::TooLarge {
                    url: self.url.clone(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|source| JwksError::Malformed {
            url: self.url.clone(),
            source,
        })?;
        Ok(set
            .keys
            .iter()
            // RSA keys with an id only: a token picks its key by `kid`, and only RS256 is
            // verified with these keys.
            .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .take(MAX_KEYS)
            .collect())
    }
}
