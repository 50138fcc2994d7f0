//! The admin console: server-rendered pages over the admin API.
//!
//! The console is a Fachverfahren of interkom's own gateway: it logs the
//! administrator in with the authorization code flow and PKCE (client
//! `interkom-console`) and then calls the admin API in-process with the
//! administrator's access token, so every page obeys exactly the rules of
//! the API (scope, four eyes, audit). No JavaScript; every form carries a
//! CSRF token; German by default, English on request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use interkom_directory::crypto::random_token;
use interkom_directory::{Alg, AuthMethod, ClientSpec, Directory, DirectoryError, GrantType};
use minijinja::{context, Environment};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::AdminState;

/// The console's client id at the gateway.
pub const CONSOLE_CLIENT: &str = "interkom-console";
const COOKIE: &str = "interkom_console";
/// Under https the session cookie is host-only and cannot be shadowed.
const HOST_COOKIE: &str = "__Host-interkom_console";
const LANG_COOKIE: &str = "interkom_console_lang";

/// Registers the console at the gateway (a public client with PKCE whose
/// redirect URI follows the issuer), or brings its registration up to date.
pub async fn ensure_client(directory: &Directory, issuer: &str) -> Result<(), DirectoryError> {
    let base = format!("{}{MOUNT}", origin(issuer));
    let spec = ClientSpec {
        id: CONSOLE_CLIENT.into(),
        tenant: directory
            .tenants()
            .iter()
            .find(|t| t.parent.is_none())
            .map(|t| t.id.clone())
            .ok_or_else(|| DirectoryError::Invalid("no Kreis tenant".into()))?,
        name: "interkom Verwaltungskonsole".into(),
        redirect_uris: vec![format!("{base}/callback")],
        post_logout_redirect_uris: vec![format!("{base}/")],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["openid".into(), "profile".into()],
        auth_method: AuthMethod::None,
        secret: None,
        jwks: None,
        id_token_alg: Alg::ES256,
        backchannel_logout_uri: None,
    };
    match directory.client(CONSOLE_CLIENT).await? {
        None => match directory.register_client(spec).await {
            Ok(_) => Ok(()),
            // Another node may have registered it at the same moment.
            Err(DirectoryError::Taken(m)) => match directory.client(CONSOLE_CLIENT).await? {
                Some(_) => Ok(()),
                None => Err(DirectoryError::Taken(m)),
            },
            Err(e) => Err(e),
        },
        // A client of that id that is not the console's: refuse to start
        // rather than take it over.
        Some(c) if c.tenant != spec.tenant || c.auth_method != spec.auth_method => {
            Err(DirectoryError::Invalid(format!(
                "a client `{CONSOLE_CLIENT}` exists that is not interkom's console"
            )))
        }
        Some(c)
            if c.redirect_uris != spec.redirect_uris
                || c.post_logout_redirect_uris != spec.post_logout_redirect_uris
                || c.grant_types != spec.grant_types
                || c.scopes != spec.scopes =>
        {
            directory.update_client(spec).await
        }
        Some(_) => Ok(()),
    }
}

/// Where the console is mounted, beside `/admin/v1`.
pub const MOUNT: &str = "/admin/console";

/// The scheme, host and port of the issuer.
fn origin(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| issuer.trim_end_matches('/').to_owned())
}

/// The console's routes, at [`MOUNT`] (merged into the node's router).
pub fn router(admin: AdminState, issuer: &str) -> Router {
    let issuer = issuer.trim_end_matches('/').to_owned();
    let origin = origin(&issuer);
    let console = Console(Arc::new(Inner {
        api: crate::router(admin.clone()),
        gateway: admin.0.gateway.router(),
        env: templates(),
        secure_cookie: issuer.starts_with("https://"),
        redirect_uri: format!("{origin}{MOUNT}/callback"),
        authorize: format!("{issuer}/authorize"),
        logout: format!("{issuer}/logout"),
        base: MOUNT.to_owned(),
        admin,
    }));
    let at = |p: &str| format!("{MOUNT}{p}");
    Router::new()
        .route(MOUNT, get(|| async { Redirect::to(&format!("{MOUNT}/")) }))
        .route(&at("/"), get(overview))
        .route(&at("/login"), get(login))
        .route(&at("/callback"), get(callback))
        .route(&at("/logout"), post(logout))
        .route(&at("/console.css"), get(stylesheet))
        .route(&at("/users"), get(users).post(users_post))
        .route(&at("/policy"), get(policy).post(policy_post))
        .route(&at("/proposals"), get(proposals).post(proposals_post))
        .route(&at("/grants"), get(grants).post(grants_post))
        .route(&at("/resources"), get(resources).post(resources_post))
        .route(&at("/clients"), get(clients).post(clients_post))
        .route(&at("/upstreams"), get(upstreams).post(upstreams_post))
        .route(&at("/audit"), get(audit))
        .route(&at("/audit/export"), get(audit_export))
        .route(&at("/{*rest}"), get(not_found))
        .with_state(console)
}

#[derive(Clone)]
struct Console(Arc<Inner>);

struct Inner {
    admin: AdminState,
    api: Router,
    gateway: Router,
    env: Environment<'static>,
    secure_cookie: bool,
    redirect_uri: String,
    authorize: String,
    logout: String,
    base: String,
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, src) in [
        ("base.html", include_str!("../templates/base.html")),
        ("overview.html", include_str!("../templates/overview.html")),
        ("users.html", include_str!("../templates/users.html")),
        ("policy.html", include_str!("../templates/policy.html")),
        (
            "proposals.html",
            include_str!("../templates/proposals.html"),
        ),
        ("grants.html", include_str!("../templates/grants.html")),
        (
            "resources.html",
            include_str!("../templates/resources.html"),
        ),
        ("clients.html", include_str!("../templates/clients.html")),
        (
            "upstreams.html",
            include_str!("../templates/upstreams.html"),
        ),
        ("audit.html", include_str!("../templates/audit.html")),
        ("message.html", include_str!("../templates/message.html")),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(error = %e, name, "console template invalid");
        }
    }
    env
}

/// German by default; English when asked (`?lang=en`, remembered).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    De,
    En,
}

impl Lang {
    fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }
}

fn lang_of(headers: &HeaderMap, query: Option<&str>) -> (Lang, bool) {
    let asked = query.and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v)
    });
    if let Some(l) = asked {
        return (if l == "en" { Lang::En } else { Lang::De }, true);
    }
    let cookie = cookie(headers, LANG_COOKIE);
    (
        if cookie.as_deref() == Some("en") {
            Lang::En
        } else {
            Lang::De
        },
        false,
    )
}

/// The console's texts.
fn texts(lang: Lang) -> Value {
    let de = lang == Lang::De;
    let map: serde_json::Map<String, Value> = TEXTS
        .iter()
        .map(|(k, d, e)| {
            (
                (*k).to_owned(),
                Value::String(if de { d } else { e }.to_string()),
            )
        })
        .collect();
    Value::Object(map)
}

