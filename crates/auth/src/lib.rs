//! Bearer token verification and minting.
//!
//! Tokens are UAA-style JWTs: HS256 with a shared secret (`auth.jwt_secret`) and/or RS256
//! with a public key (`auth.jwt_public_key`). The token header's `alg` only selects among
//! the keys that are configured, and each key is bound to exactly one algorithm, so neither
//! `none` nor the HS256-signed-with-the-RSA-public-key trick can get through. With
//! `auth.uaa_url`, RS256 tokens are verified with UAA's own keys ([`jwks`]), chosen by
//! `kid`; the PEM key stays as the fallback.

mod accepted;
mod jwks;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use packages_domain::Principal;
use rand::RngCore;
use serde::Deserialize;

use accepted::AcceptedTokens;
pub use jwks::{Jwks, JwksError};

/// Clock skew tolerated on `exp` (and `nbf` when a token carries one), in seconds. None:
/// as in Cloud Controller, a token is valid only while `exp` is in the future.
pub const LEEWAY_SECS: u64 = 0;

/// `iss` of tokens made by [`mint`].
pub const MINT_ISSUER: &str = "packages";

/// `client_id` of tokens made by [`mint`]; the cf CLI's client.
pub const MINT_CLIENT_ID: &str = "cf";

/// Why a request's credentials were refused. `Missing` is 401 `NotAuthenticated`,
/// `Invalid` is 401 `InvalidAuthToken`.
/// Shortest HS256 key accepted: RFC 7518 asks for at least the hash's 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthFailure {
    #[error("no token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Bad auth configuration, found at start-up or when asked to mint.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no token key configured: set auth.jwt_secret, auth.jwt_public_key and/or auth.uaa_url"
    )]
    NoKey,
    #[error("auth.jwt_secret is empty")]
    EmptySecret,
    #[error("auth.jwt_secret must be at least {MIN_SECRET_BYTES} bytes long, got {0}")]
    ShortSecret(usize),
    #[error("auth.audience is empty")]
    EmptyAudience,
    #[error("auth.jwt_public_key is not an RSA public key in PEM form: {0}")]
    InvalidPublicKey(String),
    #[error("auth.jwt_secret must not be the RS256 public key")]
    SecretIsPublicKey,
    #[error("no HS256 secret configured: tokens cannot be signed")]
    NoSecret,
    #[error("token could not be signed: {0}")]
    Signing(String),
}

/// One accepted algorithm with its key and the checks that go with it.
#[derive(Clone, Debug)]
struct KeyedValidation {
    key: DecodingKey,
    validation: Validation,
}

impl KeyedValidation {
    fn new(algorithm: Algorithm, key: DecodingKey, audience: &str) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        // jsonwebtoken only checks `aud` when the token has one; a token without an
        // audience must not pass.
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.set_audience(&[audience]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        KeyedValidation { key, validation }
    }
}

/// Checks bearer tokens against the configured keys and audience.
#[derive(Clone, Debug)]
pub struct Verifier {
    hs256: Option<KeyedValidation>,
    rs256: Option<KeyedValidation>,
    /// UAA's keys, and the checks for tokens they signed.
    uaa: Option<(Arc<Jwks>, Validation)>,
    /// Tokens that passed these checks lately; shared by clones, which check alike.
    accepted: Arc<AcceptedTokens>,
}

/// The claims this service reads; anything else in a token is ignored.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    /// An array of strings; a space-separated string (or anything else) is refused by
    /// deserialisation, so the token is invalid rather than silently scope-less.
    #[serde(default)]
    scope: Option<Vec<String>>,
    /// Required and checked by the validation; read to know how long a pass holds.
    #[serde(default)]
    exp: Option<f64>,
}

impl Verifier {
    /// At least one key is required; the secret enables HS256, the PEM public key RS256.
    pub fn new(
        jwt_secret: Option<&str>,
        jwt_public_key_pem: Option<&str>,
        audience: &str,
    ) -> Result<Verifier, AuthError> {
        Verifier::build(jwt_secret, jwt_public_key_pem, None, audience)
    }

    /// Like [`Verifier::new`], and RS256 tokens naming a `kid` are verified with UAA's keys
    /// (see [`Verifier::verify_async`]).
    pub fn with_uaa_keys(
        jwt_secret: Option<&str>,
        jwt_public_key_pem: Option<&str>,
        jwks: Arc<Jwks>,
        audience: &str,
    ) -> Result<Verifier, AuthError> {
        Verifier::build(jwt_secret, jwt_public_key_pem, Some(jwks), audience)
    }

