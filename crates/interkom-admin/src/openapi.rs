//! The OpenAPI 3.1 document of the admin API, generated from the handlers'
//! annotations (utoipa) and served at `/admin/v1/openapi.json`.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::audit::view::{AuditEventDoc, CheckpointDoc, CheckpointList, EventsPage, VerifyStatus};
use crate::clients::view::{
    ClientCreated, ClientDoc, ClientPage, ClientSecret, KeyDoc, KeyList, KeysRotated, TenantList,
    TenantView,
};
use crate::directories::view::{
    ConnectionTest, DirectoryConfigDoc, DirectoryList, DirectoryView, PersonFound,
};
use crate::directories::TestRequest;
use crate::docs::{AlgDoc, AuthMethodDoc, FlipDoc, GrantTypeDoc, LoaDoc, NeedDoc, ProtectionDoc};
use crate::grants::view::{GrantChanged, GrantCreated, GrantPage, GrantView};
use crate::policy::view::{LineView, LinesChanged, LinesPage, WhatIf};
use crate::proposals::view::{
    ApprovalResult, Approved, ProposalPage, ProposalView, Proposed, Rejected,
};
use crate::resources::view::{ResourceDoc, ResourcePage};
use crate::upstreams::view::{ClaimMappingDoc, UpstreamConfigDoc, UpstreamList, UpstreamView};
use crate::users::view::{
    NewPassword, RoleView, SecondFactorReset, UserCreated, UserPage, UserView,
};
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
    components(schemas(
        Problem, NeedDoc, ProtectionDoc, GrantTypeDoc, AuthMethodDoc, AlgDoc, LoaDoc, FlipDoc,
        // What each resource answers.
        AuditEventDoc, EventsPage, VerifyStatus, CheckpointDoc, CheckpointList,
        TenantView, TenantList, ClientDoc, ClientPage, ClientCreated, ClientSecret,
        KeyDoc, KeyList, KeysRotated,
        GrantView, GrantPage, GrantCreated, GrantChanged,
        LineView, LinesPage, WhatIf, LinesChanged,
        Proposed, ProposalView, ProposalPage, Approved, ApprovalResult, Rejected,
        ResourceDoc, ResourcePage,
        UpstreamConfigDoc, ClaimMappingDoc, UpstreamView, UpstreamList,
        DirectoryConfigDoc, DirectoryView, DirectoryList, ConnectionTest, PersonFound, TestRequest,
        UserView, RoleView, UserPage, UserCreated, NewPassword, SecondFactorReset,
    )),
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

#[cfg(test)]
mod tests {
    //! The document itself, without a node.

    use serde_json::Value;

    /// Every JSON answer of success names a schema of the document's
    /// components (no untyped object), and every reference resolves.
    #[test]
    fn every_success_answer_names_a_schema() {
        let doc: Value = serde_json::from_str(&super::DOCUMENT).unwrap_or(Value::Null);
        let schemas = doc["components"]["schemas"].as_object().cloned();
        let schemas = schemas.unwrap_or_default();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        assert!(!paths.is_empty());
        let mut checked = 0;
        for (path, ops) in &paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let responses = op["responses"].as_object().cloned().unwrap_or_default();
                for (status, r) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
                    let Some(json) = r["content"].get("application/json") else {
                        continue;
                    };
                    let name = json["schema"]["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"));
                    assert!(
                        name.is_some_and(|n| schemas.contains_key(n)),
                        "{method} {path} {status}: {}",
                        json["schema"]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 40, "{checked}");
        // References anywhere in the document resolve.
        let text = super::DOCUMENT.as_str();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "unresolved {name}");
        }
    }
}
