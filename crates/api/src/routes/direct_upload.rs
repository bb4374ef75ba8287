//! Direct uploads (see `packages_service::direct_upload`):
//!
//! * `POST /v3/packages/:guid/direct_uploads`: a link for the zip, 201;
//! * `PUT /v3/packages/:guid/direct_uploads/:id/bits?expires=…&signature=…`: the bytes,
//!   when the link points at the service itself (local blobstore); no token, the
//!   signature is the credential and is checked before a byte is read;
//! * `POST /v3/packages/:guid/direct_uploads/:id/actions/complete`: starts processing,
//!   200 with the package in `PROCESSING_UPLOAD`, as an upload answers.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use packages_domain::PackageGuid;
use packages_service::ServiceError;
use packages_service::direct_upload::{DirectUpload, UploadTarget};
use packages_telemetry::upload_outcome;
use serde_json::{Value, json};

use super::{query_pairs, request_id};
use crate::auth::Writer;
use crate::body::GuardedBody;
use crate::presenters::Links;
use crate::{ApiError, ApiState, presenters};

fn link_json(links: &Links, upload: &DirectUpload) -> Value {
    let package = format!("/v3/packages/{}", upload.package_guid);
    let own = format!("{package}/direct_uploads/{}", upload.upload_id);
    let href = match &upload.target {
        UploadTarget::Presigned(url) => url.clone(),
        UploadTarget::Service { signature } => format!(
            "{}{own}/bits?expires={}&signature={signature}",
            links.base(),
            upload.expires_at.seconds()
        ),
    };
    let mut complete = links.href(&format!("{own}/actions/complete"));
    complete["method"] = json!("POST");
    json!({
        "guid": upload.upload_id,
        "expires_at": upload.expires_at,
        "max_size_in_bytes": upload.max_size_in_bytes,
        "links": {
            "upload": {"href": href, "method": "PUT"},
            "complete": complete,
            "package": links.href(&package),
        }
    })
}

pub(crate) async fn issue(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(caller): Writer,
    path: web::Path<PackageGuid>,
) -> Result<HttpResponse, ApiError> {
    let upload = state.services.issue_direct_upload(&caller, &path).await?;
    Ok(crate::json(
        StatusCode::CREATED,
        &link_json(&state.links(&req), &upload),
    ))
}

pub(crate) async fn receive(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(PackageGuid, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (guid, upload_id) = path.into_inner();
    let query = query_pairs(&req);
    let value = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // A link without its signature or expiry is no link.
    let (Some(expires), Some(signature)) = (
        value("expires").and_then(|e| e.parse::<i64>().ok()),
        value("signature"),
    ) else {
        return Err(ServiceError::NotAuthorized.into());
    };
    let limit = state.services.policy().max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (body, idle) = GuardedBody::new(payload, state.body_idle_timeout);
    let metrics = state.metrics.clone();
    let counted = body.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            metrics.upload_bytes(bytes.len() as u64);
        }
        chunk
    });
    let result = if declared.is_some_and(|len| len > limit) {
        Err(ServiceError::TooLarge { limit })
    } else {
        state
            .services
            .receive_direct_upload(&guid, &upload_id, expires, signature, counted)
            .await
    };
    if result.is_err() && idle.fired() {
        return Err(ApiError::body_idle(state.body_idle_timeout));
    }
    let size = result?;
    Ok(crate::json(
        StatusCode::OK,
        &json!({"guid": upload_id, "size_in_bytes": size}),
    ))
}

pub(crate) async fn complete(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(caller): Writer,
    path: web::Path<(PackageGuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (guid, upload_id) = path.into_inner();
    let result = state
        .services
        .complete_direct_upload(&caller, &guid, &upload_id, &request_id(&req))
        .await;
    state.metrics.upload(match &result {
        Ok(_) => upload_outcome::ACCEPTED,
        Err(ServiceError::TooLarge { .. }) => upload_outcome::TOO_LARGE,
        Err(e) if e.is_retryable() => upload_outcome::FAILED,
        Err(_) => upload_outcome::REJECTED,
    });
    let package = result?;
    Ok(crate::json(
        StatusCode::OK,
        &presenters::package(&state.links(&req), &package),
    ))
}