/// Key, German, English.
const TEXTS: &[(&str, &str, &str)] = &[
    ("console", "Verwaltungskonsole", "Administration console"),
    ("skip", "Zum Inhalt springen", "Skip to content"),
    ("nav", "Bereiche", "Sections"),
    ("overview", "Übersicht", "Overview"),
    ("users", "Benutzer", "Users"),
    ("policy", "Richtlinie", "Policy"),
    ("proposals", "Freigaben", "Approvals"),
    ("grants", "Berechtigungen", "Grants"),
    ("resources", "Ressourcen", "Resources"),
    ("clients", "Fachverfahren", "Applications"),
    ("audit", "Protokoll", "Audit trail"),
    ("logout", "Abmelden", "Log out"),
    ("language", "English", "Deutsch"),
    ("tenants", "Ihr Verwaltungsbereich", "Your administrative subtree"),
    ("tenant", "Mandant", "Tenant"),
    ("name", "Name", "Name"),
    ("level", "Ebene", "Level"),
    ("chain", "Prüfkette des Protokolls", "Audit chain"),
    ("chain_ok", "unverändert", "intact"),
    ("chain_bad", "verändert ab Nummer", "altered from number"),
    ("chain_none", "nur für Sicherheitsbeauftragte", "security staff only"),
    ("username", "Benutzername", "Username"),
    ("email", "E-Mail", "E-mail"),
    ("roles", "Rollen", "Roles"),
    ("state", "Status", "State"),
    ("locked", "gesperrt", "locked"),
    ("active", "aktiv", "active"),
    ("lock", "Sperren", "Lock"),
    ("unlock", "Entsperren", "Unlock"),
    ("create_user", "Benutzer anlegen", "Create user"),
    ("create", "Anlegen", "Create"),
    ("role_optional", "Rolle im Mandanten (optional)", "Role in the tenant (optional)"),
    ("initial_password", "Erstkennwort (nur jetzt sichtbar)", "Initial password (shown only now)"),
    ("lines", "Zeilen der Richtlinie", "Policy lines"),
    ("line", "Zeile", "Line"),
    ("source", "Herkunft", "Source"),
    ("edit_policy", "Richtlinie ändern", "Change the policy"),
    ("add_lines", "Hinzuzufügende Zeilen (eine je Zeile)", "Lines to add (one per line)"),
    ("remove_lines", "Zu entfernende Zeilen (eine je Zeile)", "Lines to remove (one per line)"),
    ("comment", "Begründung", "Reason"),
    ("preview", "Vorschau der Auswirkungen", "Preview the effect"),
    ("apply", "Anwenden", "Apply"),
    ("flips", "Entscheidungen, die sich ändern würden", "Decisions that would change"),
    ("no_flips", "Keine Entscheidung ändert sich.", "No decision changes."),
    ("subject", "Person", "Subject"),
    ("action", "Aktion", "Action"),
    ("resource", "Ressource", "Resource"),
    ("before", "vorher", "before"),
    ("after", "nachher", "after"),
    ("allowed", "erlaubt", "allowed"),
    ("denied", "verweigert", "denied"),
    ("needs_approval", "Betrifft Daten mit Schutzbedarf „sehr hoch“: wird erst nach Freigabe durch eine zweite Administratorin oder einen zweiten Administrator wirksam.", "Touches data with protection need “sehr hoch”: takes effect only once a second administrator approves."),
    ("applied", "Die Änderung ist wirksam.", "The change is in effect."),
    ("proposed", "Die Änderung wartet auf Freigabe.", "The change awaits approval."),
    ("pending", "Offene Freigaben", "Pending approvals"),
    ("kind", "Art", "Kind"),
    ("proposer", "Vorgeschlagen von", "Proposed by"),
    ("change", "Änderung", "Change"),
    ("approve", "Freigeben", "Approve"),
    ("reject", "Ablehnen", "Reject"),
    ("none", "Keine Einträge.", "No entries."),
    ("grantee", "Empfänger", "Grantee"),
    ("purpose", "Zweck", "Purpose"),
    ("expires", "gültig bis", "expires"),
    ("approver", "Freigegeben von", "Approved by"),
    ("revoke", "Widerrufen", "Revoke"),
    ("protection", "Schutzbedarf (V/I/V)", "Protection need (C/I/A)"),
    ("owner", "Eigentümer", "Owner"),
    ("client", "Fachverfahren", "Application"),
    ("grant_types", "Verfahren", "Grant types"),
    ("filter", "Filter", "Filter"),
    ("from", "von (RFC 3339)", "from (RFC 3339)"),
    ("to", "bis (RFC 3339)", "to (RFC 3339)"),
    ("actor", "Handelnde Person", "Actor"),
    ("outcome", "Ergebnis", "Outcome"),
    ("any", "alle", "any"),
    ("search", "Suchen", "Search"),
    ("time", "Zeit", "Time"),
    ("number", "Nr.", "No."),
    ("target", "Ziel", "Target"),
    ("reason", "Grund", "Reason"),
    ("next_page", "Ältere Einträge", "Older entries"),
    ("export", "Herunterladen", "Download"),
    ("error", "Fehler", "Error"),
    ("back", "Zurück", "Back"),
    ("not_found", "Diese Seite gibt es nicht.", "There is no such page."),
    ("expired", "Die Sitzung ist abgelaufen. Bitte erneut anmelden.", "The session has expired. Please log in again."),
    ("login", "Anmelden", "Log in"),
    ("reset", "Kennwort zurücksetzen", "Reset password"),
    ("remove", "entfernen", "remove"),
    ("assign_role", "Rolle zuweisen", "Assign a role"),
    ("user", "Benutzer", "User"),
    ("role", "Rolle", "Role"),
    ("assign", "Zuweisen", "Assign"),
    ("create_grant", "Berechtigung erteilen", "Grant access"),
    ("actions_hint", "Aktionen (durch Komma getrennt)", "Actions (comma-separated)"),
    ("grantee_hint", "Empfänger (user:Name, Rolle@Mandant oder *@Mandant)", "Grantee (user:name, role@tenant or *@tenant)"),
    ("expires_date", "gültig bis (Datum)", "valid until (date)"),
    ("grant", "Erteilen", "Grant"),
    ("confidentiality", "Vertraulichkeit", "Confidentiality"),
    ("integrity", "Integrität", "Integrity"),
    ("availability", "Verfügbarkeit", "Availability"),
    ("save", "Speichern", "Save"),
    ("new_resource", "Ressource anlegen", "New resource"),
    ("id", "Kennung", "Identifier"),
    ("rotate_secret", "Geheimnis erneuern", "Renew secret"),
    ("new_secret", "Neues Client-Geheimnis (nur jetzt sichtbar)", "New client secret (shown only now)"),
    ("auth_method", "Authentisierung", "Authentication"),
    ("login_failed", "Die Anmeldung an der Konsole ist nicht gelungen.", "Logging in to the console failed."),
    ("csrf", "Das Formular ist abgelaufen oder stammt nicht aus der Konsole. Bitte erneut versuchen.", "The form has expired or does not come from the console. Please try again."),
    ("upstreams", "Anmeldedienste", "Identity providers"),
    ("issuer", "Aussteller (Issuer)", "Issuer"),
    ("client_id", "Client-Kennung", "Client ID"),
    ("client_secret", "Client-Geheimnis (optional)", "Client secret (optional)"),
    ("client_secret_hint", "Leer lassen, um ein gespeichertes Geheimnis zu behalten.", "Leave empty to keep a stored secret."),
    ("id_hint", "Kleinbuchstaben, Ziffern und Bindestriche; eine vorhandene Kennung ersetzt diesen Anmeldedienst.", "Lowercase letters, digits and hyphens; an existing identifier replaces that identity provider."),
    ("domains", "E-Mail-Domänen (durch Leerzeichen getrennt)", "E-mail domains (space-separated)"),
    ("acr_mapping", "Vertrauensniveaus (acr des Dienstes → Ebene)", "Levels of assurance (upstream acr → level)"),
    ("acr_hint", "Eine Zuordnung je Zeile: „acr-Wert = Ebene“ mit der Ebene low, substantial oder high. Über low entscheidet eine Administratorin oder ein Administrator des Kreises.", "One per line: “acr value = level” with the level low, substantial or high. Above low is for an administrator of the Kreis."),
    ("role_mapping", "Rollen (Gruppe → Rolle)", "Roles (group → role)"),
    ("role_hint", "Eine Zuordnung je Zeile: „Gruppe = Rolle“; nur Rollen, die Sie selbst innehaben.", "One per line: “group = role”; only roles you hold yourself."),
    ("groups_claim", "Claim mit den Gruppen (optional)", "Claim with the groups (optional)"),
    ("link_existing", "Erste Anmeldung mit dem vorhandenen Konto gleichen Benutzernamens verknüpfen", "Link a first login to the existing account of the same username"),
    ("save_upstream", "Anmeldedienst hinzufügen oder ersetzen", "Add or replace an identity provider"),
    ("edit", "Bearbeiten", "Edit"),
    ("delete", "Löschen", "Delete"),
    ("deleted", "Der Anmeldedienst ist gelöscht.", "The identity provider is deleted."),
    ("no_acr", "ohne acr", "without acr"),
    ("loa_low", "niedrig", "low"),
    ("loa_substantial", "substanziell", "substantial"),
    ("loa_high", "hoch", "high"),
    ("bad_acr_line", "Diese Zeile hat nicht die Form „acr-Wert = Ebene“ (low, substantial oder high):", "This line is not of the form “acr value = level” (low, substantial or high):"),
    ("bad_role_line", "Diese Zeile hat nicht die Form „Gruppe = Rolle“ oder nennt eine Gruppe zweimal:", "This line is not of the form “group = role” or names a group twice:"),
    ("reset_second_factor", "Zweiten Faktor zurücksetzen", "Reset second factor"),
    ("second_factor_removed", "Der zweite Faktor ist entfernt.", "The second factor is removed."),
    ("second_factor_none", "Kein zweiter Faktor eingerichtet – nichts zu entfernen.", "No second factor set up – nothing to remove."),
    ("truncated", "Es werden die ersten 1.000 Einträge gezeigt; weitere über die Filter der Schnittstelle.", "The first 1,000 entries are shown; narrow down with the API's filters."),
];

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Headers of every console page.
fn secure(h: &mut HeaderMap) {
    let mut set = |k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::CACHE_CONTROL, "no-store");
}

