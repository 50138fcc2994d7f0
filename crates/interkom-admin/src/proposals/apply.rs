//! Applying an approved proposal: the approver must be able to make the
//! change themselves, on the state as it is now.

use axum::http::StatusCode;
use interkom_directory::UpstreamConfig;
use interkom_policy::ResourceSpec;
use serde_json::{json, Value};

use crate::api::{self, record, refuse, AdminChange};
use crate::auth::Caller;
use crate::policy::rules::{apply_lines, authorize_lines, parse_lines, Lines, PolicyChangeBody};
use crate::policy::rules::{authorize_flips, preview, resources};
use crate::proposals::view::ApprovalResult;
use crate::resources::rules::check_client;
use crate::resources::rules::{check_resource, put_resource};
use crate::scope::Scope;
use crate::scope::{may_change, resource_place};
use crate::{AdminError, AdminState};

/// A proposal, checked for its approver and ready to apply.
pub(crate) enum Prepared {
    Lines(Lines, Option<String>),
    Resource(ResourceSpec),
    Role(crate::users::UserView, String, String),
    PasswordReset(String),
    Upstream(Box<UpstreamConfig>, Option<(UpstreamConfig, bool)>),
    Directory(
        Box<interkom_directory::ldap::DirectorySourceConfig>,
        Option<(interkom_directory::ldap::DirectorySourceConfig, bool)>,
    ),
    FirstParty(String, bool),
    /// A Leistung to store.
    Leistung(Box<interkom_policy::LeistungSpec>),
    /// A SAML identity source to store, with its IdP's metadata.
    SamlSource(
        Box<interkom_directory::saml_sources::SamlSourceConfig>,
        String,
    ),
    /// A SAML service provider to store.
    ServiceProvider(Box<interkom_directory::service_providers::ServiceProviderConfig>),
    /// A protected application to store (`None`: to remove).
    Application(
        String,
        Option<Box<interkom_directory::applications::ApplicationConfig>>,
    ),
}

