//! The harness: start a node, act as a browser, act as a relying party.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use interkom::{App, FileConfig};
use interkom_gateway::Clock;
use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{ClientId, ClientSecret, IssuerUrl, RedirectUrl};
use serde_json::Value;
use tokio::sync::oneshot;

pub const PORTAL: &str = "serviceportal";
pub const PORTAL_SECRET: &str = "serviceportal-demo-secret-0123456789abcdef";
pub const PORTAL_REDIRECT: &str = "http://localhost:9000/callback";
pub const PORTAL_LOGOUT: &str = "http://localhost:9000/";
pub const RATSINFO: &str = "ratsinfo-hitzacker";
pub const RATSINFO_REDIRECT: &str = "http://localhost:9002/callback";
pub const KFZ: &str = "kfz-backend";
pub const KFZ_SECRET: &str = "kfz-backend-demo-secret-0123456789abcdefgh";
pub const ADMIN_USER: &str = "kreis.admin";
pub const ADMIN_PASSWORD: &str = "Kreis-Demo-2026!";
pub const CLERK_USER: &str = "jan.meyer";
pub const CLERK_PASSWORD: &str = "Hitzacker-Demo-2026!";

pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Which database the suite runs on.
pub fn backend() -> &'static str {
    match std::env::var("INTERKOM_TEST_DB").as_deref() {
        Ok("postgres") => "postgres",
        _ => "sqlite",
    }
}

/// A fresh, empty database URL for one test.
pub async fn fresh_database() -> String {
    let name = format!("ik_{}", uuid::Uuid::new_v4().simple());
    if backend() == "postgres" {
        let base = std::env::var("INTERKOM_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("{base}/postgres"))
            .await
            .expect("PostgreSQL reachable");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        format!("{base}/{name}")
    } else {
        let dir = std::env::temp_dir().join("interkom-tests");
        std::fs::create_dir_all(&dir).unwrap();
        format!("sqlite://{}/{name}.db", dir.display())
    }
}

pub struct TestServer {
    pub issuer: String,
    pub app: App,
    pub clock: Clock,
    pub database_url: String,
    pub kek: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

/// The checkpoint key every test node signs with (PKCS#8, base64url).
pub fn checkpoint_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        URL_SAFE_NO_PAD.encode(interkom_audit::CheckpointKey::generate_pkcs8().unwrap())
    })
    .clone()
}

/// The demo configuration with its keys inline: validating it must not
/// create key files wherever the tests run.
pub fn base_config() -> FileConfig {
    let mut fc = FileConfig::load(&repo_root().join("config/interkom.toml")).unwrap();
    inline_keys(&mut fc);
    // The suites test administration's rules with password logins; the
    // second factor administration asks by default is tested on its own
    // (`security::finding_9_…`).
    fc.admin.required_acr = interkom_policy::Loa::Low;
    fc
}

