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
    components(schemas(Problem, NeedDoc, ProtectionDoc, GrantTypeDoc, AuthMethodDoc, AlgDoc)),
    modifiers(&Bearer)
)]
pub(crate) struct AdminApi;

/// The document: the base above with every resource's paths.
static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (_, doc) = crate::resources().split_for_parts();
    doc.to_json().unwrap_or_default()
});

/// `GET /openapi.json` (public: it describes, it discloses nothing).
pub(crate) async fn document() -> Response {
    let body = DOCUMENT.clone();
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