pub(crate) async fn prepare_approval(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    kind: &str,
    payload: &Value,
    c: &mut AdminChange<'_>,
) -> Result<Prepared, AdminError> {
    let field = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_owned);
    match kind {
        "policy_change" => {
            let body: PolicyChangeBody =
                serde_json::from_value(payload.clone()).map_err(AdminError::from)?;
            let lines = parse_lines(&body)?;
            let all = resources(state).await?;
            authorize_lines(state, caller, scope, &all, &lines, c).await?;
            let (flips, _) = preview(state, &all, &lines).await?;
            authorize_flips(state, caller, scope, &all, &flips, c).await?;
            Ok(Prepared::Lines(lines, body.comment))
        }
        "resource" => {
            let spec: ResourceSpec =
                serde_json::from_value(payload["spec"].clone()).map_err(AdminError::from)?;
            let all = resources(state).await?;
            let current = all.iter().find(|r| r.id == spec.id);
            let now_tag = current.map(api::etag);
            if now_tag.as_deref() != payload["before_etag"].as_str() {
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    "the resource changed since the proposal: propose again",
                ));
            }
            if let Some(cur) = current {
                if !may_change(state, scope, &resource_place(cur)) {
                    return Err(refuse(
                        state,
                        caller,
                        c,
                        "the resource is outside the approver's subtree",
                    )
                    .await);
                }
            }
            if !may_change(state, scope, &resource_place(&spec)) {
                return Err(refuse(
                    state,
                    caller,
                    c,
                    "the new owner is outside the approver's subtree",
                )
                .await);
            }
            check_resource(state, &all, &spec)?;
            check_client(state, caller, scope, &spec, c).await?;
            c.before = serde_json::to_value(current).unwrap_or(Value::Null);
            Ok(Prepared::Resource(spec))
        }
        "role_assignment" => {
            let (Some(user), Some(tenant), Some(role)) =
                (field("user"), field("tenant"), field("role"))
            else {
                return Err(AdminError::internal("malformed role proposal"));
            };
            let before =
                crate::users::check_role_change(state, caller, scope, &user, &tenant, &role, c)
                    .await?;
            Ok(Prepared::Role(before, tenant, role))
        }
        "password_reset" => {
            let user =
                field("user").ok_or_else(|| AdminError::internal("malformed reset proposal"))?;
            Ok(Prepared::PasswordReset(user))
        }
        "client_first_party" => {
            let (Some(client), Some(first_party)) = (
                field("client"),
                payload.get("first_party").and_then(Value::as_bool),
            ) else {
                return Err(AdminError::internal("malformed first-party proposal"));
            };
            let found = state
                .0
                .directory
                .client(&client)
                .await
                .map_err(AdminError::from)?
                .ok_or_else(|| AdminError::new(StatusCode::CONFLICT, "the client is gone"))?;
            if !crate::clients::covers_kreis(state, scope, &found.tenant) {
                let why = "whether a client asks for consent is for an administrator of its Kreis";
                return Err(refuse(state, caller, c, why).await);
            }
            Ok(Prepared::FirstParty(client, first_party))
        }
        "upstream" => {
            let body: UpstreamConfig =
                serde_json::from_value(payload["config"].clone()).map_err(AdminError::from)?;
            let current = crate::upstreams::current(state, &body.id).await?;
            if current.as_ref().map(|(_, tag)| tag.as_str()) != payload["before_etag"].as_str() {
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    "the upstream changed since the proposal: propose again",
                ));
            }
            let before = current.map(|(u, _)| u);
            crate::upstreams::check_upstream(state, caller, scope, before.as_ref(), &body, c)
                .await?;
            Ok(Prepared::Upstream(Box::new(body), before))
        }
        "directory" => {
            let body: interkom_directory::ldap::DirectorySourceConfig =
                serde_json::from_value(payload["config"].clone()).map_err(AdminError::from)?;
            let current = crate::directories::current(state, &body.id).await?;
            if current.as_ref().map(|(_, tag)| tag.as_str()) != payload["before_etag"].as_str() {
                return Err(AdminError::new(
                    StatusCode::CONFLICT,
                    "the directory changed since the proposal: propose again",
                ));
            }
            let before = current.map(|(d, _)| d);
            crate::directories::check_directory(state, caller, scope, before.as_ref(), &body, c)
                .await?;
            Ok(Prepared::Directory(Box::new(body), before))
        }
        "leistung" => {
            let l = crate::leistungen::prepare(state, caller, scope, payload, c).await?;
            Ok(Prepared::Leistung(Box::new(l)))
        }
        "saml_source" => {
            let (cfg, metadata) =
                crate::saml_sources::prepare(state, caller, scope, payload, c).await?;
            Ok(Prepared::SamlSource(Box::new(cfg), metadata))
        }
        "service_provider" => {
            let cfg = crate::service_providers::prepare(state, caller, scope, payload, c).await?;
            Ok(Prepared::ServiceProvider(Box::new(cfg)))
        }
        "application" => {
            let (id, after) =
                crate::applications::prepare(state, caller, scope, payload, c).await?;
            Ok(Prepared::Application(id, after.map(Box::new)))
        }
        other => Err(AdminError::internal(format!(
            "unknown proposal kind {other}"
        ))),
    }
}

