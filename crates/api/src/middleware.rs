//! Wraps every request: derives its `X-VCAP-Request-ID`, opens the log span that carries
//! it, sets the headers Cloud Controller always sends, and records metrics under the
//! route pattern (never the raw path).

use std::rc::Rc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use packages_domain::request_id;
use packages_telemetry::Metrics;
use tracing::Instrument;

use crate::JSON_CONTENT_TYPE;

/// The request's id, for handlers (it travels into jobs).
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

/// The pattern of the resource that took a request, carried as that resource's data (every
/// resource has one): the labels come from it after the call instead of matching the path
/// against every route a second time (`match_pattern` runs the routes' regular
/// expressions again). A request no resource took is `unmatched`.
#[derive(Debug, Clone)]
pub(crate) struct RoutePattern(Rc<str>);

impl RoutePattern {
    pub(crate) fn new(pattern: &str) -> Self {
        RoutePattern(Rc::from(pattern))
    }
}

static VCAP_REQUEST_ID: HeaderName = HeaderName::from_static("x-vcap-request-id");
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Use with `actix_web::middleware::from_fn`.
pub async fn request_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let incoming = req
        .headers()
        .get(&VCAP_REQUEST_ID)
        .or_else(|| req.headers().get(&REQUEST_ID))
        .and_then(|v| v.to_str().ok());
    let id = request_id::derive(incoming, &uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    // What a clean shutdown waits for, besides the metric.
    let _in_flight = metrics.as_ref().map(|m| m.request_started());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = tracing::field::Empty,
        user_guid = tracing::field::Empty,
    );
    let mut res = next.call(req).instrument(span.clone()).await?;
    let route = match res.request().app_data::<RoutePattern>() {
        Some(RoutePattern(pattern)) => Rc::clone(pattern),
        None => Rc::from("unmatched"),
    };
    span.record("route", &*route);
    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(VCAP_REQUEST_ID.clone(), value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
    }
    let status = res.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(metrics) = metrics {
        metrics.http_request(&method, &route, status, seconds);
    }
    span.in_scope(|| tracing::info!(status, duration_ms = seconds * 1000.0, "request finished"));
    Ok(res)
}
