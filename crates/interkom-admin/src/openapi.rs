//! The OpenAPI 3.1 document of the admin API, generated from the handlers'
//! annotations (utoipa) and served at `/admin/v1/openapi.json`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::docs::{AlgDoc, AuthMethodDoc, GrantTypeDoc, NeedDoc, ProtectionDoc};
use crate::Problem;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token issued by interkom's own gateway"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "interkom admin API", description = "Delegated administration across the Kreis, Samtgemeinden and Gemeinden"),
    servers((url = "/admin/v1")),
    paths(
        crate::audit::events,
        crate::audit::export,
        crate::audit::verify,
        crate::audit::checkpoints,
        crate::clients::tenants,
        crate::clients::list,
        crate::clients::create,
        crate::clients::get,
        crate::clients::patch,
        crate::clients::rotate_secret,
        crate::clients::keys,
        crate::clients::rotate_keys,
        crate::upstreams::list,
        crate::upstreams::get,
        crate::upstreams::put,
        crate::upstreams::delete,
        crate::users::reset_second_factor,
        crate::grants::list,
        crate::grants::create,
        crate::grants::approve,
        crate::grants::revoke,
        crate::policy::lines,
        crate::policy::what_if,
        crate::policy::change,
        crate::policy::proposals,
        crate::policy::proposal,
        crate::policy::approve,
        crate::policy::reject,
        crate::policy::list_resources,
        crate::policy::get_resource,
        crate::policy::put_resource_handler,
        crate::users::list,
        crate::users::create,
        crate::users::get,
        crate::users::patch,
        crate::users::reset_password,
        crate::users::add_role,
        crate::users::remove_role
    ),
    components(schemas(Problem, NeedDoc, ProtectionDoc, GrantTypeDoc, AuthMethodDoc, AlgDoc)),
    modifiers(&Bearer)
)]
pub(crate) struct AdminApi;

/// `GET /openapi.json` (public: it describes, it discloses nothing).
pub(crate) async fn document() -> Response {
    let body = AdminApi::openapi().to_json().unwrap_or_default();
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
