//! A Kommune's directory (Active Directory, OpenLDAP) as identity source:
//! the login form posts the name and password, interkom finds the person
//! with the service account, checks the password by a bind as them, and
//! links or creates their account (`<username>@<directory>`), its profile
//! and roles kept in step with the directory at every login.
//!
//! interkom itself does the authentication, so the local second factors
//! and step-up apply as for local accounts; the brute-force guard runs
//! before anything is sent to the directory. A directory that is down or
//! slow is named to the person within a bounded time, audited and counted;
//! other tenants' logins are not held up.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use futures_util::future::BoxFuture;
use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::ldap::{DirectorySource, LdapFailure, PasswordCheck, Person};
use interkom_directory::User;
use interkom_types::Loa;
use serde_json::json;

use super::guard::{Guard, KeyCount};
use super::{password, Authentication, IdentitySource, SourceAsk};
use crate::i18n::LangTexts;
use crate::login::pages::{self, Chooser};
use crate::login::state::{Checked, Login, LoginRequest};
use crate::web::Meta;
use crate::{Gateway, GatewayError};

/// A directory as identity source.
pub(crate) struct DirectoryLogin(pub(crate) Arc<DirectorySource>);

impl IdentitySource for DirectoryLogin {
    /// A directory password is a password: a fresh login asks for it again
    /// like for the local one.
    fn method(&self, _asked: Option<Loa>) -> String {
        password::METHOD.to_owned()
    }

    fn max_loa(&self) -> Option<Loa> {
        Some(Loa::Low)
    }

    /// The password form for this directory.
    fn begin<'a>(
        &'a self,
        gw: &'a Gateway,
        ask: &'a SourceAsk<'a>,
    ) -> BoxFuture<'a, Result<Response, GatewayError>> {
        Box::pin(async move { form(gw, ask.at, &self.0, StatusCode::OK, None, None).await })
    }
}

async fn form(
    gw: &Gateway,
    at: &LoginRequest,
    d: &DirectorySource,
    status: StatusCode,
    username: Option<&str>,
    error: Option<&str>,
) -> Result<Response, GatewayError> {
    let idps = gw.dir.upstreams().await?;
    let dirs = gw.dir.directory_sources().await?;
    Ok(pages::login_form(
        gw,
        at,
        status,
        username,
        error,
        &Chooser::new(&idps, &dirs, None, None).for_directory(d),
    ))
}

/// Why a directory login did not pass.
enum Refusal {
    /// Nobody by that name, a wrong password, or an account the directory
    /// or interkom refuses: one message for all, `reason` in the audit.
    Credentials {
        reason: &'static str,
        user: Option<Box<User>>,
        right_password: bool,
    },
    /// The directory could not be asked.
    Unreachable(LdapFailure),
    /// interkom's own storage failed (the error page, not a refusal).
    Internal(GatewayError),
}

impl From<LdapFailure> for Refusal {
    fn from(f: LdapFailure) -> Self {
        Refusal::Unreachable(f)
    }
}

impl DirectoryLogin {
    fn id(&self) -> &str {
        &self.0.cfg.id
    }