pub(crate) async fn apply_approved(
    state: &AdminState,
    caller: &Caller,
    prepared: Prepared,
    c: &mut AdminChange<'_>,
) -> Result<ApprovalResult, AdminError> {
    match prepared {
        Prepared::Lines(lines, comment) => {
            let applied = apply_lines(state, &lines).await?;
            c.op = "policy.change";
            c.target = "policy/lines".into();
            c.before = json!({ "present": applied.removed });
            c.after =
                json!({ "added": applied.added, "removed": applied.removed, "comment": comment });
            record(state, caller, c).await?;
            Ok(ApprovalResult::Lines {
                added: applied.added,
                removed: applied.removed,
            })
        }
        Prepared::Resource(spec) => {
            put_resource(state, &spec).await?;
            c.op = "resource.put";
            c.target = format!("resources/{}", spec.id);
            c.after = serde_json::to_value(&spec).unwrap_or(Value::Null);
            record(state, caller, c).await?;
            Ok(ApprovalResult::Resource { resource: spec })
        }
        Prepared::Role(before, tenant, role) => {
            c.op = "user.roles.add";
            c.target = format!("users/{}/roles/{tenant}/{role}", before.id);
            let after =
                crate::users::apply_role_change(state, caller, &before, &tenant, &role, true, c)
                    .await?;
            Ok(ApprovalResult::Role(after))
        }
        Prepared::Upstream(body, before) => {
            c.op = "upstream.put";
            c.target = format!("upstreams/{}", body.id);
            c.tenant = Some(body.tenant.to_string());
            let after =
                crate::upstreams::store_upstream(state, caller, before.as_ref(), *body, c).await?;
            Ok(ApprovalResult::Upstream {
                upstream: Box::new(after),
            })
        }
        Prepared::Directory(body, before) => {
            c.op = "directory.put";
            c.target = format!("directories/{}", body.id);
            c.tenant = Some(body.tenant.to_string());
            let after =
                crate::directories::store_directory(state, caller, before.as_ref(), *body, c)
                    .await?;
            Ok(ApprovalResult::Directory {
                directory: Box::new(after),
            })
        }
        Prepared::Leistung(l) => {
            c.op = "leistung.put";
            c.target = format!("leistungen/{}", l.id);
            c.tenant = Some(l.tenant.clone());
            c.after = serde_json::to_value(&l).unwrap_or(Value::Null);
            crate::leistungen::store(state, &l).await?;
            record(state, caller, c).await?;
            Ok(ApprovalResult::Leistung { leistung: l })
        }
        Prepared::SamlSource(cfg, metadata) => {
            c.op = "saml_source.put";
            c.target = format!("saml-sources/{}", cfg.id);
            c.tenant = Some(cfg.tenant.clone());
            c.after = serde_json::to_value(&cfg).unwrap_or(Value::Null);
            let after = crate::saml_sources::apply(state, *cfg, &metadata).await?;
            record(state, caller, c).await?;
            Ok(ApprovalResult::SamlSource {
                saml_source: Box::new(after),
            })
        }
        Prepared::ServiceProvider(cfg) => {
            c.op = "sp.put";
            c.target = format!("service-providers/{}", cfg.id);
            c.tenant = Some(cfg.tenant.clone());
            c.after = serde_json::to_value(&cfg).unwrap_or(Value::Null);
            crate::service_providers::store(state, *cfg.clone()).await?;
            record(state, caller, c).await?;
            Ok(ApprovalResult::ServiceProvider {
                service_provider: cfg,
            })
        }
        Prepared::Application(id, after) => {
            c.target = format!("applications/{id}");
            match after {
                Some(cfg) => {
                    c.op = "application.put";
                    c.tenant = Some(cfg.tenant.clone());
                    c.after = serde_json::to_value(&cfg).unwrap_or(Value::Null);
                    crate::applications::store(state, *cfg.clone()).await?;
                    record(state, caller, c).await?;
                    Ok(ApprovalResult::Application {
                        application: Some(cfg),
                    })
                }
                None => {
                    c.op = "application.delete";
                    crate::applications::remove(state, &id).await?;
                    record(state, caller, c).await?;
                    Ok(ApprovalResult::Application { application: None })
                }
            }
        }
        Prepared::FirstParty(client, first_party) => {
            state
                .0
                .directory
                .set_first_party(&client, first_party)
                .await
                .map_err(AdminError::from)?;
            c.op = "client.first_party";
            c.target = format!("clients/{client}");
            c.after = json!({ "first_party": first_party });
            record(state, caller, c).await?;
            Ok(ApprovalResult::FirstParty {
                client,
                first_party,
            })
        }
        Prepared::PasswordReset(user) => {
            let scope = Scope::load(&state.0.pool, caller).await?;
            c.op = "user.password_reset";
            c.target = format!("users/{user}");
            let password =
                crate::users::apply_password_reset(state, caller, &scope, &user, c).await?;
            record(state, caller, c).await?;
            Ok(ApprovalResult::PasswordReset {
                initial_password: password,
            })
        }
    }
}