    /// Tokens must carry this `iss` (UAA's token endpoint URL), whoever signed them.
    pub fn require_issuer(mut self, issuer: &str) -> Verifier {
        let checks = self
            .hs256
            .iter_mut()
            .chain(self.rs256.iter_mut())
            .map(|keyed| &mut keyed.validation)
            .chain(self.uaa.iter_mut().map(|(_, validation)| validation));
        for validation in checks {
            validation.set_issuer(&[issuer]);
            validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        }
        // What passed the looser checks must be checked again.
        self.accepted = Arc::default();
        self
    }

    fn build(
        jwt_secret: Option<&str>,
        jwt_public_key_pem: Option<&str>,
        jwks: Option<Arc<Jwks>>,
        audience: &str,
    ) -> Result<Verifier, AuthError> {
        if jwt_secret.is_none() && jwt_public_key_pem.is_none() && jwks.is_none() {
            return Err(AuthError::NoKey);
        }
        if audience.trim().is_empty() {
            return Err(AuthError::EmptyAudience);
        }
        let hs256 = match jwt_secret {
            None => None,
            // An empty HMAC key would let anyone sign tokens.
            Some(secret) if secret.trim().is_empty() => return Err(AuthError::EmptySecret),
            // A short one can be found by brute force from any token it signed.
            Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                return Err(AuthError::ShortSecret(secret.len()));
            }
            Some(secret) => Some(KeyedValidation::new(
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
                audience,
            )),
        };
        let rs256 = match jwt_public_key_pem {
            None => None,
            Some(pem) => {
                // A private key PEM parses too, but no signature would ever verify; say so
                // now rather than refuse every token later.
                if pem.contains("PRIVATE KEY") {
                    return Err(AuthError::InvalidPublicKey(
                        "a private key was given; configure the public key".into(),
                    ));
                }
                // The public key is public: as an HMAC secret it would let anyone sign.
                if jwt_secret.is_some_and(|secret| secret.trim() == pem.trim()) {
                    return Err(AuthError::SecretIsPublicKey);
                }
                let key = DecodingKey::from_rsa_pem(pem.trim().as_bytes())
                    .map_err(|e| AuthError::InvalidPublicKey(e.to_string()))?;
                Some(KeyedValidation::new(Algorithm::RS256, key, audience))
            }
        };
        let uaa = jwks.map(|jwks| {
            // The key is only a placeholder: each token's key comes from the set.
            let checks =
                KeyedValidation::new(Algorithm::RS256, DecodingKey::from_secret(b""), audience);
            (jwks, checks.validation)
        });
        Ok(Verifier {
            hs256,
            rs256,
            uaa,
            accepted: Arc::default(),
        })
    }

    /// [`Verifier::verify`], and an RS256 token naming a `kid` is checked with that key of
    /// UAA's set, fetched again (rate-limited) when the set lacks it. An id the set still
    /// lacks falls back to the configured PEM key, if any.
    pub async fn verify_async(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, AuthFailure> {
        let token = bearer_token(authorization)?;
        let keys = self.uaa_keys_generation();
        if let Some(principal) = self.accepted_lately(token, keys) {
            return Ok(principal);
        }
        let passed = self.check_async(token).await?;
        Ok(self.keep(token, keys, passed))
    }

    async fn check_async(&self, token: &str) -> Result<Passed, AuthFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(describe)?;
        if let (Algorithm::RS256, Some(kid), Some((jwks, validation))) =
            (header.alg, header.kid.as_deref(), &self.uaa)
        {
            let key = match jwks.key(kid) {
                Some(key) => Some(key),
                None => {
                    if let Err(e) = jwks.refresh().await {
                        tracing::warn!(error = %e, "UAA signing keys could not be fetched");
                    }
                    jwks.key(kid)
                }
            };
            match key {
                Some(key) => return principal(token, &key, validation),
                None if self.rs256.is_none() => return Err(invalid("unknown signing key id")),
                None => {}
            }
        }
        self.verify_token(token, &header)
    }

    /// Checks the raw `Authorization` header value, if any, and returns the caller. Only
    /// the configured keys are used (never UAA's set: see [`Verifier::verify_async`]).
    pub fn verify(&self, authorization: Option<&str>) -> Result<Principal, AuthFailure> {
        let token = bearer_token(authorization)?;
        let keys = self.uaa_keys_generation();
        if let Some(principal) = self.accepted_lately(token, keys) {
            return Ok(principal);
        }
        let header = jsonwebtoken::decode_header(token).map_err(describe)?;
        let passed = self.verify_token(token, &header)?;
        Ok(self.keep(token, keys, passed))
    }

    /// Read before a check: a set taken during the check makes its pass count for none.
    fn uaa_keys_generation(&self) -> u64 {
        self.uaa.as_ref().map_or(0, |(jwks, _)| jwks.generation())
    }

    fn accepted_lately(&self, token: &str, keys: u64) -> Option<Principal> {
        self.accepted.get(token, keys, unix_now(), Instant::now())
    }

    fn keep(&self, token: &str, keys: u64, passed: Passed) -> Principal {
        if let Some(expires_at) = passed.expires_at {
            self.accepted
                .keep(token, &passed.principal, keys, expires_at, Instant::now());
        }
        passed.principal
    }

    fn verify_token(&self, token: &str, header: &Header) -> Result<Passed, AuthFailure> {
        // The header only picks among configured keys, and each key serves one algorithm.
        let keyed = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| invalid(format!("algorithm {:?} is not accepted", header.alg)))?;
        principal(token, &keyed.key, &keyed.validation)
    }
}