    /// Asks the directory, within [`Self::bound`] (only the directory's
    /// part is bounded: interkom's own writes and audit run to the end).
    async fn ask<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, LdapFailure>>,
    ) -> Result<T, Refusal> {
        match tokio::time::timeout(self.bound(), f).await {
            Ok(r) => r.map_err(Refusal::Unreachable),
            Err(_) => Err(Refusal::Unreachable(LdapFailure::Timeout)),
        }
    }

    /// At most this long for each question to the directory.
    fn bound(&self) -> Duration {
        let c = &self.0.cfg;
        (c.connect_timeout() * c.servers.len() as u32 + c.op_timeout() * 4)
            .min(Duration::from_secs(20))
    }

    /// Checks a name and password typed into the form of login request
    /// `at`: the login it starts, or the form again.
    pub(crate) async fn verify(
        &self,
        gw: &Gateway,
        meta: &Meta,
        at: &LoginRequest,
        typed: &str,
        password: String,
    ) -> Result<Checked, GatewayError> {
        // As the directory compares names: surrounding spaces do not make
        // another person (nor another brute-force count).
        let typed = typed.trim();
        let name = self.0.username_of(typed);
        let guard = Guard::begin(gw, meta, &format!("{}@{}", name, self.id())).await?;
        let outcome = if typed.is_empty() || typed.len() > 256 || password.is_empty() {
            // Never sent: an empty password is an anonymous bind to LDAP.
            Err(Refusal::Credentials {
                reason: "invalid_credentials",
                user: None,
                right_password: false,
            })
        } else if guard.locked() {
            // Nothing reaches the directory while locked here.
            Err(Refusal::Credentials {
                reason: "locked",
                user: None,
                right_password: false,
            })
        } else {
            self.authenticate(gw, meta, typed, &password).await
        };
        drop(password);
        match outcome {
            Ok((user, entry)) => {
                guard.passed_with(gw, Some(&entry)).await?;
                metrics::counter!("interkom_directory_logins_total", "directory" => self.id().to_owned(), "result" => "success")
                    .increment(1);
                Ok(Checked::Passed(Login::authenticated(
                    Authentication {
                        user_id: user.id.clone(),
                        loa: Loa::Low,
                        amr: vec!["pwd".to_owned()],
                        auth_time: gw.clock.now(),
                        upstream: None,
                        method: password::METHOD.to_owned(),
                        upstream_token: None,
                        upstream_subject: None,
                    },
                    None,
                )))
            }
            Err(Refusal::Credentials {
                reason,
                user,
                right_password,
            }) => {
                metrics::counter!("interkom_directory_logins_total", "directory" => self.id().to_owned(), "result" => reason)
                    .increment(1);
                guard
                    .refused(
                        gw,
                        meta,
                        at,
                        user.as_deref(),
                        right_password,
                        reason,
                        json!({ "username": typed, "directory": self.id() }),
                    )
                    .await?;
                let page = form(
                    gw,
                    at,
                    &self.0,
                    StatusCode::UNAUTHORIZED,
                    Some(typed),
                    Some(at.lang.texts().login_failed),
                )
                .await?;
                Ok(Checked::Page(page))
            }
            Err(Refusal::Unreachable(f)) => self.unreachable(gw, meta, at, typed, &f).await,
            Err(Refusal::Internal(e)) => Err(e),
        }
    }

    /// The directory could not be asked: audited, counted, and the person
    /// told which directory (their password was not checked).
    async fn unreachable(
        &self,
        gw: &Gateway,
        meta: &Meta,
        at: &LoginRequest,
        typed: &str,
        f: &LdapFailure,
    ) -> Result<Checked, GatewayError> {
        tracing::warn!(directory = %self.id(), failure = %f, "directory login not possible");
        metrics::counter!("interkom_directory_failures_total", "directory" => self.id().to_owned(), "kind" => f.kind())
            .increment(1);
        let mut ev = AuditEvent::new(Action::LoginFailed, Outcome::Failure)
            .client(&at.client.id)
            .reason("directory_unreachable")
            .correlation(meta.request_id.clone())
            .source(meta.source.clone())
            .details(json!({
                "username": typed,
                "directory": self.id(),
                "failure": f.kind(),
                "message": f.to_string(),
            }));
        if let Some(t) = gw.tenants.get(&self.0.cfg.tenant) {
            ev = ev.tenant(&t.id, t.path_string());
        }
        gw.audit.append(ev).await?;
        let t = at.lang.texts();
        let message = format!(
            "{}: {}. {}",
            t.directory_unreachable, self.0.cfg.name, t.directory_unreachable_hint
        );
        let page = form(
            gw,
            at,
            &self.0,
            StatusCode::SERVICE_UNAVAILABLE,
            Some(typed),
            Some(&message),
        )
        .await?;
        Ok(Checked::Page(page))
    }

    /// Finds the person, checks their password, and brings their account
    /// in step.
    async fn authenticate(
        &self,
        gw: &Gateway,
        meta: &Meta,
        typed: &str,
        password: &str,
    ) -> Result<(User, KeyCount), Refusal> {
        let refused = |reason: &'static str, user: Option<User>, right: bool| {
            Err(Refusal::Credentials {
                reason,
                user: user.map(Box::new),
                right_password: right,
            })
        };
        // The directory's share of the login (metrics; the benchmark
        // splits a login's time by it).
        let asked = std::time::Instant::now();
        let Some(person) = self.ask(self.0.find(typed)).await? else {
            return refused("invalid_credentials", None, false);
        };
        let mut ldap = asked.elapsed();
        // The person's own count, whatever name reached them, kept below
        // the directory's lockout threshold: past it nothing more is sent.
        let entry = KeyCount::read(gw, &format!("{}|{}", self.id(), person.id))
            .await
            .map_err(internal)?;
        if entry.over(self.0.cfg.max_failures) {
            return refused("locked", None, false);
        }
        let linked = gw
            .dir
            .directory_account(self.id(), &person.id)
            .await
            .map_err(internal)?;
        if let Some(r) = person.refusal {
            return refused(account_refusal(r), linked, false);
        }
        let asked = std::time::Instant::now();
        let checked = self
            .ask(self.0.check_password(&person.dn, password))
            .await?;
        ldap += asked.elapsed();
        metrics::histogram!("interkom_directory_ldap_seconds", "directory" => self.id().to_owned())
            .record(ldap.as_secs_f64());
        match checked {
            PasswordCheck::Valid => {}
            PasswordCheck::Invalid => {
                entry.failed(gw).await.map_err(internal)?;
                return refused("invalid_credentials", linked, false);
            }
            PasswordCheck::Refused(r) => {
                entry.failed(gw).await.map_err(internal)?;
                return refused(account_refusal(r), linked, false);
            }
        }
        let user = match linked {
            Some(u) => u,
            None => match self.link_or_create(gw, meta, &person).await? {
                Some(u) => u,
                None => return refused("no_account", None, true),
            },
        };
        if !in_subtree(gw, &user.tenant, &self.0.cfg.tenant) {
            return refused("account_outside_directory_tenant", Some(user), true);
        }
        // Locked by a sync while gone from the directory, and back now.
        let user = if !user.is_enabled()
            && gw
                .reactivate(&self.0, &person.id, &user.id)
                .await
                .map_err(internal)?
        {
            gw.dir
                .user(&user.id)
                .await
                .map_err(internal)?
                .unwrap_or(user)
        } else {
            user
        };
        if !user.is_enabled() {
            return refused("account_locked", Some(user), true);
        }
        let renamed = bring_in_step(gw, Some(meta), &self.0, &user, &person)
            .await
            .map_err(internal)?;
        if !renamed {
            return Ok((user, entry));
        }
        let user = gw
            .dir
            .user(&user.id)
            .await
            .map_err(internal)?
            .unwrap_or(user);
        Ok((user, entry))
    }

    /// The account of a first login: an existing one of the same name in
    /// the directory's subtree (when allowed), or a new one.
    async fn link_or_create(
        &self,
        gw: &Gateway,
        meta: &Meta,
        person: &Person,
    ) -> Result<Option<User>, Refusal> {
        account_for(gw, Some(meta), &self.0, person)
            .await
            .map_err(internal)
    }
}

