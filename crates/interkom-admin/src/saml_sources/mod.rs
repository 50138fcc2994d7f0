//! SAML identity sources of a subtree (interkom as service provider of
//! BundID, Mein Unternehmenskonto, eIDAS): registered with their IdP's
//! metadata, given or fetched from an https URL on a public address.
//!
//! A source lies in its tenant's subtree, and a Leistung accepts only
//! those of its own tenant and the tenants above it: a Gemeinde's source
//! serves the Gemeinde's Leistungen. A change to what
//! an existing source is trusted with — its metadata given anew (the
//! signing keys), where the metadata comes from, a level name standing for
//! a higher level, the level or pseudonym attribute, the population, the
//! tenant, a larger clock skew, other attributes for the data, no more
//! ForceAuthn — is a proposal a second administrator approves: a forged
//! assertion would otherwise be one administrator's decision. So is a new
//! source that an existing Leistung would accept, or one under an id
//! people were linked on (deleting and registering again is no way
//! around the rule).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use interkom_directory::saml_sources::{SamlSource, SamlSourceConfig};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) mod view;

use view::{SamlSourceBody, SamlSourceDoc, SamlSourceList, SamlSourceView};

use crate::api::{self, record, refuse, AdminChange, Ids, JsonBody};
use crate::auth::Caller;
use crate::proposals::store::propose;
use crate::proposals::view::Proposed;
use crate::scope::{admin_scope, Place, Scope};
use crate::{AdminError, AdminState};

pub(crate) fn routes() -> OpenApiRouter<AdminState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, put, delete))
}

async fn find(state: &AdminState, id: &str) -> Result<Option<SamlSource>, AdminError> {
    Ok(state
        .0
        .directory
        .saml_source(id)
        .await
        .map_err(AdminError::from)?
        .map(|s| (*s).clone()))
}

fn tag(s: &SamlSource) -> String {
    api::etag(&SamlSourceView::of(s))
}

fn covers(state: &AdminState, scope: &Scope, tenant: &str) -> bool {
    scope.covers_id(&state.0.tenants, tenant)
}

async fn in_scope(
    state: &AdminState,
    caller: &Caller,
    c: &AdminChange<'_>,
    id: &str,
) -> Result<SamlSource, AdminError> {
    let scope = admin_scope(state, caller, c).await?;
    let s = find(state, id)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no SAML source `{id}`")))?;
    if !covers(state, &scope, &s.cfg.tenant) {
        return Err(refuse(
            state,
            caller,
            c,
            "the SAML source is outside the caller's subtree",
        )
        .await);
    }
    Ok(s)
}

/// `GET /saml-sources`: the SAML identity sources of the subtree.
#[utoipa::path(
    get,
    path = "/saml-sources",
    tag = "admin",
    responses(
        (status = 200, description = "SAML identity sources of the subtree, by id", body = SamlSourceList),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("saml_source.list", "saml-sources", None);
    let scope = admin_scope(&state, &caller, &c).await?;
    let saml_sources = state
        .0
        .directory
        .saml_sources()
        .await
        .map_err(AdminError::from)?
        .iter()
        .filter(|s| covers(&state, &scope, &s.cfg.tenant))
        .map(|s| SamlSourceView::of(s))
        .collect();
    Ok(api::json(StatusCode::OK, &SamlSourceList { saml_sources }))
}

/// `GET /saml-sources/{id}`.
#[utoipa::path(
    get,
    path = "/saml-sources/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 200, description = "the SAML source (ETag)", body = SamlSourceDoc),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let c = AdminChange::new("saml_source.read", format!("saml-sources/{id}"), None);
    let s = in_scope(&state, &caller, &c, &id).await?;
    Ok(api::tagged(StatusCode::OK, &SamlSourceView::of(&s)))
}

