//! What a change to a Leistung would do, before it is made: the level it
//! would require, the identity sources its page would then offer, the data
//! that would leave interkom, and whether a second administrator must
//! approve it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use interkom_policy::{LeistungSpec, Loa};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::{self, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::scope::admin_scope;
use crate::{AdminError, AdminState};

/// An identity source the Leistung's page offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct Offered {
    pub(crate) id: String,
    pub(crate) name: String,
    /// The highest level it vouches for.
    #[schema(value_type = String)]
    pub(crate) max_loa: Loa,
}

/// The Leistung as it is, or would be.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Side {
    #[schema(value_type = String)]
    pub(crate) loa: Loa,
    /// The sources its page offers for that level, by id.
    pub(crate) sources: Vec<Offered>,
    /// The data it receives.
    pub(crate) claims: Vec<String>,
    /// `citizen`, `business`.
    pub(crate) populations: Vec<String>,
}

/// `POST /leistungen/{id}/what-if`'s answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LeistungWhatIf {
    /// The change lowers what the Leistung requires or widens what it
    /// receives or accepts: it takes effect only once a second
    /// administrator approves.
    pub(crate) needs_approval: bool,
    /// As it is (`null` for a new Leistung).
    pub(crate) before: Option<Side>,
    pub(crate) after: Side,
    pub(crate) sources_gained: Vec<Offered>,
    pub(crate) sources_lost: Vec<Offered>,
    pub(crate) claims_gained: Vec<String>,
    pub(crate) claims_lost: Vec<String>,
}

async fn side(state: &AdminState, l: &LeistungSpec) -> Result<Side, AdminError> {
    let sources = state
        .0
        .directory
        .saml_sources()
        .await
        .map_err(AdminError::from)?
        .iter()
        .filter(|s| {
            l.populations.contains(&s.cfg.population)
                && l.accepts(&s.cfg.id, &s.cfg.tenant, &state.0.tenants)
                && s.cfg.max_loa().is_some_and(|m| m >= l.loa)
        })
        .filter_map(|s| {
            Some(Offered {
                id: s.cfg.id.clone(),
                name: s.cfg.name.clone(),
                max_loa: s.cfg.max_loa()?,
            })
        })
        .collect();
    Ok(Side {
        loa: l.loa,
        sources,
        claims: l.claims.iter().cloned().collect(),
        populations: l
            .populations
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
    })
}

/// `POST /leistungen/{id}/what-if`: what `PUT` with this body would do;
/// nothing is stored.
#[utoipa::path(
    post,
    path = "/leistungen/{id}/what-if",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    request_body(content = super::view::LeistungDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "what the change would do", body = LeistungWhatIf),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn what_if(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    JsonBody(body): JsonBody<LeistungSpec>,
) -> Result<Response, AdminError> {
    if body.id != id {
        return Err(AdminError::bad_request(
            "the body's id differs from the path's",
        ));
    }
    let c = AdminChange::new(
        "leistung.what_if",
        format!("leistungen/{id}"),
        Some(body.tenant.clone()),
    );
    let scope = admin_scope(&state, &caller, &c).await?;
    body.check().map_err(AdminError::bad_request)?;
    let before = super::all(&state).await?.into_iter().find(|l| l.id == id);
    super::check(&state, &caller, &scope, before.as_ref(), &body, &c).await?;
    let after = side(&state, &body).await?;
    let before_side = match &before {
        Some(b) => Some(side(&state, b).await?),
        None => None,
    };
    let (was_sources, was_claims) = before_side
        .as_ref()
        .map(|b| (b.sources.clone(), b.claims.clone()))
        .unwrap_or_default();
    let answer = LeistungWhatIf {
        needs_approval: before.as_ref().is_some_and(|b| b.weakened_by(&body)),
        sources_gained: after
            .sources
            .iter()
            .filter(|s| !was_sources.contains(s))
            .cloned()
            .collect(),
        sources_lost: was_sources
            .iter()
            .filter(|s| !after.sources.contains(s))
            .cloned()
            .collect(),
        claims_gained: after
            .claims
            .iter()
            .filter(|c| !was_claims.contains(c))
            .cloned()
            .collect(),
        claims_lost: was_claims
            .iter()
            .filter(|c| !after.claims.contains(c))
            .cloned()
            .collect(),
        before: before_side,
        after,
    };
    Ok(api::json(StatusCode::OK, &answer))
}
