//! Consent, as the person sees it: `POST /login/consent` answers the
//! consent page of a login (agree: the login goes on; decline: the client
//! hears `access_denied`), and `/account/consents` lists what the person
//! agreed to and withdraws it (with the tokens the client holds).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::crypto::ct_eq;
use serde::{Deserialize, Serialize};

use crate::i18n::{Lang, LangTexts};
use crate::login::flow::{self, LoginOutcome};
use crate::login::plan::Step;
use crate::login::state::{self, Posted};
use crate::session::{self, SESSION_COOKIE};
use crate::web::{self, Meta};
use crate::{Gateway, GatewayError};

#[derive(Deserialize)]
struct DecisionForm {
    decision: Option<String>,
}

/// `POST /login/consent`.
pub(crate) async fn login_consent(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Posted { form, at, pending } =
        match state::posted::<DecisionForm>(&gw, &meta, &headers, &body).await {
            Ok(p) => p,
            Err(r) => return r,
        };
    let Some(mut p) = pending else {
        return state::out_of_step(&gw, at.lang);
    };
    let answer = async {
        // Only a login that is ready to issue reaches its consent page.
        if flow::plan(&gw, Some(&meta), &at.req, &p).await? != Step::Issue {
            return Ok(state::out_of_step(&gw, at.lang));
        }
        let agreed = form.decision.as_deref() == Some("allow");
        let user = gw.dir.user(&p.user_id).await?;
        let action = if agreed {
            Action::ConsentGiven
        } else {
            Action::ConsentDeclined
        };
        let mut ev = AuditEvent::new(action, Outcome::Success)
            .client(&at.client.id)
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(serde_json::json!({ "scope": at.req.scope }));
        if let Some(u) = &user {
            ev = gw.about(ev, u);
        }
        gw.audit.append(ev).await?;
        if !agreed {
            return flow::finish_login(&gw, &meta, &at, &p, LoginOutcome::Declined).await;
        }
        gw.dir
            .grant_consent(&p.user_id, &at.client.id, &at.req.scope)
            .await?;
        p.consented = true;
        flow::advance(&gw, &meta, &at, p).await
    }
    .await;
    answer.unwrap_or_else(|e: GatewayError| web::internal(&gw, at.lang, e))
}

/// One row of the consents page.
#[derive(Serialize)]
struct Row {
    client: String,
    name: String,
    scopes: String,
}

fn consents_csrf(gw: &Gateway, handle: &str) -> String {
    gw.master.keyed_hash(&format!("consents|{handle}"))
}

/// The signed-in person (session handle and account id), if any.
async fn signed_in(
    gw: &Gateway,
    headers: &HeaderMap,
) -> Result<Option<(String, String)>, GatewayError> {
    let Some(handle) = web::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let s = session::session_by_handle(gw, &handle, gw.clock.now()).await?;
    Ok(s.map(|s| (handle, s.user_id.to_string())))
}

/// `GET /account/consents`: what the signed-in person agreed to.
pub(crate) async fn consents_page(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let page = async {
        let Some((handle, user)) = signed_in(&gw, &headers).await? else {
            return Ok(signin_first(&gw, lang));
        };
        let mut rows = Vec::new();
        for c in gw.dir.consents_of(&user).await? {
            let name = gw.client(&c.client).await?.map(|cl| cl.name.clone());
            rows.push(Row {
                name: name.unwrap_or_else(|| c.client.to_string()),
                client: c.client.to_string(),
                scopes: c.scopes.join(" "),
            });
        }
        Ok(web::page(
            &gw,
            StatusCode::OK,
            "consents.html",
            minijinja::context! {
                lang => lang.code(), base => gw.cfg.base_path(),
                t => minijinja::Value::from_serialize(lang.texts()),
                consents => rows,
                csrf_token => consents_csrf(&gw, &handle),
            },
        ))
    }
    .await;
    page.unwrap_or_else(|e: GatewayError| web::internal(&gw, lang, e))
}

#[derive(Deserialize)]
struct RevokeForm {
    csrf_token: Option<String>,
    client_id: Option<String>,
}

/// `POST /account/consents`: withdraws the consent for one client and
/// ends the tokens it holds for the person.
pub(crate) async fn consents_post(
    State(gw): State<Gateway>,
    meta: Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let done = async {
        let Some((handle, user)) = signed_in(&gw, &headers).await? else {
            return Ok(signin_first(&gw, lang));
        };
        let form: Option<RevokeForm> = serde_urlencoded::from_bytes(&body).ok();
        let Some((csrf, client)) = form.and_then(|f| f.csrf_token.zip(f.client_id)) else {
            return Ok(web::error_page(
                &gw,
                lang,
                StatusCode::BAD_REQUEST,
                lang.texts().bad_request,
                None,
            ));
        };
        if !ct_eq(&csrf, &consents_csrf(&gw, &handle)) {
            return Ok(web::error_page(
                &gw,
                lang,
                StatusCode::FORBIDDEN,
                lang.texts().expired,
                None,
            ));
        }
        let account = user.clone().into();
        if gw.dir.revoke_consent(&account, &client).await? {
            let now = gw.clock.now();
            let families = gw
                .store
                .revoke_families_of_user_at(&user, &client, now)
                .await?;
            let mut ev = AuditEvent::new(Action::ConsentWithdrawn, Outcome::Success)
                .client(&client)
                .correlation(meta.request_id.clone())
                .source(meta.source.clone())
                .details(serde_json::json!({ "token_families_revoked": families }));
            if let Some(u) = gw.dir.user(&user).await? {
                ev = gw.about(ev, &u);
            }
            gw.audit.append(ev).await?;
        }
        Ok(web::see_other(&format!(
            "{}/account/consents",
            gw.cfg.base_path()
        )))
    }
    .await;
    done.unwrap_or_else(|e: GatewayError| web::internal(&gw, lang, e))
}

fn signin_first(gw: &Gateway, lang: Lang) -> Response {
    web::error_page(
        gw,
        lang,
        StatusCode::UNAUTHORIZED,
        lang.texts().signin_first,
        None,
    )
}