/// A logged-in console session.
struct Session {
    handle_hash: String,
    token: String,
    csrf: String,
    request_id: Option<String>,
}

impl Console {
    fn now(&self) -> i64 {
        self.0.admin.0.gateway.clock().now()
    }

    fn cookie_name(&self) -> &'static str {
        if self.0.secure_cookie {
            HOST_COOKIE
        } else {
            COOKIE
        }
    }

    fn cookie_path(&self) -> &str {
        if self.0.secure_cookie {
            "/"
        } else {
            &self.0.base
        }
    }

    async fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let handle = cookie(headers, self.cookie_name())?;
        let gw = &self.0.admin.0.gateway;
        let hash = gw.handle_hash(&handle);
        let row: Option<(Option<String>, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT access_token, refresh_token, csrf, expires_at FROM console_sessions WHERE handle_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.0.admin.0.pool)
        .await
        .ok()?;
        let (sealed, refresh, csrf, expires_at) = row?;
        let token = if expires_at > self.now() {
            gw.open(&sealed?, &hash)?
        } else {
            // The access token ran out: renew it with the refresh token.
            sealed?;
            self.refresh(&hash, &gw.open(&refresh?, &hash)?).await?
        };
        Some(Session {
            handle_hash: hash,
            token,
            csrf,
            request_id: headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }

    /// A token request at the gateway, in-process.
    async fn token_request(
        &self,
        form: &[(&str, &str)],
        peer: Option<ConnectInfo<SocketAddr>>,
    ) -> (StatusCode, Value) {
        let body = serde_urlencoded::to_string(form).unwrap_or_default();
        let req = Request::builder()
            .method(Method::POST)
            .uri("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body));
        let Ok(mut req) = req else {
            return (StatusCode::INTERNAL_SERVER_ERROR, Value::Null);
        };
        req.extensions_mut()
            .insert(peer.unwrap_or(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 0)))));
        let res = match self.0.gateway.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        };
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1024 * 1024)
            .await
            .unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Renews a session's access token (and rotates its refresh token).
    async fn refresh(&self, hash: &str, refresh_token: &str) -> Option<String> {
        let (status, tokens) = self
            .token_request(
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", CONSOLE_CLIENT),
                ],
                None,
            )
            .await;
        if status != StatusCode::OK {
            return None;
        }
        let access = tokens["access_token"].as_str()?;
        let expires_in = tokens["expires_in"].as_i64()?;
        let gw = &self.0.admin.0.gateway;
        let new_refresh = tokens["refresh_token"].as_str().unwrap_or(refresh_token);
        sqlx::query(
            "UPDATE console_sessions SET access_token = $1, refresh_token = $2, expires_at = $3 WHERE handle_hash = $4",
        )
        .bind(gw.seal(access, hash)?)
        .bind(gw.seal(new_refresh, hash)?)
        .bind(self.now() + expires_in)
        .bind(hash)
        .execute(&self.0.admin.0.pool)
        .await
        .ok()?;
        Some(access.to_owned())
    }

    fn render(
        &self,
        lang: Lang,
        status: StatusCode,
        name: &str,
        ctx: minijinja::Value,
    ) -> Response {
        let full = context! { ..ctx, ..context! {
            t => texts(lang), lang => lang.code(), base => self.0.base.clone(),
            other_lang => if lang == Lang::De { "en" } else { "de" },
        }};
        let html = self.0.env.get_template(name).and_then(|t| t.render(full));
        let mut r = match html {
            Ok(h) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                h,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, name, "console page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "console page failed").into_response()
            }
        };
        secure(r.headers_mut());
        r
    }

    fn message(&self, lang: Lang, status: StatusCode, title: &str, detail: &str) -> Response {
        self.render(lang, status, "message.html", context! { title, detail })
    }

    /// Calls the admin API in-process with the session's token.
    async fn api_raw(
        &self,
        s: &Session,
        method: Method,
        uri: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Response {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", s.token));
        if let Some(id) = &s.request_id {
            req = req.header("x-request-id", id);
        }
        if let Some(m) = if_match {
            req = req.header(header::IF_MATCH, m);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        match req {
            Ok(r) => match self.0.api.clone().oneshot(r).await {
                Ok(res) => res,
                Err(e) => match e {},
            },
            Err(_) => StatusCode::BAD_REQUEST.into_response(),
        }
    }

    /// The API's answer as status, ETag and JSON.
    async fn api(
        &self,
        s: &Session,
        method: Method,
        uri: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        let res = self.api_raw(s, method, uri, body, if_match).await;
        let status = res.status();
        let tag = res
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(res.into_body(), 16 * 1024 * 1024)
            .await
            .unwrap_or_default();
        (
            status,
            tag,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// A page that needs a session: the session, or the way to the login.
macro_rules! session_or_login {
    ($c:expr, $headers:expr) => {
        match $c.session(&$headers).await {
            Some(s) => s,
            None => return Redirect::to(&format!("{}/login", $c.0.base)).into_response(),
        }
    };
}

/// Form fields of a POST, with the CSRF token checked.
fn form(s: &Session, body: &Bytes) -> Option<HashMap<String, String>> {
    let f: HashMap<String, String> = serde_urlencoded::from_bytes(body).ok()?;
    let sent = f.get("csrf")?;
    let ok = sent.len() == s.csrf.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            s.csrf.as_bytes(),
        ));
    ok.then_some(f)
}

fn with_lang_cookie(mut r: Response, lang: Lang, set: bool, c: &Console) -> Response {
    if set {
        let v = format!(
            "{LANG_COOKIE}={}; Path={}; SameSite=Lax; HttpOnly{}",
            lang.code(),
            c.0.base,
            if c.0.secure_cookie { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

async fn login(State(c): State<Console>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let gw = &c.0.admin.0.gateway;
    let handle = random_token(32);
    let hash = gw.handle_hash(&handle);
    let state = random_token(16);
    let verifier = random_token(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let Some(sealed) = gw.seal(&verifier, &hash) else {
        return c.message(
            lang,
            StatusCode::INTERNAL_SERVER_ERROR,
            texts(lang)["error"].as_str().unwrap_or_default(),
            "",
        );
    };
    let now = c.now();
    // Stale sessions go on the way.
    let _ = sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&c.0.admin.0.pool)
        .await;
    let inserted = sqlx::query(
        "INSERT INTO console_sessions (handle_hash, state, verifier, csrf, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&hash)
    .bind(&state)
    .bind(&sealed)
    .bind(random_token(24))
    .bind(now + 600)
    .execute(&c.0.admin.0.pool)
    .await;
    if let Err(e) = inserted {
        tracing::error!(error = %e, "console login failed");
        return c.message(
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            texts(lang)["error"].as_str().unwrap_or_default(),
            "",
        );
    }
    let mut url = match url::Url::parse(&c.0.authorize) {
        Ok(u) => u,
        Err(_) => {
            return c.message(
                lang,
                StatusCode::INTERNAL_SERVER_ERROR,
                texts(lang)["error"].as_str().unwrap_or_default(),
                "",
            )
        }
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CONSOLE_CLIENT)
        .append_pair("redirect_uri", &c.0.redirect_uri)
        .append_pair("scope", "openid profile")
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("ui_locales", lang.code());
    let mut r = Redirect::to(url.as_str()).into_response();
    set_session_cookie(&mut r, &c, &handle);
    with_lang_cookie(r, lang, set, &c)
}

fn set_session_cookie(r: &mut Response, c: &Console, handle: &str) {
    let v = format!(
        "{}={handle}; Path={}; HttpOnly; SameSite=Lax{}",
        c.cookie_name(),
        c.cookie_path(),
        if c.0.secure_cookie { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

async fn callback(State(c): State<Console>, parts: axum::http::request::Parts) -> Response {
    let headers = &parts.headers;
    let (lang, _) = lang_of(headers, None);
    let t = texts(lang);
    let tx = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
    let failed = |status: StatusCode| c.message(lang, status, &tx("error"), &tx("login_failed"));
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let gw = &c.0.admin.0.gateway;
    let Some(handle) = cookie(headers, c.cookie_name()) else {
        return c.message(lang, StatusCode::BAD_REQUEST, &tx("error"), &tx("expired"));
    };
    let hash = gw.handle_hash(&handle);
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT state, verifier, expires_at FROM console_sessions WHERE handle_hash = $1 AND access_token IS NULL",
    )
    .bind(&hash)
    .fetch_optional(&c.0.admin.0.pool)
    .await
    .ok()
    .flatten();
    let (Some((state, sealed, expires_at)), Some(got_state)) = (row, params.get("state")) else {
        return c.message(lang, StatusCode::BAD_REQUEST, &tx("error"), &tx("expired"));
    };
    // The state first: nothing of a response to someone else's login is shown.
    let state_ok = !state.is_empty()
        && state.len() == got_state.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            state.as_bytes(),
            got_state.as_bytes(),
        ));
    if !state_ok || expires_at <= c.now() {
        return c.message(lang, StatusCode::BAD_REQUEST, &tx("error"), &tx("expired"));
    }
    let (Some(code), Some(verifier)) = (params.get("code"), gw.open(&sealed, &hash)) else {
        // The gateway answered with an error (e.g. access_denied).
        return failed(StatusCode::FORBIDDEN);
    };
    // The code is redeemed in-process at the gateway's token endpoint, with
    // the browser's address for the audit trail.
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned();
    let (status, tokens) = c
        .token_request(
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", c.0.redirect_uri.as_str()),
                ("client_id", CONSOLE_CLIENT),
                ("code_verifier", verifier.as_str()),
            ],
            peer,
        )
        .await;
    let (true, Some(access), Some(expires_in)) = (
        status == StatusCode::OK,
        tokens["access_token"].as_str(),
        tokens["expires_in"].as_i64(),
    ) else {
        return failed(if status.is_server_error() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::FORBIDDEN
        });
    };
    // A new handle and a new CSRF token once logged in (no fixation).
    let new_handle = random_token(32);
    let new_hash = gw.handle_hash(&new_handle);
    let refresh = tokens["refresh_token"]
        .as_str()
        .and_then(|r| gw.seal(r, &new_hash));
    let Some(sealed_token) = gw.seal(access, &new_hash) else {
        return failed(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let updated = sqlx::query(
        "UPDATE console_sessions SET handle_hash = $1, access_token = $2, refresh_token = $3, csrf = $4, \
         state = '', verifier = '', expires_at = $5 WHERE handle_hash = $6 AND access_token IS NULL",
    )
    .bind(&new_hash)
    .bind(&sealed_token)
    .bind(refresh)
    .bind(random_token(24))
    .bind(c.now() + expires_in)
    .bind(&hash)
    .execute(&c.0.admin.0.pool)
    .await;
    if !matches!(updated, Ok(ref r) if r.rows_affected() == 1) {
        return c.message(lang, StatusCode::BAD_REQUEST, &tx("error"), &tx("expired"));
    }
    let mut r = Redirect::to(&format!("{}/", c.0.base)).into_response();
    set_session_cookie(&mut r, &c, &new_handle);
    r
}

async fn logout(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let t = texts(lang);
    let Some(s) = c.session(&headers).await else {
        return Redirect::to(&format!("{}/", c.0.base)).into_response();
    };
    // A logout only from the console's own form.
    if form(&s, &body).is_none() {
        return c.message(
            lang,
            StatusCode::FORBIDDEN,
            t["error"].as_str().unwrap_or_default(),
            t["csrf"].as_str().unwrap_or_default(),
        );
    }
    let _ = sqlx::query("DELETE FROM console_sessions WHERE handle_hash = $1")
        .bind(&s.handle_hash)
        .execute(&c.0.admin.0.pool)
        .await;
    // The gateway's logout ends the single sign-on session as well.
    let mut url = match url::Url::parse(&c.0.logout) {
        Ok(u) => u,
        Err(_) => return Redirect::to(&format!("{}/", c.0.base)).into_response(),
    };
    url.query_pairs_mut()
        .append_pair("client_id", CONSOLE_CLIENT);
    let mut r = Redirect::to(url.as_str()).into_response();
    let clear = format!("{}=; Path={}; Max-Age=0", c.cookie_name(), c.cookie_path());
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn csrf_refused(c: &Console, lang: Lang) -> Response {
    let t = texts(lang);
    c.message(
        lang,
        StatusCode::FORBIDDEN,
        t["error"].as_str().unwrap_or_default(),
        t["csrf"].as_str().unwrap_or_default(),
    )
}

fn bad_form(c: &Console, lang: Lang) -> Response {
    let t = texts(lang);
    c.message(
        lang,
        StatusCode::BAD_REQUEST,
        t["error"].as_str().unwrap_or_default(),
        t["not_found"].as_str().unwrap_or_default(),
    )
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../templates/console.css"),
    )
        .into_response()
}

async fn not_found(State(c): State<Console>, headers: HeaderMap) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let t = texts(lang);
    c.message(
        lang,
        StatusCode::NOT_FOUND,
        t["error"].as_str().unwrap_or_default(),
        t["not_found"].as_str().unwrap_or_default(),
    )
}

async fn overview(State(c): State<Console>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    // Security staff who administer nothing still see the chain's status.
    let (status, _, tenants) = c.api(&s, Method::GET, "/tenants", None, None).await;
    let tenants = match status {
        StatusCode::OK => tenants["tenants"].clone(),
        StatusCode::FORBIDDEN => json!([]),
        _ => return with_lang_cookie(problem_page(&c, lang, status, &tenants), lang, set, &c),
    };
    let (vs, _, verify) = c.api(&s, Method::GET, "/audit/verify", None, None).await;
    let verify = (vs == StatusCode::OK).then_some(verify);
    let r = c.render(
        lang,
        StatusCode::OK,
        "overview.html",
        context! {
            page => "overview", csrf => s.csrf, tenants, verify,
        },
    );
    with_lang_cookie(r, lang, set, &c)
}

fn problem_page(c: &Console, lang: Lang, status: StatusCode, p: &Value) -> Response {
    let t = texts(lang);
    c.message(
        lang,
        if status.is_success() {
            StatusCode::BAD_GATEWAY
        } else {
            status
        },
        t["error"].as_str().unwrap_or_default(),
        p["detail"].as_str().unwrap_or_default(),
    )
}

async fn users(State(c): State<Console>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = users_page(&c, &s, lang, None, None).await;
    with_lang_cookie(r, lang, set, &c)
}

async fn users_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    notice: Option<Value>,
    error: Option<String>,
) -> Response {
    let (status, _, users) = c.api(s, Method::GET, "/users?limit=1000", None, None).await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &users);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    c.render(
        lang,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "users.html",
        context! {
            page => "users", csrf => s.csrf, users => users["users"], tenants => tenants["tenants"],
            notice, error,
        },
    )
}

async fn users_post(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("").trim().to_owned();
    match get("op").as_str() {
        "create" => {
            let mut b = json!({ "tenant": get("tenant"), "username": get("username") });
            if !get("name").is_empty() {
                b["name"] = json!(get("name"));
            }
            if !get("email").is_empty() {
                b["email"] = json!(get("email"));
            }
            if !get("role").is_empty() {
                b["roles"] = json!([get("role")]);
            }
            let (status, _, v) = c.api(&s, Method::POST, "/users", Some(b), None).await;
            if status == StatusCode::CREATED {
                let notice =
                    json!({ "username": v["user"]["username"], "password": v["initial_password"] });
                users_page(&c, &s, lang, Some(notice), None).await
            } else {
                users_page(&c, &s, lang, None, v["detail"].as_str().map(str::to_owned)).await
            }
        }
        op @ ("lock" | "unlock") => {
            let id = get("id");
            let uri = format!("/users/{}", urlencode(&id));
            let (_, tag, _) = c.api(&s, Method::GET, &uri, None, None).await;
            let (status, _, v) = c
                .api(
                    &s,
                    Method::PATCH,
                    &uri,
                    Some(json!({ "locked": op == "lock" })),
                    tag.as_deref(),
                )
                .await;
            let error =
                (status != StatusCode::OK).then(|| v["detail"].as_str().unwrap_or("").to_owned());
            users_page(&c, &s, lang, None, error).await
        }
        "reset" => {
            let uri = format!("/users/{}/password-reset", urlencode(&get("id")));
            let (status, _, v) = c.api(&s, Method::POST, &uri, None, None).await;
            match status {
                StatusCode::OK => {
                    let notice =
                        json!({ "username": get("username"), "password": v["initial_password"] });
                    users_page(&c, &s, lang, Some(notice), None).await
                }
                StatusCode::ACCEPTED => {
                    users_page(&c, &s, lang, Some(json!({ "proposed": true })), None).await
                }
                _ => users_page(&c, &s, lang, None, v["detail"].as_str().map(str::to_owned)).await,
            }
        }
        "second_factor_reset" => {
            let uri = format!("/users/{}/second-factor-reset", urlencode(&get("id")));
            let (status, _, v) = c.api(&s, Method::POST, &uri, None, None).await;
            if status == StatusCode::OK {
                let removed = v["removed"].as_bool().unwrap_or(false);
                let notice = json!({
                    "username": get("username"),
                    "second_factor": if removed { "removed" } else { "none" },
                });
                users_page(&c, &s, lang, Some(notice), None).await
            } else {
                users_page(&c, &s, lang, None, Some(detail(status, &v))).await
            }
        }
        op @ ("role_add" | "role_remove") => {
            let uri = format!(
                "/users/{}/roles/{}/{}",
                urlencode(&get("id")),
                urlencode(&get("tenant")),
                urlencode(&get("role"))
            );
            let method = if op == "role_add" {
                Method::PUT
            } else {
                Method::DELETE
            };
            let (status, _, v) = c.api(&s, method, &uri, None, None).await;
            match status {
                StatusCode::OK => users_page(&c, &s, lang, None, None).await,
                StatusCode::ACCEPTED => {
                    users_page(&c, &s, lang, Some(json!({ "proposed": true })), None).await
                }
                _ => users_page(&c, &s, lang, None, v["detail"].as_str().map(str::to_owned)).await,
            }
        }
        _ => bad_form(&c, lang),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn lines_of(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn policy(State(c): State<Console>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = policy_page(&c, &s, lang, context! {}).await;
    with_lang_cookie(r, lang, set, &c)
}

async fn policy_page(c: &Console, s: &Session, lang: Lang, extra: minijinja::Value) -> Response {
    let (status, _, lines) = c
        .api(s, Method::GET, "/policy/lines?limit=1000", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &lines);
    }
    c.render(
        lang,
        StatusCode::OK,
        "policy.html",
        context! {
            ..extra, ..context! {
            page => "policy", csrf => s.csrf, lines => lines["lines"],
            truncated => lines["next_cursor"].is_string(),
        }
        },
    )
}

async fn policy_post(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let (add, remove, comment) = (get("add"), get("remove"), get("comment"));
    let mut change = json!({ "add": lines_of(&add), "remove": lines_of(&remove) });
    if !comment.trim().is_empty() {
        change["comment"] = json!(comment.trim());
    }
    let apply = get("op") == "apply";
    let uri = if apply {
        "/policy/changes"
    } else {
        "/policy/what-if"
    };
    let (status, _, v) = c.api(&s, Method::POST, uri, Some(change), None).await;
    let error = (!status.is_success()).then(|| v["detail"].as_str().unwrap_or("").to_owned());
    let outcome = match (apply, status) {
        (true, StatusCode::OK) => Some("applied"),
        (true, StatusCode::ACCEPTED) => Some("proposed"),
        _ => None,
    };
    policy_page(
        &c,
        &s,
        lang,
        context! {
            add, remove, comment, error, outcome,
            flips => v.get("flips").cloned(),
            requires_approval => v["requires_approval"].as_bool().unwrap_or(false),
        },
    )
    .await
}

async fn proposals(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = proposals_page(&c, &s, lang, None, None).await;
    with_lang_cookie(r, lang, set, &c)
}

async fn proposals_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    error: Option<String>,
    result: Option<Value>,
) -> Response {
    let (status, _, list) = c
        .api(
            s,
            Method::GET,
            "/proposals?status=pending&limit=1000",
            None,
            None,
        )
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let items: Vec<Value> = list["proposals"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut p| {
            p["change_text"] =
                json!(serde_json::to_string_pretty(&p["change"]).unwrap_or_default());
            p
        })
        .collect();
    c.render(
        lang,
        StatusCode::OK,
        "proposals.html",
        context! {
            page => "proposals", csrf => s.csrf, proposals => items, error, result,
        },
    )
}

async fn proposals_post(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let id = f.get("id").cloned().unwrap_or_default();
    let op = match f.get("op").map(String::as_str) {
        Some("approve") => "approve",
        Some("reject") => "reject",
        _ => return bad_form(&c, lang),
    };
    let uri = format!("/proposals/{}/{op}", urlencode(&id));
    let (status, _, v) = c.api(&s, Method::POST, &uri, None, None).await;
    let error = (!status.is_success()).then(|| v["detail"].as_str().unwrap_or("").to_owned());
    let result = status.is_success().then_some(v);
    proposals_page(&c, &s, lang, error, result).await
}

async fn grants(State(c): State<Console>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = grants_page(&c, &s, lang, None).await;
    with_lang_cookie(r, lang, set, &c)
}

async fn grants_page(c: &Console, s: &Session, lang: Lang, error: Option<String>) -> Response {
    let (status, _, list) = c
        .api(s, Method::GET, "/grants?limit=1000", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, resources) = c
        .api(s, Method::GET, "/resources?limit=1000", None, None)
        .await;
    c.render(
        lang,
        StatusCode::OK,
        "grants.html",
        context! {
            page => "grants", csrf => s.csrf, grants => list["grants"], error,
            resources => resources["resources"],
        truncated => list["next_cursor"].is_string(),
        },
    )
}

async fn grants_post(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let id = f.get("id").cloned().unwrap_or_default();
    let op = match f.get("op").map(String::as_str) {
        Some("approve") => "approve",
        Some("revoke") => "revoke",
        Some("create") => {
            let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("").trim().to_owned();
            let actions: Vec<String> = get("actions")
                .split([',', ' '])
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            let body = json!({
                "grantee": get("grantee"), "resource": get("resource"), "actions": actions,
                "purpose": get("purpose"), "expires_at": format!("{}T23:59:59Z", get("expires")),
            });
            let (status, _, v) = c.api(&s, Method::POST, "/grants", Some(body), None).await;
            let error =
                (!status.is_success()).then(|| v["detail"].as_str().unwrap_or("").to_owned());
            return grants_page(&c, &s, lang, error).await;
        }
        _ => return bad_form(&c, lang),
    };
    let (status, _, v) = c
        .api(
            &s,
            Method::POST,
            &format!("/grants/{}/{op}", urlencode(&id)),
            None,
            None,
        )
        .await;
    let error = (!status.is_success()).then(|| v["detail"].as_str().unwrap_or("").to_owned());
    grants_page(&c, &s, lang, error).await
}

async fn resources(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = resources_page(&c, &s, lang, None, None).await;
    with_lang_cookie(r, lang, set, &c)
}

async fn resources_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    error: Option<String>,
    outcome: Option<&str>,
) -> Response {
    let (status, _, list) = c
        .api(s, Method::GET, "/resources?limit=1000", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    c.render(
        lang,
        StatusCode::OK,
        "resources.html",
        context! {
            page => "resources", csrf => s.csrf, resources => list["resources"],
            tenants => tenants["tenants"], needs => ["normal", "hoch", "sehr_hoch"], error, outcome,
            truncated => list["next_cursor"].is_string(),
        },
    )
}

/// Creates a resource or changes its protection need (with If-Match).
async fn resources_post(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("").trim().to_owned();
    let uri = format!("/resources/{}", urlencode(&get("id")));
    let (found, tag, current) = c.api(&s, Method::GET, &uri, None, None).await;
    let exists = found == StatusCode::OK;
    let mut body = if exists {
        let mut b = current;
        if let Some(o) = b.as_object_mut() {
            o.remove("id");
        }
        b
    } else {
        json!({ "kind": get("kind"), "name": get("name"), "owner": get("owner") })
    };
    body["protection"] = json!({ "c": get("c"), "i": get("i"), "a": get("a") });
    let if_match = if exists { tag.as_deref() } else { None };
    let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(body), if_match).await;
    let (error, outcome) = match status {
        StatusCode::OK | StatusCode::CREATED => (None, Some("applied")),
        StatusCode::ACCEPTED => (None, Some("proposed")),
        _ => (v["detail"].as_str().map(str::to_owned), None),
    };
    resources_page(&c, &s, lang, error, outcome).await
}

async fn clients(State(c): State<Console>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = clients_page(&c, &s, lang, None, None).await;
    with_lang_cookie(r, lang, set, &c)
}

async fn clients_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    error: Option<String>,
    secret: Option<Value>,
) -> Response {
    let (status, _, list) = c
        .api(s, Method::GET, "/clients?limit=1000", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    c.render(
        lang,
        StatusCode::OK,
        "clients.html",
        context! {
            page => "clients", csrf => s.csrf, clients => list["clients"], error, secret,
            truncated => list["next_cursor"].is_string(),
        },
    )
}

/// Renews a confidential client's secret, shown once.
async fn clients_post(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let id = f.get("id").cloned().unwrap_or_default();
    let uri = format!("/clients/{}/secret", urlencode(&id));
    let (status, _, v) = c.api(&s, Method::POST, &uri, None, None).await;
    if status == StatusCode::OK {
        let secret = json!({ "client": id, "secret": v["client_secret"] });
        clients_page(&c, &s, lang, None, Some(secret)).await
    } else {
        clients_page(&c, &s, lang, v["detail"].as_str().map(str::to_owned), None).await
    }
}

/// The API's reason for a refusal, or its status when it gave none.
fn detail(status: StatusCode, v: &Value) -> String {
    v["detail"]
        .as_str()
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| status.to_string())
}

async fn upstreams(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    // `?edit=<id>` fills the form with that upstream.
    let edit = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "edit")
        .map(|(_, v)| v);
    let r = upstreams_page(&c, &s, lang, UpstreamsView::Edit(edit)).await;
    with_lang_cookie(r, lang, set, &c)
}

/// What the upstreams page shows besides the list.
enum UpstreamsView {
    /// The form empty, or filled with the upstream of this id.
    Edit(Option<String>),
    /// The outcome of a change (`applied`, `deleted`).
    Done(&'static str),
    /// A refusal of the API (its status and detail), the form as sent.
    Refused(StatusCode, String, Value),
    /// A mapping line the console could not read, the form as sent.
    BadLine(&'static str, String, Value),
}

async fn upstreams_page(c: &Console, s: &Session, lang: Lang, view: UpstreamsView) -> Response {
    let (status, _, list) = c.api(s, Method::GET, "/upstreams", None, None).await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    let (mut code, mut error, mut outcome, mut bad_line, mut form) =
        (StatusCode::OK, None, None, None, json!({}));
    match view {
        UpstreamsView::Edit(id) => {
            if let Some(u) = list["upstreams"]
                .as_array()
                .and_then(|l| l.iter().find(|u| u["id"].as_str() == id.as_deref()))
            {
                form = upstream_form_of(u);
            }
        }
        UpstreamsView::Done(o) => outcome = Some(o),
        UpstreamsView::Refused(st, d, f) => {
            code = if st.is_client_error() {
                st
            } else {
                StatusCode::BAD_GATEWAY
            };
            error = Some(d);
            form = f;
        }
        UpstreamsView::BadLine(key, line, f) => {
            code = StatusCode::BAD_REQUEST;
            bad_line = Some(json!({ "key": key, "line": line }));
            form = f;
        }
    }
    c.render(
        lang,
        code,
        "upstreams.html",
        context! {
            page => "upstreams", csrf => s.csrf, upstreams => list["upstreams"],
            tenants => tenants["tenants"], error, outcome, bad_line, form,
        },
    )
}

/// An upstream as the form's fields.
fn upstream_form_of(u: &Value) -> Value {
    let lines = |m: &Value| -> String {
        m.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k} = {}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let domains: Vec<&str> = u["domains"]
        .as_array()
        .map(|d| d.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    json!({
        "id": u["id"], "tenant": u["tenant"], "name": u["name"], "issuer": u["issuer"],
        "client_id": u["client_id"], "domains": domains.join(" "), "acr": lines(&u["acr"]),
        "roles": lines(&u["roles"]), "groups": u["claims"]["groups"],
        "link_existing": u["link_existing"].as_bool().unwrap_or(false),
    })
}

/// Lines `key = value` as a map; a line that is not one (or repeats a
/// key) is the error. The value is the text after the last `=` (group
/// names may be distinguished names with `=` in them).
fn mapping_lines(
    text: &str,
    value: impl Fn(&str) -> Option<String>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut map = serde_json::Map::new();
    for line in lines_of(text) {
        let parsed = line.rsplit_once('=').and_then(|(k, v)| {
            let k = k.trim();
            let v = value(v.trim())?;
            (!k.is_empty() && !map.contains_key(k)).then(|| (k.to_owned(), v))
        });
        match parsed {
            Some((k, v)) => {
                map.insert(k, Value::String(v));
            }
            None => return Err(line),
        }
    }
    Ok(map)
}

/// A level of assurance as the API names it (German names accepted).
fn level(v: &str) -> Option<&'static str> {
    match v.to_lowercase().as_str() {
        "low" | "niedrig" => Some("low"),
        "substantial" | "substanziell" => Some("substantial"),
        "high" | "hoch" => Some("high"),
        _ => None,
    }
}

/// Adds, replaces or deletes an upstream.
async fn upstreams_post(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("").trim().to_owned();
    let uri = format!("/upstreams/{}", urlencode(&get("id")));
    match get("op").as_str() {
        "delete" => {
            let (status, _, v) = c.api(&s, Method::DELETE, &uri, None, None).await;
            let view = if status.is_success() {
                UpstreamsView::Done("deleted")
            } else {
                UpstreamsView::Refused(status, detail(status, &v), json!({}))
            };
            upstreams_page(&c, &s, lang, view).await
        }
        "save" => {
            // The form as sent (without the secret), shown again on a refusal.
            let sent = json!({
                "id": get("id"), "tenant": get("tenant"), "name": get("name"),
                "issuer": get("issuer"), "client_id": get("client_id"),
                "domains": get("domains"), "acr": get("acr"), "roles": get("roles"),
                "groups": get("groups"), "link_existing": f.contains_key("link_existing"),
            });
            let acr = match mapping_lines(&get("acr"), |v| level(v).map(str::to_owned)) {
                Ok(m) => m,
                Err(line) => {
                    let view = UpstreamsView::BadLine("bad_acr_line", line, sent);
                    return upstreams_page(&c, &s, lang, view).await;
                }
            };
            let roles =
                match mapping_lines(&get("roles"), |r| (!r.is_empty()).then(|| r.to_owned())) {
                    Ok(m) => m,
                    Err(line) => {
                        let view = UpstreamsView::BadLine("bad_role_line", line, sent);
                        return upstreams_page(&c, &s, lang, view).await;
                    }
                };
            // A replacement keeps what the form does not show (scopes,
            // default level, timeouts, the other claims) as they are.
            let (found, _, current) = c.api(&s, Method::GET, &uri, None, None).await;
            let mut b = match current {
                Value::Object(mut o) if found == StatusCode::OK => {
                    o.remove("has_client_secret");
                    Value::Object(o)
                }
                _ => json!({}),
            };
            let domains: Vec<&str> = sent["domains"]
                .as_str()
                .unwrap_or_default()
                .split([' ', ',', '\n', '\t'])
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .collect();
            for k in [
                "id",
                "tenant",
                "name",
                "issuer",
                "client_id",
                "link_existing",
            ] {
                b[k] = sent[k].clone();
            }
            b["domains"] = json!(domains);
            b["acr"] = Value::Object(acr);
            b["roles"] = Value::Object(roles);
            let groups = get("groups");
            if b["claims"].is_object() {
                b["claims"]["groups"] = if groups.is_empty() {
                    Value::Null
                } else {
                    json!(groups)
                };
            } else if !groups.is_empty() {
                b["claims"] = json!({ "groups": groups });
            }
            let secret = f.get("client_secret").map(String::as_str).unwrap_or("");
            if !secret.is_empty() {
                b["client_secret"] = json!(secret);
            }
            let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(b), None).await;
            let view = if status.is_success() {
                UpstreamsView::Done("applied")
            } else {
                UpstreamsView::Refused(status, detail(status, &v), sent)
            };
            upstreams_page(&c, &s, lang, view).await
        }
        _ => bad_form(&c, lang),
    }
}

/// The audit filter's fields, passed through to the API.
const AUDIT_FIELDS: &[&str] = &[
    "tenant",
    "from",
    "to",
    "actor",
    "action",
    "outcome",
    "client",
    "correlation_id",
    "cursor",
];

fn audit_query(q: Option<&str>, extra: &[(&str, &str)]) -> (String, HashMap<String, String>) {
    let all: Vec<(String, String)> =
        serde_urlencoded::from_str(q.unwrap_or("")).unwrap_or_default();
    let kept: HashMap<String, String> = all
        .into_iter()
        .filter(|(k, v)| AUDIT_FIELDS.contains(&k.as_str()) && !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect();
    let mut pairs: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.sort();
    pairs.extend_from_slice(extra);
    (
        serde_urlencoded::to_string(&pairs).unwrap_or_default(),
        kept,
    )
}

async fn audit(State(c): State<Console>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let (query, filter) = audit_query(q.as_deref(), &[("limit", "50")]);
    let (status, _, page) = c
        .api(
            &s,
            Method::GET,
            &format!("/audit/events?{query}"),
            None,
            None,
        )
        .await;
    let error = (!status.is_success()).then(|| page["detail"].as_str().unwrap_or("").to_owned());
    let mut next = None;
    if let Some(cur) = page["next_cursor"].as_str() {
        let mut f: Vec<(&str, &str)> = filter
            .iter()
            .filter(|(k, _)| k.as_str() != "cursor")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        f.push(("cursor", cur));
        next = serde_urlencoded::to_string(&f).ok();
    }
    let (export_q, _) = audit_query(q.as_deref(), &[]);
    let export_q: String = serde_urlencoded::from_str::<Vec<(String, String)>>(&export_q)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| format!("{}={}&", urlencode(&k), urlencode(&v)))
        .collect();
    let actions: Vec<&str> = interkom_audit::Action::ALL
        .iter()
        .map(|a| a.as_str())
        .collect();
    let r = c.render(lang, if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, "audit.html", context! {
        page => "audit", csrf => s.csrf, events => page["events"], filter, next, export_q, error, actions,
    });
    with_lang_cookie(r, lang, set, &c)
}

async fn audit_export(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = session_or_login!(c, headers);
    let format = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v)
        .filter(|f| f == "csv")
        .unwrap_or_else(|| "jsonl".into());
    let (query, _) = audit_query(q.as_deref(), &[("format", format.as_str())]);
    let query: String = serde_urlencoded::from_str::<Vec<(String, String)>>(&query)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| format!("{}={}", urlencode(&k), urlencode(&v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut r = c
        .api_raw(
            &s,
            Method::GET,
            &format!("/audit/export?{query}"),
            None,
            None,
        )
        .await;
    secure(r.headers_mut());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_names_only_known_texts() {
        let env = templates();
        for name in [
            "base.html",
            "overview.html",
            "users.html",
            "policy.html",
            "proposals.html",
            "grants.html",
            "resources.html",
            "clients.html",
            "upstreams.html",
            "audit.html",
            "message.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        let mut keys: Vec<&str> = TEXTS.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), TEXTS.len(), "a text key twice");
        assert!(TEXTS.iter().all(|(_, d, e)| !d.is_empty() && !e.is_empty()));
        // Every text a template names exists.
        let sources = [
            include_str!("../templates/base.html"),
            include_str!("../templates/overview.html"),
            include_str!("../templates/users.html"),
            include_str!("../templates/policy.html"),
            include_str!("../templates/proposals.html"),
            include_str!("../templates/grants.html"),
            include_str!("../templates/audit.html"),
            include_str!("../templates/message.html"),
            include_str!("../templates/resources.html"),
            include_str!("../templates/clients.html"),
            include_str!("../templates/upstreams.html"),
        ];
        for src in sources {
            for part in src.split("t.").skip(1) {
                let key: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !key.is_empty() && src.contains(&format!("{{{{ t.{key}")) {
                    assert!(keys.contains(&key.as_str()), "missing text `{key}`");
                }
            }
        }
    }

    #[test]
    fn mapping_lines_are_read_strictly() {
        let acr = |t: &str| mapping_lines(t, |v| level(v).map(str::to_owned));
        let m = acr("urn:hitzacker:eid = high\n\n  pwd=Niedrig \n").unwrap();
        assert_eq!(
            Value::Object(m),
            json!({ "urn:hitzacker:eid": "high", "pwd": "low" })
        );
        assert_eq!(acr("x = sehr hoch"), Err("x = sehr hoch".to_owned()));
        assert_eq!(acr("no level"), Err("no level".to_owned()));
        assert_eq!(acr(" = high"), Err("= high".to_owned()));
        assert_eq!(acr("a = low\na = high"), Err("a = high".to_owned()));
        // Group names may be distinguished names.
        let roles = mapping_lines("cn=ordnungsamt,ou=groups = sachbearbeitung", |r| {
            (!r.is_empty()).then(|| r.to_owned())
        })
        .unwrap();
        assert_eq!(
            Value::Object(roles),
            json!({ "cn=ordnungsamt,ou=groups": "sachbearbeitung" })
        );
    }

    #[test]
    fn the_upstreams_page_renders_its_mappings() {
        let u = json!({
            "id": "idp-hitzacker", "tenant": "hitzacker-elbe", "name": "Stadt <Hitzacker>",
            "issuer": "https://login.hitzacker.example", "client_id": "interkom",
            "scopes": ["openid"], "domains": ["hitzacker.example", "elbe.example"],
            "claims": { "subject": "sub", "groups": "groups" },
            "roles": { "ordnungsamt": "sachbearbeitung" },
            "acr": { "urn:hitzacker:eid": "high", "urn:hitzacker:pwd": "low" },
            "default_loa": "low", "link_existing": true, "create_accounts": true,
            "timeout_seconds": 10, "propagate_logout": true, "has_client_secret": true,
        });
        let env = templates();
        let html = env
            .get_template("upstreams.html")
            .and_then(|t| {
                t.render(context! {
                    t => texts(Lang::De), lang => "de", base => MOUNT, other_lang => "en",
                    page => "upstreams", csrf => "tok", upstreams => json!([u.clone()]),
                    tenants => json!([{ "id": "hitzacker-elbe", "name": "Hitzacker (Elbe), Stadt" }]),
                    form => upstream_form_of(&u), outcome => "deleted",
                    bad_line => json!({ "key": "bad_acr_line", "line": "x = y" }),
                })
            })
            .unwrap();
        assert!(html.contains("<code>urn:hitzacker:eid</code>"));
        assert!(html.contains("hoch"));
        assert!(html.contains("Stadt &lt;Hitzacker&gt;"));
        assert!(
            html.contains("urn:hitzacker:pwd = low\nurn:hitzacker:eid = high")
                || html.contains("urn:hitzacker:eid = high\nurn:hitzacker:pwd = low")
        );
        assert!(html.contains("value=\"hitzacker.example elbe.example\""));
        assert!(html.contains(" checked"));
        assert!(html.contains("Der Anmeldedienst ist gelöscht."));
        assert!(html.contains("<code>x = y</code>"));
        assert!(html.contains("aria-current=\"page\">Anmeldedienste"));
        // Without a form (no upstream to edit): empty fields.
        let empty = env
            .get_template("upstreams.html")
            .and_then(|t| {
                t.render(context! {
                    t => texts(Lang::En), lang => "en", base => MOUNT, other_lang => "de",
                    page => "upstreams", csrf => "tok", upstreams => json!([]),
                    tenants => json!([]), form => json!({}),
                })
            })
            .unwrap();
        assert!(empty.contains("No entries."));
    }

    #[test]
    fn the_users_page_says_what_a_second_factor_reset_did() {
        let env = templates();
        for (what, text) in [
            ("removed", "The second factor is removed."),
            ("none", "No second factor set up – nothing to remove."),
        ] {
            let html = env
                .get_template("users.html")
                .and_then(|t| {
                    t.render(context! {
                        t => texts(Lang::En), lang => "en", base => MOUNT, other_lang => "de",
                        page => "users", csrf => "tok", tenants => json!([]),
                        users => json!([{ "id": "u1", "username": "jan.meyer", "tenant": "hitzacker-elbe", "roles": [] }]),
                        notice => json!({ "username": "jan.meyer", "second_factor": what }),
                    })
                })
                .unwrap();
            assert!(html.contains(&format!("jan.meyer: {text}")), "{what}");
            assert!(html.contains("value=\"second_factor_reset\""));
        }
    }

    #[test]
    fn the_audit_filter_passes_only_known_fields() {
        let (q, kept) = audit_query(
            Some("action=login&evil=1&actor=%20&lang=en"),
            &[("limit", "50")],
        );
        assert_eq!(q, "action=login&limit=50");
        assert_eq!(kept.len(), 1);
    }
}