/// The token of a raw `Authorization` header value.
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthFailure> {
    let raw = match authorization.map(str::trim) {
        None | Some("") => return Err(AuthFailure::Missing),
        Some(raw) => raw,
    };
    let (scheme, token) = raw
        .split_once(|c: char| c.is_ascii_whitespace())
        .map_or((raw, ""), |(scheme, token)| (scheme, token.trim()));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid("authorization scheme is not bearer"));
    }
    if token.is_empty() {
        return Err(invalid("empty bearer token"));
    }
    // Unknown algorithms, `none` included, fail to parse in `decode_header`.
    Ok(token)
}

/// A token that passed: its caller, and its `exp` in whole seconds.
struct Passed {
    principal: Principal,
    expires_at: Option<u64>,
}

/// Seconds since the Unix epoch, the unit of `exp`.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The caller a token names, once its signature and claims passed `validation`.
fn principal(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Passed, AuthFailure> {
    let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
        .map_err(describe)?
        .claims;
    let user = [claims.user_id, claims.client_id]
        .into_iter()
        .flatten()
        .find(|id| !id.is_empty())
        .ok_or_else(|| invalid("token names no user_id or client_id"))?;
    Ok(Passed {
        principal: Principal::new(user, &claims.scope.unwrap_or_default()),
        // A fraction of a second more is not kept.
        expires_at: claims
            .exp
            .filter(|exp| exp.is_finite() && *exp > 0.0)
            .map(|exp| exp as u64),
    })
}

fn invalid(reason: impl Into<String>) -> AuthFailure {
    AuthFailure::Invalid(reason.into())
}

/// Short reasons for logs; clients only ever see `InvalidAuthToken`.
fn describe(error: jsonwebtoken::errors::Error) -> AuthFailure {
    let reason = match error.kind() {
        ErrorKind::InvalidSignature => "bad signature".to_owned(),
        ErrorKind::ExpiredSignature => "token expired".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid".to_owned(),
        ErrorKind::InvalidAudience => "audience not accepted".to_owned(),
        ErrorKind::InvalidIssuer => "issuer not accepted".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "algorithm not accepted".to_owned()
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("missing {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed {claim} claim"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            "undecodable token".to_owned()
        }
        ErrorKind::Json(e) => format!("undecodable token: {e}"),
        _ => error.to_string(),
    };
    AuthFailure::Invalid(reason)
}

/// Signs an HS256 token the way UAA shapes them, so the API can be tried with curl.
///
/// Claims: `user_id` and `sub` (the user), `scope` (array), `aud` (array with `audience`),
/// `iat`, `exp` (`iat` + `ttl`), `jti` (a random UUID), `iss` [`MINT_ISSUER`] and
/// `client_id` [`MINT_CLIENT_ID`].
pub fn mint(
    jwt_secret: &str,
    user_guid: &str,
    scopes: &[String],
    audience: &str,
    ttl: Duration,
) -> Result<String, AuthError> {
    if jwt_secret.trim().is_empty() {
        return Err(AuthError::NoSecret);
    }
    let iat = chrono::Utc::now().timestamp();
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().simple().to_string(),
        "sub": user_guid,
        "user_id": user_guid,
        "scope": scopes,
        "client_id": MINT_CLIENT_ID,
        "iat": iat,
        "exp": iat.saturating_add(ttl_secs),
        "iss": MINT_ISSUER,
        "aud": [audience],
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(jwt_secret.as_bytes()),
    )
    .map_err(|e| AuthError::Signing(e.to_string()))
}

/// A new HS256 secret: 32 random bytes from the OS-seeded generator, hex encoded
/// (64 characters, safe in TOML, environment variables and shells).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