/// `PUT /saml-sources/{id}`: registers or replaces a source with its IdP's
/// metadata (`If-Match` checked when sent); a change to what an existing
/// source is trusted with is proposed.
#[utoipa::path(
    put,
    path = "/saml-sources/{id}",
    tag = "admin",
    params(
        ("id" = String, Path, description = "id"),
        ("If-Match" = Option<String>, Header, description = "the entity's ETag")
    ),
    request_body(content = SamlSourceBody, content_type = "application/json"),
    responses(
        (status = 200, description = "replaced", body = SamlSourceDoc),
        (status = 201, description = "created", body = SamlSourceDoc),
        (status = 202, description = "changes what the source is trusted with: proposed", body = Proposed),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SamlSourceBody>,
) -> Result<Response, AdminError> {
    let cfg = body.source;
    if cfg.id != id {
        return Err(AdminError::bad_request(
            "the body's id differs from the path's",
        ));
    }
    if cfg.metadata_file.is_some() {
        return Err(AdminError::bad_request(
            "metadata_file is the configuration file's; give `metadata` or `source.metadata_url`",
        ));
    }
    let mut c = AdminChange::new(
        "saml_source.put",
        format!("saml-sources/{id}"),
        Some(cfg.tenant.clone()),
    );
    // The caller's subtree before anything is fetched for them.
    let scope = admin_scope(&state, &caller, &c).await?;
    let before = find(&state, &id).await?;
    check(&state, &caller, &scope, before.as_ref(), &cfg, &c).await?;
    if let Some(b) = &before {
        api::check_if_match_sent(&headers, &tag(b))?;
    }
    let given = body.metadata.is_some();
    let metadata = match (body.metadata, &cfg.metadata_url, &before) {
        (Some(x), _, _) => x,
        (None, Some(url), _) => state
            .0
            .gateway
            .fetch_saml_metadata(url)
            .await
            .map_err(AdminError::bad_request)?,
        (None, None, Some(b)) => b.metadata.clone(),
        (None, None, None) => {
            return Err(AdminError::bad_request(
                "either `metadata` or `source.metadata_url`",
            ))
        }
    };
    // Refused now rather than at the approval.
    state
        .0
        .directory
        .check_saml_source(&cfg, &metadata)
        .await
        .map_err(AdminError::registration)?;
    c.before = before
        .as_ref()
        .map(|b| json!(SamlSourceView::of(b)))
        .unwrap_or(Value::Null);
    c.after = json!(cfg);
    let why = match &before {
        Some(b) => trust_widened(b, &cfg, given.then_some(metadata.as_str())),
        None if accepted_by(&state, &cfg) => Some("a Leistung would accept a new source"),
        // A source registered again under an id people were linked on
        // would log in as them.
        None => state
            .0
            .directory
            .source_has_people(&cfg.id)
            .await
            .map_err(AdminError::from)?
            .then_some("people are linked on this source's id"),
    };
    if let Some(why) = why {
        {
            let payload = json!({
                "source": cfg, "metadata": metadata,
                "before_etag": before.as_ref().map(tag), "why": why,
            });
            let place = Place::Tenant(cfg.tenant.clone());
            let pid = propose(
                &state,
                &caller,
                "saml_source",
                &payload,
                &place,
                &[],
                &mut c,
            )
            .await?;
            return Ok(api::json(StatusCode::ACCEPTED, &Proposed::new(pid, None)));
        }
    }
    let after = store(&state, cfg, &metadata).await?;
    record(&state, &caller, &c).await?;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(api::tagged(status, &after))
}

/// The requester's and again the approver's check: the tenant before and
/// after in the subtree.
async fn check(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    before: Option<&SamlSource>,
    after: &SamlSourceConfig,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    if state.0.tenants.get(&after.tenant).is_none() {
        return Err(AdminError::bad_request(format!(
            "unknown tenant `{}`",
            after.tenant
        )));
    }
    for t in before
        .iter()
        .map(|b| b.cfg.tenant.as_str())
        .chain([after.tenant.as_str()])
    {
        if !covers(state, scope, t) {
            return Err(refuse(
                state,
                caller,
                c,
                "the SAML source's tenant is outside the caller's subtree",
            )
            .await);
        }
    }
    Ok(())
}

