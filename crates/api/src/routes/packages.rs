//! Package endpoints other than upload, in both dialects.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use packages_blobstore::Download;
use packages_domain::{AppGuid, PackageGuid, Principal};

use super::{query_pairs, read_body, request_id};
use crate::auth::{Caller, Writer};
use crate::{ApiError, ApiState, json, json_rendered, presenters};

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

/// `POST /v3/packages` (GA): a copy when the query has `source_guid`, else a create.
pub(crate) async fn create_or_copy_ga(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(caller): Writer,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&state, payload).await?;
    let source = query_pairs(&req)
        .into_iter()
        .find(|(k, _)| k == "source_guid")
        .map(|(_, v)| PackageGuid::new(v));
    let package = match source {
        Some(source) => {
            state
                .services
                .copy_package_ga(&caller, &source, &body, &request_id(&req))
                .await?
        }
        None => state.services.create_package_ga(&caller, &body).await?,
    };
    Ok(json(
        StatusCode::CREATED,
        &presenters::package(&state.links(&req), &package),
    ))
}

/// `PATCH /v3/packages/:guid` (GA): metadata and registry credentials.
pub(crate) async fn update(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(caller): Writer,
    path: web::Path<PackageGuid>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&state, payload).await?;
    let package = state.services.update_package(&caller, &path, &body).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::package(&state.links(&req), &package),
    ))
}

pub(crate) async fn list(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
) -> Result<HttpResponse, ApiError> {
    list_page(&req, &state, &caller, None).await
}

pub(crate) async fn list_for_app(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    path: web::Path<AppGuid>,
) -> Result<HttpResponse, ApiError> {
    list_page(&req, &state, &caller, Some(&path)).await
}

/// Either list; one nested under an app (by its route or `?app_guid=`) links to the
/// app's packages, as Cloud Controller's do.
async fn list_page(
    req: &HttpRequest,
    state: &ApiState,
    caller: &Principal,
    app_guid: Option<&AppGuid>,
) -> Result<HttpResponse, ApiError> {
    let list = state
        .services
        .list_packages(caller, app_guid, &query_pairs(req))
        .await?;
    let base = match &list.app_guid {
        Some(app) => format!("/v3/apps/{app}/packages"),
        None => "/v3/packages".to_owned(),
    };
    crate::package_page::response(state.links(req), &base, list, state.services.clone()).await
}

/// `GET /v3/packages/:guid/droplets` (GA): always an empty page here.
pub(crate) async fn droplets(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    path: web::Path<PackageGuid>,
) -> Result<HttpResponse, ApiError> {
    let page = state
        .services
        .package_droplets(&caller, &path, &query_pairs(&req))
        .await?;
    let base = format!("/v3/packages/{}/droplets", path.as_str());
    let links = state.links(&req);
    let body = presenters::page(&links, &base, &page, |_, droplet| match *droplet {});
    Ok(json(StatusCode::OK, &body))
}

/// `POST /v3/resource_matches` (GA).
pub(crate) async fn match_resources(
    state: web::Data<ApiState>,
    Writer(caller): Writer,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&state, payload).await?;
    let matched = state.services.match_resources(&caller, &body).await?;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "resources": matched }),
    ))
}

pub(crate) async fn show(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    path: web::Path<PackageGuid>,
) -> Result<HttpResponse, ApiError> {
    let package = state.services.get_package(&caller, &path).await?;
    // Written as a list page writes its packages: serde's pretty printer took a twentieth
    // of a GET's CPU, escaping every key and byte.
    let mut body = Vec::with_capacity(1024);
    presenters::package(&state.links(&req), &package).write_compact(&mut body);
    Ok(json_rendered(StatusCode::OK, body))
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
