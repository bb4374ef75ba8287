//! The HTTP API: Cloud Controller's v3 packages endpoints (E2015 shape, GA superset),
//! the context resources packages hang off, and the operator endpoints. Handlers only
//! translate HTTP to the use cases of `packages-service` and back.

mod auth;
mod error;
mod middleware;
pub mod ops;
mod presenters;
mod routes;

use std::sync::Arc;

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
}

impl ApiState {
    /// Where links point: the configured external URL, else the request's own scheme and
    /// host.
    pub fn links(&self, req: &HttpRequest) -> Links {
        match &self.external_url {
            Some(url) => Links::new(url.clone()),
            None => {
                let info = req.connection_info();
                Links::new(format!("{}://{}", info.scheme(), info.host()))
            }
        }
    }
}

/// Registers every route of the API on an actix app.
pub fn configure(state: web::Data<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(state.clone());
        cfg.app_data(web::Data::new(state.metrics.clone()));
        ops::configure(cfg, state.metrics.clone(), state.readiness.clone());
        routes::configure(cfg);
    }
}

/// A JSON response in Cloud Controller's style (pretty-printed, no trailing newline).
pub(crate) fn json(status: actix_web::http::StatusCode, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        ))
        .body(serde_json::to_vec_pretty(body).unwrap_or_default())
}