pub fn inline_keys(fc: &mut FileConfig) {
    fc.key_encryption_key = Some(interkom_directory::MasterKey::generate().to_base64().into());
    fc.key_encryption_key_file = None;
    fc.audit.checkpoint_key = Some(checkpoint_key());
    fc.audit.checkpoint_key_file = None;
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a node on the demo configuration with a fresh database;
    /// `tweak` may change the configuration first.
    pub async fn start_with(tweak: impl FnOnce(&mut FileConfig)) -> TestServer {
        let url = fresh_database().await;
        Self::start_on(url, None, tweak).await
    }

    /// Starts a node on an existing database (another node's, say).
    pub async fn start_on(
        database_url: String,
        kek: Option<String>,
        tweak: impl FnOnce(&mut FileConfig),
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let kek = kek.unwrap_or_else(|| interkom_directory::MasterKey::generate().to_base64());
        let mut fc = base_config();
        fc.listen = addr.to_string();
        fc.issuer = issuer.clone();
        fc.database_url = interkom::config::DatabaseUrl::new(database_url.clone());
        fc.key_encryption_key = Some(kek.clone().into());
        fc.key_encryption_key_file = None;
        fc.audit.checkpoint_key = Some(checkpoint_key());
        fc.audit.checkpoint_key_file = None;
        fc.log = "warn".into();
        fc.policy_dir = repo_root().join("policies");
        tweak(&mut fc);
        // A tweak may name the host differently (e.g. `localhost`, so that
        // two nodes in one browser keep their cookies apart).
        let issuer = fc.issuer.clone();
        let config = fc.validate().unwrap();
        let clock = Clock::default();
        let app = App::open(config, clock.clone()).await.unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let serving = app.clone();
        tokio::spawn(async move {
            interkom::serve(&serving, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            issuer,
            app,
            clock,
            database_url,
            kek,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// The relying party's HTTP client: no redirects followed (SSRF, and
    /// the tests look at every redirect themselves).
    pub fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub async fn metadata(&self) -> CoreProviderMetadata {
        CoreProviderMetadata::discover_async(
            IssuerUrl::new(self.issuer.clone()).unwrap(),
            &Self::http(),
        )
        .await
        .unwrap()
    }

    /// An `openidconnect` client for a registered client of this node.
    pub async fn rp(
        &self,
        client_id: &str,
        secret: Option<&str>,
        redirect: &str,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            self.metadata().await,
            ClientId::new(client_id.into()),
            secret.map(|s| ClientSecret::new(s.into())),
        )
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap())
    }

    /// Audit events with this action, newest first.
    pub async fn audit(&self, action: &str) -> Vec<interkom_audit::StoredEvent> {
        interkom_audit::query(
            &self.app.pool,
            &interkom_audit::AuditQuery {
                action: Some(action.into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
    }

    pub async fn post_form(
        &self,
        path: &str,
        auth: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = Self::http().post(self.url(path)).form(form);
        if let Some((id, secret)) = auth {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.unwrap()
    }
}

/// The user's browser: keeps cookies, follows no redirects.
pub struct Browser {
    pub http: reqwest::Client,
    pub accept_language: Option<&'static str>,
}

/// What the login page carries.
pub struct LoginForm {
    pub action: String,
    pub fields: HashMap<String, String>,
    pub html: String,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .unwrap(),
            accept_language: None,
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        let mut r = self.http.get(url);
        if let Some(l) = self.accept_language {
            r = r.header("accept-language", l);
        }
        r.send().await.unwrap()
    }

    /// Opens the authorization URL and expects the login form.
    pub async fn open_login(&self, server: &TestServer, url: &str) -> LoginForm {
        let res = self.get(url).await;
        assert_eq!(res.status(), 200, "expected the login page");
        let html = res.text().await.unwrap();
        parse_form(server, &html)
    }

    pub async fn submit(
        &self,
        form: &LoginForm,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        let mut fields = form.fields.clone();
        fields.insert("username".into(), username.into());
        fields.insert("password".into(), password.into());
        self.http
            .post(&form.action)
            .form(&fields)
            .send()
            .await
            .unwrap()
    }

    /// Logs in through the form; returns the redirect's query parameters.
    pub async fn login(
        &self,
        server: &TestServer,
        auth_url: &str,
        user: &str,
        password: &str,
    ) -> HashMap<String, String> {
        let form = self.open_login(server, auth_url).await;
        let res = self.submit(&form, user, password).await;
        if res.status() != 303 {
            let status = res.status();
            let page = res.text().await.unwrap_or_default();
            panic!("login must answer 303 See Other, not {status}: {page}");
        }
        redirect_params(&res)
    }
}

impl Browser {
    /// Logs in through the form and, if the client asks, agrees on the
    /// consent page; returns the redirect's query parameters.
    pub async fn login_consenting(
        &self,
        server: &TestServer,
        auth_url: &str,
        user: &str,
        password: &str,
    ) -> HashMap<String, String> {
        let form = self.open_login(server, auth_url).await;
        let res = self.submit(&form, user, password).await;
        let res = if res.status() == 200 {
            let page = res.text().await.unwrap();
            assert!(page.contains("/login/consent"), "a consent page: {page}");
            self.consent(server, &page, "allow").await
        } else {
            res
        };
        assert_eq!(res.status(), 303);
        redirect_params(&res)
    }

    /// Answers a consent page with `decision` (`allow` or `deny`).
    pub async fn consent(
        &self,
        server: &TestServer,
        page: &str,
        decision: &str,
    ) -> reqwest::Response {
        self.http
            .post(server.url("/login/consent"))
            .form(&[
                ("login_request", hidden(page, "login_request")),
                ("csrf_token", hidden(page, "csrf_token")),
                ("decision", decision.to_owned()),
            ])
            .send()
            .await
            .unwrap()
    }
}

pub fn parse_form(server: &TestServer, html: &str) -> LoginForm {
    parse_form_at(&server.issuer, html)
}

/// The form of a page served under `base` (relative actions resolved there).
pub fn parse_form_at(base: &str, html: &str) -> LoginForm {
    // The password form where the page has one (a login page also offers
    // the Kommunen's IdPs in forms of their own), else the first.
    let password_form = html
        .match_indices("<form")
        .map(|(i, _)| &html[i..])
        .find(|f| {
            let end = f.find("</form>").unwrap_or(f.len());
            f[..end].contains("type=\"password\"")
        });
    let action = attr_after(password_form.unwrap_or(html), "<form", "action").expect("form action");
    let mut fields = HashMap::new();
    let mut rest = html;
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>').unwrap() + i;
        let tag = &rest[i..tag_end];
        if tag.contains("type=\"hidden\"") {
            let name = attr_after(tag, "<input", "name").unwrap();
            let value = attr_after(tag, "<input", "value").unwrap_or_default();
            fields.insert(name, value);
        }
        rest = &rest[tag_end..];
    }
    LoginForm {
        action: if action.starts_with("http") {
            action
        } else {
            format!("{base}{action}")
        },
        fields,
        html: html.to_owned(),
    }
}

fn attr_after(html: &str, tag: &str, attr: &str) -> Option<String> {
    let start = html.find(tag)?;
    let key = format!("{attr}=\"");
    let i = html[start..].find(&key)? + start + key.len();
    let j = html[i..].find('"')? + i;
    Some(
        html[i..j]
            .replace("&amp;", "&")
            .replace("&#x2f;", "/")
            .replace("&#x3d;", "="),
    )
}

pub fn location(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
}

pub fn redirect_params(res: &reqwest::Response) -> HashMap<String, String> {
    let loc = location(res).expect("a Location header");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The unverified payload of a JWT (for claims the RP library does not type).
pub fn jwt_payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

pub fn jwt_header(jwt: &str) -> Value {
    let p = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// A PKCE pair (verifier, S256 challenge) built by hand for raw requests.
pub fn pkce() -> (String, String) {
    use sha2::Digest;
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A raw authorization URL.
pub fn authorize_url(server: &TestServer, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&server.url("/authorize")).unwrap();
    u.query_pairs_mut().extend_pairs(params);
    u.to_string()
}

/// Logs `user` in for the confidential portal client with raw requests and
/// exchanges the code; returns the token response.
pub async fn portal_tokens(
    server: &TestServer,
    browser: &Browser,
    user: &str,
    password: &str,
) -> Value {
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_REDIRECT),
            ("scope", "openid profile email"),
            ("state", "s1"),
            ("nonce", "n1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let q = browser.login(server, &url, user, password).await;
    let res = exchange_code(server, (PORTAL, PORTAL_SECRET), &q["code"], &verifier).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A code exchange by a confidential client redirecting to the portal's URI.
pub async fn exchange_code(
    server: &TestServer,
    client: (&str, &str),
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    server
        .post_form(
            "/token",
            Some(client),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", PORTAL_REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await
}

/// The node's published keys.
pub async fn jwks(server: &TestServer) -> jsonwebtoken::jwk::JwkSet {
    TestServer::http()
        .get(server.url("/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Logs `user` in at the admin console's client (public, PKCE) and returns
/// the access token, as the console obtains it.
pub async fn console_token(server: &TestServer, user: &str, password: &str) -> String {
    let (verifier, challenge) = pkce();
    let redirect = server.url("/admin/console/callback");
    let url = authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", interkom_admin::console::CONSOLE_CLIENT),
            ("redirect_uri", &redirect),
            ("scope", "openid profile"),
            ("state", "s1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let q = Browser::new().login(server, &url, user, password).await;
    let res = server
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", interkom_admin::console::CONSOLE_CLIENT),
                ("code", &q["code"]),
                ("redirect_uri", &redirect),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// A refresh-token grant by the portal client.
pub async fn portal_refresh(server: &TestServer, refresh_token: &str) -> reqwest::Response {
    server
        .post_form(
            "/token",
            Some((PORTAL, PORTAL_SECRET)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
}

pub async fn cc_token(server: &TestServer) -> String {
    let res = server
        .post_form(
            "/token",
            Some((KFZ, KFZ_SECRET)),
            &[("grant_type", "client_credentials"), ("scope", "authzen")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

pub async fn introspect(server: &TestServer, token: &str) -> Value {
    let res = server
        .post_form("/introspect", Some((KFZ, KFZ_SECRET)), &[("token", token)])
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Asserts an OAuth error JSON with this status and code.
pub async fn expect_oauth_error(res: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status for {error}");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], error, "error code: {v}");
    v
}

/// An attribute's value in a page (`key` up to the `=`), entities undone.
pub fn attr(html: &str, key: &str) -> String {
    let k = format!("{key}=\"");
    let i = html
        .find(&k)
        .unwrap_or_else(|| panic!("no {key} in {html}"))
        + k.len();
    let j = html[i..].find('"').unwrap() + i;
    html[i..j].replace("&#x2f;", "/").replace("&amp;", "&")
}

/// A hidden field's value in a page.
pub fn hidden(html: &str, name: &str) -> String {
    attr(html, &format!("name=\"{name}\" value"))
}

/// Posts a form of a login in progress (the page's login request and CSRF
/// token, and `fields`) to `path`.
pub async fn post_step(
    browser: &Browser,
    server: &TestServer,
    path: &str,
    page: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![
        ("login_request".to_owned(), hidden(page, "login_request")),
        ("csrf_token".to_owned(), hidden(page, "csrf_token")),
    ];
    form.extend(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    browser
        .http
        .post(server.url(path))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The Einwohnermeldewesen (`ewo-elbtalaue`, public, `sehr_hoch`):
/// its authorization URL with PKCE and `state`; (url, verifier).
pub fn ewo_authorize_url(server: &TestServer, state: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        server,
        &[
            ("response_type", "code"),
            ("client_id", "ewo-elbtalaue"),
            ("redirect_uri", "http://localhost:9001/callback"),
            ("scope", "openid"),
            ("state", state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    (url, verifier)
}

/// Redeems an Einwohnermeldewesen code; the ID token's claims.
pub async fn ewo_id_token(server: &TestServer, code: &str, verifier: &str) -> Value {
    let res = server
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", "http://localhost:9001/callback"),
                ("code_verifier", verifier),
                ("client_id", "ewo-elbtalaue"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    jwt_payload(v["id_token"].as_str().unwrap())
}

/// An admin API call with a bearer token; returns status and body.
pub async fn admin(
    s: &TestServer,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = TestServer::http()
        .request(method, s.url(&format!("/admin/v1{path}")))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let v = res.json().await.unwrap_or(Value::Null);
    (status, v)
}

/// An account with `roles` in `tenant`, and its console token.
pub async fn admin_account(s: &TestServer, tenant: &str, username: &str, roles: &[&str]) -> String {
    let password = format!("{username}-Passwort-2026!");
    s.app
        .directory
        .add_user(interkom_directory::NewUser {
            tenant: tenant.into(),
            username: username.into(),
            password: password.clone().into(),
            name: None,
            email: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        })
        .await
        .unwrap();
    console_token(s, username, &password).await
}

/// A SAML peer from another ecosystem (`tests/saml/sp.py` or `idp.py`,
/// pysaml2 in `target/saml-venv`, made by `tests/saml/setup`) on a free
/// port; killed when dropped.
pub struct PyPeer {
    child: std::process::Child,
    pub base: String,
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyPeer {
    /// Starts `tests/saml/{script}` with `{metadata_flag} {metadata}` (the
    /// other side's metadata) and `args`; returns once it prints `ready`.
    pub fn start(script: &str, metadata_flag: &str, metadata: &str, args: &[&str]) -> PyPeer {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let python = repo_root().join("target/saml-venv/bin/python");
        assert!(
            python.exists(),
            "the SAML peers' venv is missing: run tests/saml/setup (scripts/test does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/saml").join(script))
            .args(["--port", &port.to_string(), metadata_flag, metadata])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{script} did not start");
        PyPeer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Its metadata.
    pub async fn metadata(&self) -> String {
        TestServer::http()
            .get(self.url("/metadata"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
