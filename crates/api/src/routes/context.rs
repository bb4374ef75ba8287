//! Organizations, spaces, roles and apps.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{query_pairs, read_body, request_id, resource};
use crate::auth::{Caller, Writer};
use crate::{ApiError, ApiState, json, presenters};
use packages_domain::{AppGuid, OrgGuid, SpaceGuid};

type Reply = Result<HttpResponse, ApiError>;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v3/organizations")
            .route(web::post().to(create_org))
            .route(web::get().to(list_orgs)),
    )
    .service(
        resource("/v3/organizations/{guid}")
            .route(web::get().to(get_org))
            .route(web::delete().to(delete_org)),
    )
    .service(
        resource("/v3/spaces")
            .route(web::post().to(create_space))
            .route(web::get().to(list_spaces)),
    )
    .service(
        resource("/v3/spaces/{guid}")
            .route(web::get().to(get_space))
            .route(web::delete().to(delete_space)),
    )
    .service(
        resource("/v3/roles")
            .route(web::post().to(create_role))
            .route(web::get().to(list_roles)),
    )
    .service(
        resource("/v3/roles/{guid}")
            .route(web::get().to(get_role))
            .route(web::delete().to(delete_role)),
    )
    .service(
        resource("/v3/apps")
            .route(web::post().to(create_app))
            .route(web::get().to(list_apps)),
    )
    .service(
        resource("/v3/apps/{guid}")
            .route(web::get().to(get_app))
            .route(web::delete().to(delete_app)),
    );
}

fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

async fn create_org(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(c): Writer,
    body: web::Payload,
) -> Reply {
    let org = state
        .services
        .create_org(&c, &read_body(&state, body).await?)
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &presenters::organization(&state.links(&req), &org),
    ))
}

async fn list_orgs(req: HttpRequest, state: web::Data<ApiState>, Caller(c): Caller) -> Reply {
    let page = state.services.list_orgs(&c, &query_pairs(&req)).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::page(
            &state.links(&req),
            "/v3/organizations",
            &page,
            presenters::organization,
        ),
    ))
}

async fn get_org(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(c): Caller,
    guid: web::Path<OrgGuid>,
) -> Reply {
    let org = state.services.get_org(&c, &guid).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::organization(&state.links(&req), &org),
    ))
}

async fn delete_org(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(c): Caller,
    guid: web::Path<OrgGuid>,
) -> Reply {
    state
        .services
        .delete_org(&c, &guid, &request_id(&req))
        .await?;
    Ok(no_content())
}

async fn create_space(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(c): Writer,
    body: web::Payload,
) -> Reply {
    let space = state
        .services
        .create_space(&c, &read_body(&state, body).await?)
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &presenters::space(&state.links(&req), &space),
    ))
}

async fn list_spaces(req: HttpRequest, state: web::Data<ApiState>, Caller(c): Caller) -> Reply {
    let page = state.services.list_spaces(&c, &query_pairs(&req)).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::page(&state.links(&req), "/v3/spaces", &page, presenters::space),
    ))
}

async fn get_space(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(c): Caller,
    guid: web::Path<SpaceGuid>,
) -> Reply {
    let space = state.services.get_space(&c, &guid).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::space(&state.links(&req), &space),
    ))
}

async fn delete_space(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(c): Caller,
    guid: web::Path<SpaceGuid>,
) -> Reply {
    state
        .services
        .delete_space(&c, &guid, &request_id(&req))
        .await?;
    Ok(no_content())
}

async fn create_role(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(c): Writer,
    body: web::Payload,
) -> Reply {
    let role = state
        .services
        .create_role(&c, &read_body(&state, body).await?)
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &presenters::role(&state.links(&req), &role),
    ))
}

async fn list_roles(req: HttpRequest, state: web::Data<ApiState>, Caller(c): Caller) -> Reply {
    let page = state.services.list_roles(&c, &query_pairs(&req)).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::page(&state.links(&req), "/v3/roles", &page, presenters::role),
    ))
}

async fn get_role(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(c): Caller,
    guid: web::Path<String>,
) -> Reply {
    let role = state.services.get_role(&c, &guid).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::role(&state.links(&req), &role),
    ))
}

async fn delete_role(
    state: web::Data<ApiState>,
    Caller(c): Caller,
    guid: web::Path<String>,
) -> Reply {
    state.services.delete_role(&c, &guid).await?;
    Ok(no_content())
}

async fn create_app(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Writer(c): Writer,
    body: web::Payload,
) -> Reply {
    let app = state
        .services
        .create_app(&c, &read_body(&state, body).await?)
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &presenters::app(&state.links(&req), &app),
    ))
}

async fn list_apps(req: HttpRequest, state: web::Data<ApiState>, Caller(c): Caller) -> Reply {
    let page = state.services.list_apps(&c, &query_pairs(&req)).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::page(&state.links(&req), "/v3/apps", &page, presenters::app),
    ))
}

async fn get_app(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(c): Caller,
    guid: web::Path<AppGuid>,
) -> Reply {
    let app = state.services.get_app(&c, &guid).await?;
    Ok(json(
        StatusCode::OK,
        &presenters::app(&state.links(&req), &app),
    ))
}

async fn delete_app(
    req: HttpRequest,
    state: web::Data<ApiState>,
    Caller(c): Caller,
    guid: web::Path<AppGuid>,
) -> Reply {
    state
        .services
        .delete_app(&c, &guid, &request_id(&req))
        .await?;
    Ok(no_content())
}
