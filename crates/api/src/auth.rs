//! The caller of a request, from its bearer token. Checked before any endpoint logic.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use packages_domain::Principal;

use crate::{ApiError, ApiState};

/// An authenticated caller.
pub(crate) struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<ApiState>>().cloned();
        // A header that is not text cannot be a token; it must not read as "no header".
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("unreadable").to_owned());
        Box::pin(async move {
            let Some(state) = state else {
                return Err(ApiError::unknown());
            };
            // Async: a token naming a UAA key the service has not seen yet fetches UAA's
            // keys first.
            let principal = state
                .verifier
                .verify_async(authorization.as_deref())
                .await
                .map_err(ApiError::from)?;
            tracing::Span::current().record("user_guid", principal.user_guid.as_str());
            Ok(Caller(principal))
        })
    }
}

/// An authenticated caller whose token carries a write scope. Handlers that read a request
/// body take this before the body, so a caller who may not write never makes the service
/// wait for (or store) a byte of it.
pub(crate) struct Writer(pub Principal);

impl FromRequest for Writer {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Writer, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            let Caller(principal) = caller.await?;
            if principal.may_write() {
                Ok(Writer(principal))
            } else {
                Err(ApiError::not_authorized())
            }
        })
    }
}