/// The audit reason of an account the directory refuses.
fn account_refusal(r: &str) -> &'static str {
    match r {
        "disabled" => "account_disabled",
        "expired" => "account_expired",
        "locked" => "account_locked_in_directory",
        "password_expired" => "password_expired",
        _ => "account_not_permitted",
    }
}

/// An internal failure (the database) ends the login with the error page,
/// not with a refusal.
fn internal(e: impl Into<GatewayError>) -> Refusal {
    Refusal::Internal(e.into())
}

pub(crate) fn in_subtree(gw: &Gateway, tenant: &str, root: &str) -> bool {
    gw.tenants
        .get(tenant)
        .is_some_and(|t| t.path.iter().any(|p| p == root))
}

/// The account a directory entry gets: linked before, an existing one of
/// the same name (`link_existing`), or a new `<username>@<directory>`;
/// `None` when none may be made. Audited as linked or provisioned.
pub(crate) async fn account_for(
    gw: &Gateway,
    meta: Option<&Meta>,
    d: &DirectorySource,
    person: &Person,
) -> Result<Option<User>, GatewayError> {
    if let Some(u) = gw.dir.directory_account(&d.cfg.id, &person.id).await? {
        // A link from before the directory moved to another tenant acts
        // on nothing outside its subtree now.
        return Ok(in_subtree(gw, &u.tenant, &d.cfg.tenant).then_some(u));
    }
    let existing = if d.cfg.link_existing {
        gw.dir
            .find_user(&person.username)
            .await?
            .filter(|u| in_subtree(gw, &u.tenant, &d.cfg.tenant))
    } else {
        None
    };
    let (user, action) = match existing {
        Some(u) => {
            if !gw
                .dir
                .link_directory_entry(&d.cfg.id, &person.id, &u.id)
                .await?
            {
                // Another first login (or a sync) won the race: its link stands.
                return Ok(gw.dir.directory_account(&d.cfg.id, &person.id).await?);
            }
            (u, Action::AccountLinked)
        }
        None if d.cfg.create_accounts => {
            let clean: String = person
                .username
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(80)
                .collect();
            let clean = if clean.is_empty() {
                "konto".to_owned()
            } else {
                clean
            };
            let candidates: Vec<String> = (0..5)
                .map(|n| match n {
                    0 => format!("{clean}@{}", d.cfg.id),
                    n => format!("{clean}-{n}@{}", d.cfg.id),
                })
                .collect();
            let made = gw
                .dir
                .provision_for_entry(
                    &d.cfg.id,
                    &person.id,
                    &d.cfg.tenant,
                    &candidates,
                    person.name.as_deref(),
                    person.mail.as_deref(),
                )
                .await?;
            match made {
                // Made here (not by a concurrent first login): audited.
                Some((u, true)) => (u, Action::AccountProvisioned),
                other => return Ok(other.map(|(u, _)| u)),
            }
        }
        None => return Ok(None),
    };
    let mut ev = AuditEvent::new(action, Outcome::Success).details(json!({
        "directory": d.cfg.id,
        "username": user.username,
        "entry": person.dn,
    }));
    if let Some(m) = meta {
        ev = ev
            .correlation(m.request_id.clone())
            .source(m.source.clone());
    }
    gw.audit.append(gw.about(ev, &user)).await?;
    Ok(Some(user))
}

