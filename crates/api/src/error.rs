//! The one mapping from what went wrong to a Cloud Controller error response.
//!
//! Bodies carry both error formats at once, so clients of either era parse them: E2015's
//! `code`/`description`/`error_code` and GA's `errors: [{detail, title, code}]`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use packages_auth::AuthFailure;
use packages_blobstore::Chain;
use packages_domain::MetadataLimit;
use packages_service::ServiceError;
use serde_json::json;

use crate::JSON_CONTENT_TYPE;

/// A Cloud Controller error: its name, numeric code, HTTP status and messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} ({code}): {description}")]
pub struct ApiError {
    pub status: u16,
    pub code: u32,
    pub name: &'static str,
    /// The E2015 `description`.
    pub description: String,
    /// The GA `errors[].detail` (differs only where E2015 prefixed the message).
    pub detail: String,
}

impl ApiError {
    fn new(status: u16, code: u32, name: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            status,
            code,
            name,
            description: message.clone(),
            detail: message,
        }
    }

    pub fn not_found_route() -> Self {
        ApiError::new(404, 10000, "NotFound", "Unknown request")
    }

    pub fn not_authenticated() -> Self {
        ApiError::new(401, 10002, "NotAuthenticated", "Authentication error")
    }

    pub fn invalid_auth_token() -> Self {
        ApiError::new(401, 1000, "InvalidAuthToken", "Invalid Auth Token")
    }

    pub fn not_authorized() -> Self {
        ApiError::new(
            403,
            10003,
            "NotAuthorized",
            "You are not authorized to perform the requested action",
        )
    }

    pub fn parse_error(text: &str) -> Self {
        ApiError::new(
            400,
            1001,
            "MessageParseError",
            format!("Request invalid due to parse error: {text}"),
        )
    }

    /// A request body that stopped arriving: the connection is closed with this answer.
    pub fn body_idle(idle: std::time::Duration) -> Self {
        let secs = idle.as_secs();
        let unit = if secs == 1 { "second" } else { "seconds" };
        ApiError {
            status: 408,
            ..ApiError::parse_error(&format!(
                "the request body made no progress for {secs} {unit}"
            ))
        }
    }

    /// A JSON or form body over the small-body limit; the rest is not read.
    pub fn body_too_large(limit: usize) -> Self {
        ApiError {
            status: 413,
            ..ApiError::parse_error(&format!("the request body is larger than {limit} bytes"))
        }
    }

    pub fn bad_query(messages: &str) -> Self {
        ApiError::new(
            400,
            10005,
            "BadQueryParameter",
            format!("The query parameter is invalid: {messages}"),
        )
    }

    /// E2015 prefixed the message; GA does not.
    pub fn unprocessable(messages: &str) -> Self {
        ApiError {
            status: 422,
            code: 10008,
            name: "UnprocessableEntity",
            description: format!("The request is semantically invalid: {messages}"),
            detail: messages.to_owned(),
        }
    }

    pub fn too_large(limit: u64) -> Self {
        ApiError::new(
            413,
            150001,
            "AppPackageInvalid",
            format!("The app package is invalid: Package may not be larger than {limit} bytes"),
        )
    }

    pub fn service_unavailable(what: &str) -> Self {
        ApiError::new(503, 10015, "ServiceUnavailable", what)
    }

    /// Any failure that is not an API error: no detail leaks to the client.
    pub fn unknown() -> Self {
        ApiError::new(500, 10001, "UnknownError", "An unknown error occurred.")
    }

    fn error_code(&self) -> String {
        // Cloud Controller's unknown-error body is the one without the `CF-` prefix.
        if self.name == "UnknownError" {
            self.name.to_owned()
        } else {
            format!("CF-{}", self.name)
        }
    }

    pub fn body(&self) -> Vec<u8> {
        let error_code = self.error_code();
        let body = json!({
            "code": self.code,
            "description": self.description,
            "error_code": error_code,
            "errors": [{"detail": self.detail, "title": error_code, "code": self.code}],
        });
        let mut bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match &e {
            ServiceError::NotAuthorized => ApiError::not_authorized(),
            ServiceError::NotFound(resource) => ApiError::new(
                404,
                10010,
                "ResourceNotFound",
                format!("{} not found", resource.name()),
            ),
            ServiceError::Invalid(invalid) => ApiError::unprocessable(&invalid.to_string()),
            ServiceError::NotUnique(text) => {
                ApiError::new(422, 10016, "UniquenessError", text.clone())
            }
            ServiceError::Unparsable(text) => ApiError::parse_error(text),
            ServiceError::BadQuery(messages) => ApiError::bad_query(&messages.join(", ")),
            ServiceError::BitsAlreadyUploaded => ApiError::new(
                400,
                150004,
                "PackageBitsAlreadyUploaded",
                "Bits may be uploaded only once. Create a new package to upload different bits.",
            ),
            ServiceError::TooLarge { limit } => ApiError::too_large(*limit),
            ServiceError::UploadInterrupted(text) => {
                ApiError::parse_error(&format!("the upload could not be read: {text}"))
            }
            ServiceError::StagingNotOffered => ApiError::new(
                400,
                10009,
                "UnableToPerform",
                "Staging could not be completed: this service stores packages and does not stage them; \
                 stage the package with a Cloud Controller",
            ),
            ServiceError::DatabaseUnavailable(_)
            | ServiceError::BlobstoreUnavailable(_)
            | ServiceError::QueueUnavailable(_)
            | ServiceError::Task(_) => {
                tracing::warn!(error = %Chain(&e), "a backend is unavailable");
                ApiError::service_unavailable(match &e {
                    ServiceError::DatabaseUnavailable(_) => "Database connection failure",
                    ServiceError::BlobstoreUnavailable(_) => "Blobstore unavailable",
                    _ => "Job queue unavailable",
                })
            }
            ServiceError::MetadataLimit(limit) => match limit {
                MetadataLimit::Labels { .. } => {
                    ApiError::new(422, 390020, "LabelLimitExceeded", limit.to_string())
                }
                MetadataLimit::Annotations { .. } => {
                    ApiError::new(422, 390023, "AnnotationLimitExceeded", limit.to_string())
                }
            },
            ServiceError::Database(_)
            | ServiceError::Blobstore(_)
            | ServiceError::Credentials(_)
            | ServiceError::MissingBits { .. } => {
                tracing::error!(error = %Chain(&e), "request failed");
                ApiError::unknown()
            }
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::Missing => ApiError::not_authenticated(),
            AuthFailure::Invalid(reason) => {
                tracing::info!(reason = %reason, "token refused");
                ApiError::invalid_auth_token()
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        ));
        // The rest of such a body is never read: the connection cannot carry another
        // request, and closing it frees its descriptor at once.
        if matches!(self.status, 408 | 413) {
            response.force_close();
        }
        response.body(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(e: &ApiError) -> serde_json::Value {
        serde_json::from_slice(&e.body()).unwrap()
    }

    #[test]
    fn bodies_carry_both_formats_with_a_trailing_newline() {
        let e = ApiError::from(ServiceError::NotFound(packages_service::Resource::Package));
        let body = e.body();
        assert_eq!(body.last(), Some(&b'\n'));
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("{\n  \"code\": 10010,\n  \"description\": \"Package not found\",\n  \"error_code\": \"CF-ResourceNotFound\""));
        let v = parsed(&e);
        assert_eq!(
            v["errors"][0],
            json!({"detail": "Package not found", "title": "CF-ResourceNotFound", "code": 10010})
        );
        assert_eq!(e.status, 404);
    }

    #[test]
    fn unprocessable_is_prefixed_only_in_the_e2015_description() {
        let e = ApiError::unprocessable("Type must be one of 'bits, docker'");
        let v = parsed(&e);
        assert_eq!(
            v["description"],
            "The request is semantically invalid: Type must be one of 'bits, docker'"
        );
        assert_eq!(
            v["errors"][0]["detail"],
            "Type must be one of 'bits, docker'"
        );
        assert_eq!(v["error_code"], "CF-UnprocessableEntity");
    }

    /// A database error whose text names a password, as a driver's might.
    fn packages_storage_free_error() -> packages_service::StorageError {
        packages_service::StorageError::BadUrl("db password wrong".into())
    }

    #[test]
    fn unknown_errors_hide_their_cause() {
        let v = parsed(&ApiError::from(ServiceError::Database(
            packages_storage_free_error(),
        )));
        assert_eq!(v["error_code"], "UnknownError");
        assert_eq!(v["description"], "An unknown error occurred.");
        assert_eq!(v["code"], 10001);
        assert!(!v.to_string().contains("password"));
    }

    #[test]
    fn auth_failures() {
        assert_eq!(ApiError::from(AuthFailure::Missing).code, 10002);
        assert_eq!(ApiError::from(AuthFailure::Invalid("x".into())).code, 1000);
        assert_eq!(ApiError::from(AuthFailure::Invalid("x".into())).status, 401);
    }
}