/// Whether an existing Leistung would accept the source: one naming its
/// id, or one of its population naming none, in the source's tenant or
/// below. A new source such a Leistung accepts widens what it accepts —
/// as naming one more source there would — and so needs a second
/// administrator; one no Leistung accepts yet is the caller's to register
/// (and deleting a source, then registering it again, is no way around
/// this).
fn accepted_by(state: &AdminState, cfg: &SamlSourceConfig) -> bool {
    let snap = state.0.gateway.policy().snapshot();
    let accepted = snap.leistungen().any(|l| {
        l.populations.contains(&cfg.population) && l.accepts(&cfg.id, &cfg.tenant, &state.0.tenants)
    });
    accepted
}

/// What of an existing source's trust the change widens, if anything.
/// `given`: metadata the caller sent (metadata fetched from an unchanged
/// URL is what the refresh would fetch anyway).
fn trust_widened(
    before: &SamlSource,
    after: &SamlSourceConfig,
    given: Option<&str>,
) -> Option<&'static str> {
    let b = &before.cfg;
    if given.is_some_and(|m| m != before.metadata) {
        return Some("the IdP's metadata (its keys) given anew");
    }
    if b.metadata_url != after.metadata_url {
        return Some("where the metadata comes from");
    }
    if b.tenant != after.tenant || b.population != after.population {
        return Some("its tenant or population");
    }
    if b.pseudonym_attribute != after.pseudonym_attribute {
        return Some("the attribute accounts are linked on");
    }
    if b.level_attribute != after.level_attribute {
        return Some("the attribute that states the level");
    }
    let raised = after
        .levels
        .iter()
        .any(|l| b.loa_of(&l.name).is_none_or(|was| l.loa > was));
    if raised {
        return Some("a level name standing for a higher level");
    }
    if after.clock_skew > b.clock_skew {
        return Some("a larger clock skew");
    }
    if b.attributes != after.attributes {
        return Some("the attributes the Leistungen' data is read from");
    }
    if b.force_authn && !after.force_authn {
        return Some("no fresh login asked for any more");
    }
    None
}

async fn store(
    state: &AdminState,
    cfg: SamlSourceConfig,
    metadata: &str,
) -> Result<SamlSourceView, AdminError> {
    let id = cfg.id.clone();
    state
        .0
        .directory
        .put_saml_source(cfg, metadata)
        .await
        .map_err(AdminError::registration)?;
    let stored = find(state, &id)
        .await?
        .ok_or_else(|| AdminError::internal("the source just stored is gone"))?;
    Ok(SamlSourceView::of(&stored))
}

/// `DELETE /saml-sources/{id}`: its answers are refused from now on.
#[utoipa::path(
    delete,
    path = "/saml-sources/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "id")),
    responses(
        (status = 204, description = "deleted"),
        crate::docs::AdminErrors
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> Result<Response, AdminError> {
    let mut c = AdminChange::new("saml_source.delete", format!("saml-sources/{id}"), None);
    let s = in_scope(&state, &caller, &c, &id).await?;
    c.tenant = Some(s.cfg.tenant.clone());
    c.before = json!(SamlSourceView::of(&s));
    state
        .0
        .directory
        .delete_saml_source(&id)
        .await
        .map_err(AdminError::from)?;
    record(&state, &caller, &c).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An approved proposal, checked for its approver on the state as it is.
pub(crate) async fn prepare(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    payload: &Value,
    c: &AdminChange<'_>,
) -> Result<(SamlSourceConfig, String), AdminError> {
    let cfg: SamlSourceConfig =
        serde_json::from_value(payload["source"].clone()).map_err(AdminError::from)?;
    let metadata = payload["metadata"]
        .as_str()
        .ok_or_else(|| AdminError::internal("a proposal without metadata"))?
        .to_owned();
    let before = find(state, &cfg.id).await?;
    if before.as_ref().map(tag).as_deref() != payload["before_etag"].as_str() {
        return Err(AdminError::conflict(
            "the SAML source changed since the proposal: propose again",
        ));
    }
    check(state, caller, scope, before.as_ref(), &cfg, c).await?;
    Ok((cfg, metadata))
}

/// Stores an approved proposal.
pub(crate) async fn apply(
    state: &AdminState,
    cfg: SamlSourceConfig,
    metadata: &str,
) -> Result<SamlSourceView, AdminError> {
    store(state, cfg, metadata).await
}
