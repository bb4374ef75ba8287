//! Package endpoints other than upload.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use packages_blobstore::Download;
use packages_domain::{AppGuid, PackageGuid};

use super::{query_pairs, read_body, request_id};
use crate::auth::{Caller, Writer};
use crate::{ApiError, ApiState, json, presenters};

/// `POST /v3/apps/:guid/packages`: a copy when `source_package_guid` is given (query
/// string or form body), else a create from the JSON body.
pub(crate) async fn create_or_copy(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(caller): Writer,
    path: web::Path<AppGuid>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let app_guid = path.into_inner();
    let body = read_body(&state, payload).await?;
    let mut source = query_pairs(&req)
        .into_iter()
        .find(|(k, _)| k == "source_package_guid")
        .map(|(_, v)| PackageGuid::new(v));
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if source.is_none() && is_form {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        source = form
            .into_iter()
            .find(|(k, _)| k == "source_package_guid")
            .map(|(_, v)| PackageGuid::new(v));
    }
    let package = match source {
        Some(source) => {
            state
                .services
                .copy_package(&caller, &app_guid, &source, &request_id(&req))
                .await?
        }
        None => {
            state
                .services
                .create_package(&caller, &app_guid, &body)
                .await?
        }
    };
    Ok(json(
        StatusCode::CREATED,
        &presenters::package(&state.links(&req), &package),
    ))
}

pub(crate) async fn list(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .services
        .list_packages(&caller, None, &query_pairs(&req))
        .await?;
    let links = state.links(&req);
    let body = presenters::page(&links, "/v3/packages", &page, presenters::package);
    Ok(json(StatusCode::OK, &body))
}

pub(crate) async fn list_for_app(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    path: web::Path<AppGuid>,
) -> Result<HttpResponse, ApiError> {
    let app_guid = path.into_inner();
    let page = state
        .services
        .list_packages(&caller, Some(&app_guid), &query_pairs(&req))
        .await?;
    let base = format!("/v3/apps/{app_guid}/packages");
    let links = state.links(&req);
    let body = presenters::page(&links, &base, &page, presenters::package);
    Ok(json(StatusCode::OK, &body))
}

pub(crate) async fn show(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    path: web::Path<PackageGuid>,
) -> Result<HttpResponse, ApiError> {
    let package = state.services.get_package(&caller, &path).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::package(&state.links(&req), &package),
    ))
}

/// `204 No Content`: the row is gone now, the bits shortly (a job deletes them).
pub(crate) async fn delete(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    path: web::Path<PackageGuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .services
        .delete_package(&caller, &path, &request_id(&req))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Local bits stream back; S3 bits are a `302` to a presigned URL, fetched without the
/// caller's token.
pub(crate) async fn download(
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    path: web::Path<PackageGuid>,
) -> Result<HttpResponse, ApiError> {
    match state.services.download_package(&caller, &path).await? {
        Download::Stream { length, body } => Ok(HttpResponse::Ok()
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.zip\"",
                    path.as_str().replace(['"', '\\', '\r', '\n'], "")
                ),
            ))
            .no_chunking(length)
            .streaming(body)),
        Download::Redirect { url } => Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, url))
            .finish()),
    }
}

/// `POST /v3/packages/:guid/droplets`: checked in Cloud Controller's order, then refused:
/// staging belongs to another service.
pub(crate) async fn stage(
    state: web::Data<ApiState>,
    Writer(caller): Writer,
    path: web::Path<PackageGuid>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&state, payload).await?;
    Err(state
        .services
        .stage_package(&caller, &path, &body)
        .await
        .into())
}
