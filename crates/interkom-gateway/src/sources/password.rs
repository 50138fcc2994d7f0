//! The local password: argon2id hashes in the directory, brute-force
//! protection (`guard`), and one message for every refusal.

use axum::http::StatusCode;
use axum::response::Response;
use futures_util::future::BoxFuture;
use interkom_types::Loa;

use super::guard::Guard;
use super::{Authentication, IdentitySource, SourceAsk};
use crate::i18n::LangTexts;
use crate::login::pages::{self, Chooser};
use crate::login::state::{Checked, Login, LoginRequest};
use crate::web::Meta;
use crate::{Gateway, GatewayError};

/// How `tried` records the local password.
pub(crate) const METHOD: &str = "password";

/// The local password as identity source.
pub(crate) struct LocalPassword {
    /// The upstream chosen last in this browser (offered first on the form).
    pub(crate) last_idp: Option<String>,
}

impl IdentitySource for LocalPassword {
    fn method(&self, _asked: Option<Loa>) -> String {
        METHOD.to_owned()
    }

    fn max_loa(&self) -> Option<Loa> {
        Some(Loa::Low)
    }

    /// The login form, with the upstreams to choose from; a `login_hint`
    /// that is not an address in an upstream's domain fills the name.
    fn begin<'a>(
        &'a self,
        gw: &'a Gateway,
        ask: &'a SourceAsk<'a>,
    ) -> BoxFuture<'a, Result<Response, GatewayError>> {
        Box::pin(async move {
            let idps = gw.dir.upstreams().await?;
            let dirs = gw.dir.directory_sources().await?;
            let hint = ask
                .at
                .req
                .login_hint
                .as_deref()
                .filter(|h| super::oidc::hint_domain(h).is_none());
            Ok(pages::login_form(
                gw,
                ask.at,
                StatusCode::OK,
                hint,
                None,
                &Chooser::new(&idps, &dirs, self.last_idp.as_deref(), None),
            ))
        })
    }
}

impl LocalPassword {
    /// Checks a password typed into the form of login request `at`: the
    /// login it starts, or the form again with the one message for every
    /// refusal.
    pub(crate) async fn verify(
        &self,
        gw: &Gateway,
        meta: &Meta,
        at: &LoginRequest,
        username: &str,
        password: String,
    ) -> Result<Checked, GatewayError> {
        let now = gw.clock.now();
        let user = if username.is_empty() || username.len() > 128 {
            None
        } else {
            gw.dir.find_user(username).await?
        };
        let user = user.filter(|u| u.is_enabled());
        let guard = Guard::begin(gw, meta, username).await?;
        // The hash is checked even when locked: the answer takes as long.
        let ok = gw.dir.verify_password(user.as_ref(), password).await;
        let user = match (ok && !guard.locked(), user) {
            (true, Some(u)) => {
                guard.passed(gw).await?;
                u
            }
            (_, user) => {
                guard
                    .refused(
                        gw,
                        meta,
                        at,
                        user.as_ref(),
                        ok && user.is_some(),
                        "invalid_credentials",
                        serde_json::json!({ "username": username }),
                    )
                    .await?;
                let idps = gw.dir.upstreams().await?;
                let dirs = gw.dir.directory_sources().await?;
                return Ok(Checked::Page(pages::login_form(
                    gw,
                    at,
                    StatusCode::UNAUTHORIZED,
                    Some(username),
                    Some(at.lang.texts().login_failed),
                    &Chooser::new(&idps, &dirs, self.last_idp.as_deref(), None),
                )));
            }
        };
        let auth = Authentication {
            user_id: user.id.clone(),
            loa: Loa::Low,
            amr: vec!["pwd".to_owned()],
            auth_time: now,
            upstream: None,
            method: METHOD.to_owned(),
            upstream_token: None,
            upstream_subject: None,
        };
        Ok(Checked::Passed(Login::authenticated(auth, None)))
    }
}
