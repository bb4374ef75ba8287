//! The HTTP API: Cloud Controller's v3 packages endpoints (E2015 shape, GA superset),
//! the context resources packages hang off, and the operator endpoints. Handlers only
//! translate HTTP to the use cases of `packages-service` and back.

mod auth;
mod body;
mod error;
mod middleware;
pub mod ops;
mod origin;
mod package_page;
mod presenters;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use packages_auth::Verifier;
use packages_service::Services;
use packages_telemetry::Metrics;

pub use error::ApiError;
pub use middleware::request_middleware;
pub use ops::{Probe, Readiness};
pub use presenters::Links;

/// Cloud Controller's E2015 content type, sent on every JSON response.
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// The v3 API version advertised by `GET /`.
pub const API_VERSION: &str = "3.0.0";

/// What every handler shares.
pub struct ApiState {
    pub services: Services,
    pub verifier: Verifier,
    pub metrics: Metrics,
    /// `server.external_url`: base of every `href` when set.
    pub external_url: Option<String>,
    /// `auth.uaa_url`, advertised by `GET /`.
    pub uaa_url: Option<String>,
    pub readiness: Arc<Readiness>,
    /// `server.body_idle_timeout_secs`.
    pub body_idle_timeout: Duration,
    /// `upload.proxy_secret`: what a front proxy sends in `X-Upload-Proxy-Secret`.
    pub proxy_secret: Option<String>,
    /// `server.bind`: the origin of links when the request's own is not usable.
    pub bind: SocketAddr,
}

impl ApiState {
    /// Where links point: the configured external URL, else the request's own scheme and
    /// host when they make an `http(s)` origin, else the bind address. Scheme and host may
    /// come from `Forwarded`/`X-Forwarded-*` headers, which anyone can send.
    pub fn links(&self, req: &HttpRequest) -> Links {
        match &self.external_url {
            Some(url) => Links::new(url.clone()),
            None => {
                let info = req.connection_info();
                let origin = origin::http_origin(info.scheme(), info.host())
                    .unwrap_or_else(|| format!("http://{}", self.bind));
                Links::new(origin)
            }
        }
    }

    /// Whether a request carries the front proxy's secret. Constant-time in the secret's
    /// content; a missing header or an unset secret never matches.
    pub fn proxy_secret_matches(&self, sent: Option<&[u8]>) -> bool {
        match (&self.proxy_secret, sent) {
            (Some(secret), Some(sent)) => constant_time_eq(secret.as_bytes(), sent),
            _ => false,
        }
    }
}

/// Registers every route of the API on an actix app, the operator endpoints included.
pub fn configure(state: web::Data<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        ops::configure(cfg, state.metrics.clone(), state.readiness.clone());
        configure_packages_api(state)(cfg);
    }
}

/// Registers the API's routes without the operator endpoints, for a process that serves
/// those on a port of their own (`server.ops_bind`).
pub fn configure_packages_api(state: web::Data<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state.clone());
        cfg.app_data(web::Data::new(state.metrics.clone()));
        routes::configure(cfg);
    }
}

/// A JSON response in Cloud Controller's style (pretty-printed, no trailing newline).
pub(crate) fn json(
    status: actix_web::http::StatusCode,
    body: &impl serde::Serialize,
) -> HttpResponse {
    json_rendered(status, serde_json::to_vec_pretty(body).unwrap_or_default())
}

/// A JSON body already rendered (by serde, or by hand: see
/// [`presenters::PackageBody::write_compact`]).
pub(crate) fn json_rendered(status: actix_web::http::StatusCode, body: Vec<u8>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        ))
        .body(body)
}

/// Compares two byte strings without an early exit on the first difference, so the time
/// taken does not tell an attacker how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"sixteen-bytes-ok", b"sixteen-bytes-ok"));
        assert!(!constant_time_eq(b"sixteen-bytes-ok", b"sixteen-bytes-oK"));
        assert!(!constant_time_eq(b"sixteen-bytes-ok", b"sixteen"));
        assert!(!constant_time_eq(b"sixteen-bytes-ok", b""));
    }
}
