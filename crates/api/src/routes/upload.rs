//! `POST /v3/packages/:guid/upload`, in both forms:
//!
//! * `multipart/form-data` with a `bits` file part (what clients send when the service
//!   receives the bytes itself): streamed into the staging area, never held in memory;
//! * the E2015 proxy form, `bits_name` + `bits_path` (urlencoded), for a file a front
//!   proxy already stored inside `upload.bits_path_root`. Only a request that carries the
//!   proxy's secret (`X-Upload-Proxy-Secret`) may use it: a client must never name a file
//!   on the server's disk.
//!
//! Checks run in Cloud Controller's order (scope, form, lookup, role, type, state) before
//! any byte is stored; a multipart body's parts can only be judged once read, so its
//! unknown parts are reported after the bits were staged (and the staged bits removed).
//! Every body is read under the idle timeout (408 when it stalls).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use packages_domain::PackageGuid;
use packages_domain::upload;
use packages_service::ServiceError;
use packages_telemetry::upload_outcome;

use super::request_id;
use crate::auth::Writer;
use crate::body::{GuardedBody, IdleFlag, read_small};
use crate::{ApiError, ApiState, json, presenters};
use packages_uploadform::{self as form, BitsSink, FormError};

/// Header a front proxy proves itself with; compared with `upload.proxy_secret`.
pub const PROXY_SECRET_HEADER: &str = "x-upload-proxy-secret";

pub(crate) async fn upload(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(caller): Writer,
    path: web::Path<PackageGuid>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (body, idle) = GuardedBody::new(payload, state.body_idle_timeout);
    let result = receive(&req, &state, &caller, &path, body, &idle).await;
    let outcome = match &result {
        Ok(_) => upload_outcome::ACCEPTED,
        Err(ServiceError::TooLarge { .. }) => upload_outcome::TOO_LARGE,
        Err(
            ServiceError::DatabaseUnavailable(_)
            | ServiceError::BlobstoreUnavailable(_)
            | ServiceError::QueueUnavailable(_)
            | ServiceError::Task(_)
            | ServiceError::Database(_)
            | ServiceError::Blobstore(_)
            | ServiceError::MissingBits { .. },
        ) => upload_outcome::FAILED,
        Err(_) => upload_outcome::REJECTED,
    };
    state.metrics.upload(outcome);
    if result.is_err() && idle.fired() {
        return Err(ApiError::body_idle(state.body_idle_timeout));
    }
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
    guid: &PackageGuid,
    body: GuardedBody,
    idle: &IdleFlag,
) -> Result<packages_service::packages::PackageView, ServiceError> {
    let services = &state.services;
    services.authorize_upload(caller)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        // A declared size over the limit is refused before anything is read.
        let limit = services.policy().max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit.saturating_add(form::MAX_FIELDS_BYTES as u64)) {
            return Err(ServiceError::TooLarge { limit });
        }
        let ticket = services.prepare_upload(caller, guid).await?;
        let mut sink = StagingSink {
            state,
            ticket: &ticket,
        };
        let result = match form::read(req.headers(), body, &mut sink).await {
            Ok(upload) => accept(services, &ticket, upload, &request_id(req)).await,
            Err(FormError::Sink(e)) => Err(e),
            Err(FormError::Invalid(invalid)) => Err(ServiceError::Invalid(invalid)),
            Err(FormError::Unreadable(text)) => Err(ServiceError::UploadInterrupted(text)),
            Err(FormError::ResourcesTooLarge { limit }) => Err(ServiceError::TooLarge {
                limit: limit as u64,
            }),
        };
        if result.is_err() {
            services.release_upload(&ticket).await;
        }
        return result;
    }
    // The proxy form (or a body that is neither form: it names no bits_path).
    let body = read_small_guarded(body, idle).await?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let bits_path = upload::bits_path_form(&fields)?;
    let from_proxy =
        state.proxy_secret_matches(req.headers().get(PROXY_SECRET_HEADER).map(|v| v.as_bytes()));
    let file = services.open_bits_path(&bits_path, from_proxy).await?;
    let ticket = services.prepare_upload(caller, guid).await?;
    let accepted = match services.ingest_file(&ticket, &file).await {
        Ok(staged) => {
            services
                .accept_upload(&ticket, Some(staged), None, &request_id(req))
                .await
        }
        Err(e) => Err(e),
    };
    let package = match accepted {
        Ok(package) => package,
        Err(e) => {
            services.release_upload(&ticket).await;
            return Err(e);
        }
    };
    // The proxy's file is ours once accepted (Cloud Controller deletes it too); only the
    // path that was named goes, never what a link would point to.
    file.remove().await;
    Ok(package)
}

/// Accepts a multipart upload: its fingerprints, if any, are staged next to its bits.
async fn accept(
    services: &packages_service::Services,
    ticket: &packages_service::upload::UploadTicket,
    upload: form::Upload<packages_jobs::ProcessUpload>,
    request_id: &str,
) -> Result<packages_service::packages::PackageView, ServiceError> {
    let resources = if upload.resources.is_empty() {
        None
    } else {
        match services.stage_resources(ticket, &upload.resources).await {
            Ok(key) => Some(key),
            Err(e) => {
                if let Some(bits) = &upload.bits {
                    services.discard_staged(&bits.staging_key).await;
                }
                return Err(e);
            }
        }
    };
    services
        .accept_upload(ticket, upload.bits, resources, request_id)
        .await
}

/// The proxy form is small: read it whole, mapping failures to the service's terms.
async fn read_small_guarded(
    body: GuardedBody,
    idle: &IdleFlag,
) -> Result<bytes::Bytes, ServiceError> {
    match read_small(body).await {
        Ok(bytes) => Ok(bytes),
        // The caller answers 408 when the flag is set.
        Err(_) if idle.fired() => Err(ServiceError::UploadInterrupted("idle".into())),
        Err(e) => Err(ServiceError::Unparsable(e.detail)),
    }
}

/// Where the `bits` part goes: the staging area of this package's upload.
struct StagingSink<'a> {
    state: &'a ApiState,
    ticket: &'a packages_service::upload::UploadTicket,
}

impl BitsSink for StagingSink<'_> {
    type Staged = packages_jobs::ProcessUpload;
    type Error = ServiceError;

    async fn ingest(
        &mut self,
        field: &mut actix_multipart::Field,
        at_least: u64,
    ) -> Result<Self::Staged, ServiceError> {
        use futures_util::StreamExt;
        let metrics = &self.state.metrics;
        let counted = field.map(|chunk| {
            if let Ok(bytes) = &chunk {
                metrics.upload_bytes(bytes.len() as u64);
            }
            chunk
        });
        self.state
            .services
            .ingest(self.ticket, counted, at_least)
            .await
    }

    async fn discard(&mut self, staged: Self::Staged) {
        self.state
            .services
            .discard_staged(&staged.staging_key)
            .await;
    }
}
