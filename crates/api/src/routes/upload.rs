//! `POST /v3/packages/:guid/upload`, in both forms:
//!
//! * `multipart/form-data` with a `bits` file part (what clients send when the service
//!   receives the bytes itself): streamed into the staging area, never held in memory;
//! * the E2015 proxy form, `bits_name` + `bits_path` (urlencoded), for a file a front
//!   proxy already stored inside `upload.bits_path_root`.
//!
//! Checks run in Cloud Controller's order (scope, form, lookup, role, type, state) before
//! any byte is stored; a multipart body's parts can only be judged once read, so its
//! unknown parts are reported after the bits were staged (and the staged bits removed).

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use packages_domain::upload::{self, MultipartSummary};
use packages_service::upload::UploadTicket;
use packages_service::{ServiceError, Services};
use packages_telemetry::upload_outcome;

use super::{read_body, request_id};
use crate::auth::Caller;
use crate::{ApiError, ApiState, json, presenters};

/// Largest non-file part read (the `resources` list of matched files).
const MAX_FIELD: usize = 1 << 20;

pub(crate) async fn upload(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let result = receive(&req, &state, &caller, &path, payload).await;
    let outcome = match &result {
        Ok(_) => upload_outcome::ACCEPTED,
        Err(ServiceError::TooLarge { .. }) => upload_outcome::TOO_LARGE,
        Err(ServiceError::Unavailable { .. } | ServiceError::Internal(_)) => upload_outcome::FAILED,
        Err(_) => upload_outcome::REJECTED,
    };
    state.metrics.upload(outcome);
    let package = result?;
    Ok(json(
        StatusCode::OK,
        &presenters::package(&state.links(&req), &package),
    ))
}

async fn receive(
    req: &HttpRequest,
    state: &ApiState,
    caller: &packages_domain::Principal,
    guid: &str,
    payload: web::Payload,
) -> Result<packages_domain::Package, ServiceError> {
    let services = &state.services;
    services.authorize_upload(caller)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        // A declared size over the limit is refused before anything is read.
        let limit = services.policy.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit.saturating_add(64 * 1024)) {
            return Err(ServiceError::TooLarge { limit });
        }
        let ticket = services.prepare_upload(caller, guid).await?;
        let multipart = Multipart::new(req.headers(), payload);
        let staged = receive_multipart(state, &ticket, multipart).await?;
        return services
            .accept_upload(&ticket, staged, &request_id(req))
            .await;
    }
    // The proxy form (or a body that is neither form: it names no bits_path).
    let body = read_body(payload)
        .await
        .map_err(|e| ServiceError::Unparsable(e.detail))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let bits_path = upload::bits_path_form(&fields)?;
    let resolved = services.resolve_bits_path(&bits_path).await?;
    let ticket = services.prepare_upload(caller, guid).await?;
    let staged = services.ingest_file(&ticket, &resolved).await?;
    let package = services
        .accept_upload(&ticket, staged, &request_id(req))
        .await?;
    // The proxy's file is ours once accepted (Cloud Controller deletes it too).
    if let Err(e) = tokio::fs::remove_file(&resolved).await {
        tracing::warn!(error = %e, path = %resolved.display(), "removing the proxy's upload file failed");
    }
    Ok(package)
}

/// Streams the `bits` part into the staging area and reads the other parts; the form is
/// validated once every part was seen.
async fn receive_multipart(
    state: &ApiState,
    ticket: &UploadTicket,
    mut multipart: Multipart,
) -> Result<packages_jobs::ProcessUpload, ServiceError> {
    let services: &Services = &state.services;
    let mut summary = MultipartSummary::default();
    let mut staged = None;
    let outcome: Result<(), ServiceError> = async {
        while let Some(field) = multipart.next().await {
            let mut field = field.map_err(|e| ServiceError::UploadInterrupted(e.to_string()))?;
            let name = field.name().unwrap_or_default().to_owned();
            match name.as_str() {
                "bits" if staged.is_none() => {
                    summary.has_bits = true;
                    let counted = (&mut field).map(|chunk| {
                        if let Ok(bytes) = &chunk {
                            state.metrics.upload_bytes(bytes.len() as u64);
                        }
                        chunk
                    });
                    staged = Some(services.ingest(ticket, counted).await?);
                }
                "resources" => summary.resources = Some(read_field(&mut field).await?),
                other => {
                    if !summary.unknown_fields.iter().any(|f| f == other) {
                        summary.unknown_fields.push(other.to_owned());
                    }
                    drain(&mut field).await?;
                }
            }
        }
        upload::multipart(&summary)?;
        Ok(())
    }
    .await;
    match (outcome, staged) {
        (Ok(()), Some(staged)) => Ok(staged),
        (Ok(()), None) => Err(ServiceError::Invalid(packages_domain::Invalid::one(
            upload::BITS_OR_RESOURCES_REQUIRED,
        ))),
        (Err(e), staged) => {
            if let Some(staged) = staged {
                services.discard_staged(&staged.staging_key).await;
            }
            Err(e)
        }
    }
}

async fn read_field(field: &mut actix_multipart::Field) -> Result<String, ServiceError> {
    let mut value = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| ServiceError::UploadInterrupted(e.to_string()))?;
        if value.len() + chunk.len() > MAX_FIELD {
            return Err(ServiceError::Invalid(packages_domain::Invalid::one(
                upload::RESOURCES_NOT_JSON,
            )));
        }
        value.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&value).into_owned())
}

async fn drain(field: &mut actix_multipart::Field) -> Result<(), ServiceError> {
    while let Some(chunk) = field.next().await {
        chunk.map_err(|e| ServiceError::UploadInterrupted(e.to_string()))?;
    }
    Ok(())
}
