//! Organizations, spaces, roles and apps: four resources served the same way, each by its
//! [`ContextResource`] use cases and a presenter. Adding one is a line in `configure`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use packages_domain::context::{App, Organization, Role, Space};
use packages_service::context::ContextResource;
use serde_json::Value;

use super::{query_pairs, read_body, request_id, resource};
use crate::auth::{Caller, Writer};
use crate::presenters::{self, Links};
use crate::{ApiError, ApiState, json};

type Reply = Result<HttpResponse, ApiError>;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    serve::<Organization>(cfg, "/v3/organizations", presenters::organization);
    serve::<Space>(cfg, "/v3/spaces", presenters::space);
    serve::<Role>(cfg, "/v3/roles", presenters::role);
    serve::<App>(cfg, "/v3/apps", presenters::app);
}

/// How one resource is shown: where its collection lives and how an item looks.
struct Served<R> {
    path: &'static str,
    present: fn(&Links, &R) -> Value,
}

/// `POST` and `GET` on the collection, `GET` and `DELETE` on an item.
fn serve<R: ContextResource>(
    cfg: &mut web::ServiceConfig,
    path: &'static str,
    present: fn(&Links, &R) -> Value,
) {
    let served = web::Data::new(Served { path, present });
    cfg.service(
        resource(path)
            .app_data(served.clone())
            .route(web::post().to(create::<R>))
            .route(web::get().to(list::<R>)),
    )
    .service(
        resource(&format!("{path}/{{guid}}"))
            .app_data(served)
            .route(web::get().to(get::<R>))
            .route(web::delete().to(delete::<R>)),
    );
}

async fn create<R: ContextResource>(
    req: HttpRequest,
    state: web::Data<ApiState>,
    served: web::Data<Served<R>>,
    Writer(caller): Writer,
    body: web::Payload,
) -> Reply {
    let body = read_body(&state, body).await?;
    let item = R::create(&state.services, &caller, &body).await?;
    Ok(json(
        StatusCode::CREATED,
        &(served.present)(&state.links(&req), &item),
    ))
}

async fn list<R: ContextResource>(
    req: HttpRequest,
    state: web::Data<ApiState>,
    served: web::Data<Served<R>>,
    Caller(caller): Caller,
) -> Reply {
    let page = R::list(&state.services, &caller, &query_pairs(&req)).await?;
    let links = state.links(&req);
    Ok(json(
        StatusCode::OK,
        &presenters::page(&links, served.path, &page, served.present),
    ))
}

async fn get<R: ContextResource>(
    req: HttpRequest,
    state: web::Data<ApiState>,
    served: web::Data<Served<R>>,
    Caller(caller): Caller,
    guid: web::Path<R::Guid>,
) -> Reply {
    let item = R::get(&state.services, &caller, &guid).await?;
    Ok(json(
        StatusCode::OK,
        &(served.present)(&state.links(&req), &item),
    ))
}

/// `204 No Content`; the packages of what is deleted go too, their bits through jobs.
async fn delete<R: ContextResource>(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(caller): Caller,
    guid: web::Path<R::Guid>,
) -> Reply {
    R::delete(&state.services, &caller, &guid, &request_id(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
