//! The caller of a request, from its bearer token. Checked before any endpoint logic.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use packages_domain::Principal;

use crate::{ApiError, ApiState};

/// An authenticated caller.
pub(crate) struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<ApiState>>() else {
            return ready(Err(ApiError::unknown()));
        };
        // A header that is not text cannot be a token; it must not read as "no header".
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("unreadable"));
        let result = state
            .verifier
            .verify(authorization)
            .map(Caller)
            .map_err(ApiError::from);
        if let Ok(Caller(principal)) = &result {
            tracing::Span::current().record("user_guid", principal.user_guid.as_str());
        }
        ready(result)
    }
}

/// An authenticated caller whose token carries a write scope. Handlers that read a request
/// body take this before the body, so a caller who may not write never makes the service
/// wait for (or store) a byte of it.
pub(crate) struct Writer(pub Principal);

impl FromRequest for Writer {
    type Error = ApiError;
    type Future = Ready<Result<Writer, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let result =
            Caller::from_request(req, payload)
                .into_inner()
                .and_then(|Caller(principal)| {
                    if principal.may_write() {
                        Ok(Writer(principal))
                    } else {
                        Err(ApiError::not_authorized())
                    }
                });
        ready(result)
    }
}