/// Name, mail and the roles the mapping manages follow the directory;
/// each role change is its own audit event. True when name or mail
/// changed.
pub(crate) async fn bring_in_step(
    gw: &Gateway,
    meta: Option<&Meta>,
    d: &DirectorySource,
    user: &User,
    person: &Person,
) -> Result<bool, GatewayError> {
    let renamed = person.name.is_some() && person.name != user.name
        || person.mail.is_some() && person.mail != user.email;
    if renamed {
        gw.dir
            .set_profile(
                &user.id,
                person.name.as_deref().or(user.name.as_deref()),
                person.mail.as_deref().or(user.email.as_deref()),
            )
            .await?;
    }
    let groups = if person.refusal.is_some() {
        Vec::new()
    } else {
        person.groups.clone()
    };
    sync_roles(gw, meta, d, user, &groups).await?;
    Ok(renamed)
}

/// Brings the roles the directory's mapping manages in step with `groups`
/// (normalised DNs; none: every mapped role goes).
pub(crate) async fn sync_roles(
    gw: &Gateway,
    meta: Option<&Meta>,
    d: &DirectorySource,
    user: &User,
    groups: &[String],
) -> Result<(), GatewayError> {
    let mapping = d
        .cfg
        .roles
        .iter()
        .map(|(g, r)| (interkom_directory::ldap::entry::norm_dn(g), r.clone()))
        .collect();
    let changes = gw
        .dir
        .sync_source_roles(&user.id, &d.cfg.tenant, &mapping, groups)
        .await?;
    for change in changes {
        let mut ev = AuditEvent::new(Action::RoleChanged, Outcome::Success).details(json!({
            "role": change.role,
            "tenant": change.tenant,
            "change": if change.assigned { "assigned" } else { "removed" },
            "source": format!("directory:{}", d.cfg.id),
        }));
        if let Some(m) = meta {
            ev = ev
                .correlation(m.request_id.clone())
                .source(m.source.clone());
        }
        gw.audit.append(gw.about(ev, user)).await?;
    }
    Ok(())
}
