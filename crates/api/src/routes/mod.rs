//! Routes. A path the service does not know, or a method a path does not take, answers
//! Cloud Controller's `404 NotFound` (`Unknown request`) without asking for a token.

mod context;
mod direct_upload;
mod packages;
mod upload;

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use crate::middleware::{RequestId, RoutePattern};
use crate::{ApiError, ApiState, json, presenters};

pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found_route())
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path)
        .app_data(RoutePattern::new(path))
        .default_service(web::to(not_found))
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(root)))
        .service(resource("/v3").route(web::get().to(v3_root)))
        // Routes are tried in this order, each dynamic one by a regular expression: the
        // most requested come first.
        .service(
            resource("/v3/packages/{guid}")
                .route(web::get().to(packages::show))
                .route(web::patch().to(packages::update))
                .route(web::delete().to(packages::delete)),
        )
        .service(
            resource("/v3/packages")
                .route(web::get().to(packages::list))
                .route(web::post().to(packages::create_or_copy_ga)),
        )
        .service(
            resource("/v3/apps/{guid}/packages")
                .route(web::post().to(packages::create_or_copy))
                .route(web::get().to(packages::list_for_app)),
        )
        .service(resource("/v3/packages/{guid}/upload").route(web::post().to(upload::upload)))
        .service(
            resource("/v3/packages/{guid}/direct_uploads")
                .route(web::post().to(direct_upload::issue)),
        )
        .service(
            resource("/v3/packages/{guid}/direct_uploads/{id}/bits")
                .route(web::put().to(direct_upload::receive)),
        )
        .service(
            resource("/v3/packages/{guid}/direct_uploads/{id}/actions/complete")
                .route(web::post().to(direct_upload::complete)),
        )
        .service(resource("/v3/packages/{guid}/download").route(web::get().to(packages::download)))
        .service(
            resource("/v3/packages/{guid}/droplets")
                .route(web::post().to(packages::stage))
                .route(web::get().to(packages::droplets)),
        )
        .service(resource("/v3/resource_matches").route(web::post().to(packages::match_resources)))
        .configure(context::configure)
        .default_service(web::to(not_found));
}

async fn root(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    json(
        StatusCode::OK,
        &presenters::root(&state.links(&req), state.uaa_url.as_deref()),
    )
}

async fn v3_root(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    json(StatusCode::OK, &presenters::v3_root(&state.links(&req)))
}

/// The request id the middleware derived.
pub(crate) fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

/// The query string as ordered pairs.
pub(crate) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    serde_urlencoded::from_str(req.query_string()).unwrap_or_default()
}

/// Reads a small request body (JSON or a form) under the idle timeout.
pub(crate) async fn read_body(
    state: &ApiState,
    payload: web::Payload,
) -> Result<bytes::Bytes, ApiError> {
    let (body, _) = crate::body::GuardedBody::new(payload, state.body_idle_timeout);
    crate::body::read_small(body).await
}
