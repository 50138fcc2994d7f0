//! Leistungen in the login flow: a citizen or a business arriving from a
//! Leistung sees what it is, who offers it, the level it needs and the
//! data it receives, and only the identity sources that can reach that
//! level; a login whose level falls short steps up at such a source, with
//! `ForceAuthn`.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use interkom_directory::saml_sources::SamlSource;
use interkom_policy::LeistungSpec;
use interkom_types::Loa;

use super::pages::{self, SourceEntry};
use super::plan::Step;
use super::state::{Login, LoginRequest};
use crate::sources::saml::UPSTREAM_PREFIX;
use crate::sources::{IdentitySource, SamlIdp};
use crate::{Gateway, GatewayError};

/// The level a login for this Leistung must reach (the client may ask for
/// more with `acr_values`).
pub(crate) fn need(l: &LeistungSpec, client_min: Option<Loa>) -> Loa {
    client_min.map_or(l.loa, |m| m.max(l.loa))
}

/// The sources of the Leistung's populations it accepts that reach `need`.
pub(crate) async fn offered(
    gw: &Gateway,
    l: &LeistungSpec,
    need: Loa,
) -> Result<Vec<Arc<SamlSource>>, GatewayError> {
    Ok(gw
        .dir
        .saml_sources()
        .await?
        .iter()
        .filter(|s| {
            l.populations.contains(&s.cfg.population)
                && l.accepts(&s.cfg.id, &s.cfg.tenant, &gw.tenants)
                && s.cfg.max_loa().is_some_and(|m| m >= need)
        })
        .cloned()
        .collect())
}

/// The Leistung's page, with the sources that reach its level; `message`
/// (and the IdP's `detail`) say why a login is to be tried again.
pub(crate) async fn page(
    gw: &Gateway,
    at: &LoginRequest,
    l: &LeistungSpec,
    status: StatusCode,
    message: Option<&str>,
    detail: Option<&str>,
) -> Result<Response, GatewayError> {
    let sources: Vec<SourceEntry> = offered(gw, l, need(l, at.req.min_acr))
        .await?
        .iter()
        .map(|s| SourceEntry {
            id: s.cfg.id.clone(),
            name: s.cfg.name.clone(),
            description: s.cfg.description.clone(),
        })
        .collect();
    Ok(pages::leistung_page(
        gw, at, l, &sources, status, message, detail,
    ))
}

/// Whether the login came from a source the Leistung accepts.
pub(crate) async fn from_accepted(
    gw: &Gateway,
    l: &LeistungSpec,
    p: &Login,
) -> Result<bool, GatewayError> {
    let Some(id) = p
        .upstream
        .as_deref()
        .and_then(|u| u.strip_prefix(UPSTREAM_PREFIX))
    else {
        return Ok(false);
    };
    Ok(gw
        .dir
        .saml_source(id)
        .await?
        .is_some_and(|s| l.accepts(id, &s.cfg.tenant, &gw.tenants)))
}

/// The next step of a login that does not (yet) meet the Leistung: a
/// source that reaches the level, the one the login came from first, each
/// asked once per level, always with a fresh authentication.
pub(crate) async fn step_up(
    gw: &Gateway,
    l: &LeistungSpec,
    p: &Login,
    need: Loa,
) -> Result<Step, GatewayError> {
    let mut sources = offered(gw, l, need).await?;
    sources
        .sort_by_key(|s| p.upstream.as_deref() != Some(&format!("{UPSTREAM_PREFIX}{}", s.cfg.id)));
    for s in sources {
        let source = SamlIdp(s);
        if p.tried(&source.method(Some(need))) {
            continue;
        }
        return Ok(Step::Upstream {
            id: source.upstream(),
            asked: need,
            fresh: true,
        });
    }
    Ok(Step::Unmet)
}
