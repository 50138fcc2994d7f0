//! Several nodes on one PostgreSQL, as production runs them: three real
//! `interkom serve` processes on loopback ports answer for one issuer, and
//! the tests act as the load balancer in front of them (round robin, the
//! next node on a refused connection). Faults: `kill -9` of a node and a
//! PostgreSQL restart, both under load.
//!
//! These tests stop the PostgreSQL server, so they are ignored in the normal
//! suite and run one at a time by `scripts/test`:
//! `cargo nextest run -p interkom --test cluster --run-ignored only --test-threads 1`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity,
    unreachable_pub,
    dead_code
)]

#[path = "../e2e/common.rs"]
mod common;
mod faults;
#[path = "../e2e/saml_forge.rs"]
mod saml_forge;
mod shared;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use tokio::process::{Child, Command};

use common::*;

pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

/// Three (or more) nodes and the round-robin balancer in front of them.
pub struct Cluster {
    /// The issuer every node answers for: the balancer's address (a loopback
    /// port nothing listens on; the tests route each request themselves).
    pub issuer: String,
    pub database_url: String,
    kek: String,
    nodes: Mutex<Vec<Node>>,
    next: AtomicUsize,
    /// Nodes the balancer saw refuse a connection (a passive health check):
    /// it sends them nothing more.
    down: Mutex<std::collections::HashSet<usize>>,
    http: reqwest::Client,
}

async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

impl Cluster {
    pub async fn start(n: usize) -> Arc<Cluster> {
        assert_eq!(
            backend(),
            "postgres",
            "several nodes share PostgreSQL: run with INTERKOM_TEST_DB=postgres"
        );
        let cluster = Arc::new(Cluster {
            issuer: format!("http://127.0.0.1:{}", free_port().await),
            database_url: fresh_database().await,
            kek: interkom_directory::MasterKey::generate().to_base64(),
            nodes: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            down: Mutex::new(Default::default()),
            http: TestServer::http(),
        });
        // The first node migrates and seeds; the others join the database.
        for _ in 0..n {
            let port = free_port().await;
            let child = cluster.spawn(port).await;
            cluster.nodes.lock().unwrap().push(Node {
                port,
                child: Some(child),
            });
        }
        cluster
    }

    async fn spawn(&self, port: u16) -> Child {
        let child = Command::new(env!("CARGO_BIN_EXE_interkom"))
            .arg("serve")
            .current_dir(repo_root())
            .env("INTERKOM_CONFIG", repo_root().join("config/interkom.toml"))
            .env("INTERKOM_DATABASE_URL", &self.database_url)
            .env("INTERKOM_KEY_ENCRYPTION_KEY", &self.kek)
            .env("INTERKOM_AUDIT__CHECKPOINT_KEY", checkpoint_key())
            .env("INTERKOM_AUDIT__CHECKPOINT_EVERY_EVENTS", "200")
            .env("INTERKOM_LISTEN", format!("127.0.0.1:{port}"))
            .env("INTERKOM_ISSUER", &self.issuer)
            .env("INTERKOM_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/readyz");
        for _ in 0..500 {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status() == 200 {
                    return child;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("node on port {port} did not become ready");
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.lock().unwrap().iter().map(|n| n.port).collect()
    }

    /// `path` at node `i`, bypassing the balancer.
    pub fn at(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports()[i])
    }

    /// An issuer URL rewritten to node `i`.
    pub fn to_node(&self, i: usize, url: &str) -> String {
        let rest = url
            .strip_prefix(self.issuer.as_str())
            .unwrap_or_else(|| panic!("{url} is not under the issuer"));
        self.at(i, rest)
    }

    /// The node the balancer picks next: round robin over the nodes it
    /// has not seen down.
    pub fn pick(&self) -> usize {
        let n = self.ports().len();
        let down = self.down.lock().unwrap().clone();
        for _ in 0..n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
            if !down.contains(&i) {
                return i;
            }
        }
        self.next.fetch_add(1, Ordering::Relaxed) % n
    }

    fn mark_down(&self, i: usize) {
        self.down.lock().unwrap().insert(i);
    }

    /// A browser's request to node `first`, or, if that node refuses the
    /// connection, to the next one up.
    pub async fn browse(
        &self,
        first: usize,
        build: impl Fn(String) -> reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, String> {
        let mut node = first;
        for _ in 0..self.ports().len() {
            match build(self.to_node(node, url)).send().await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_connect() => {
                    self.mark_down(node);
                    node = self.pick();
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("no node answers".into())
    }

    /// SIGKILL: no shutdown, no flush.
    pub async fn kill(&self, i: usize) {
        let child = self.nodes.lock().unwrap()[i].child.take();
        if let Some(mut c) = child {
            c.start_kill().unwrap();
            c.wait().await.unwrap();
        }
    }

    /// Readiness of every node (`None` where the node does not answer).
    pub async fn ready(&self) -> Vec<Option<u16>> {
        let mut out = Vec::new();
        for i in 0..self.ports().len() {
            let r = self
                .http
                .get(self.at(i, "/readyz"))
                .timeout(Duration::from_secs(3))
                .send()
                .await;
            out.push(r.ok().map(|r| r.status().as_u16()));
        }
        out
    }

    /// Sends through the balancer: round robin, and like a proxy's
    /// `proxy_next_upstream error` the next node when a connection fails.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client, String) -> reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let n = self.ports().len();
        let mut last = None;
        for _ in 0..n {
            let i = self.pick();
            match build(&self.http, self.to_node(i, url))
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) if e.is_connect() => {
                    self.mark_down(i);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap())
    }

    /// The balancer as the `openidconnect` crate's HTTP client.
    pub fn rp_http(
        self: &Arc<Self>,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<openidconnect::HttpResponse, reqwest::Error>>
                + Send,
        >,
    > {
        let lb = Arc::clone(self);
        move |req: openidconnect::HttpRequest| {
            let lb = Arc::clone(&lb);
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let res = lb
                    .send(
                        |http, url| {
                            http.request(parts.method.clone(), url)
                                .headers(parts.headers.clone())
                                .body(body.clone())
                        },
                        &parts.uri.to_string(),
                    )
                    .await?;
                let mut out = openidconnect::http::Response::builder().status(res.status());
                for (k, v) in res.headers() {
                    out = out.header(k, v);
                }
                let bytes = res.bytes().await?;
                Ok(out.body(bytes.to_vec()).unwrap())
            })
        }
    }

    /// The portal's relying party, discovering through the balancer.
    pub async fn rp(
        self: &Arc<Self>,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        String,
    > {
        let meta = CoreProviderMetadata::discover_async(
            IssuerUrl::new(self.issuer.clone()).unwrap(),
            &self.rp_http(),
        )
        .await
        .map_err(|e| format!("discovery: {e:?}"))?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(PORTAL.into()),
            Some(ClientSecret::new(PORTAL_SECRET.into())),
        )
        .set_redirect_uri(RedirectUrl::new(PORTAL_REDIRECT.into()).unwrap()))
    }
}

impl Cluster {
    /// The portal's authorization URL (PKCE, state, nonce from the RP
    /// library) at node `i`.
    pub async fn authorize_at(self: &Arc<Self>, i: usize) -> String {
        let rp = self.rp().await.unwrap();
        let (url, _, _) = rp
            .authorize_url(
                openidconnect::AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(PkceCodeChallenge::new_random_sha256().0)
            .url();
        self.to_node(i, url.as_str())
    }
}

/// A code for the portal: the login page from node `page`, the password
/// posted to node `post` (which issues the code). Returns the code, the
/// PKCE verifier and the nonce; an error where a node did not answer.
pub async fn login_code(
    cluster: &Arc<Cluster>,
    browser: &Browser,
    page: usize,
    post: usize,
    user: &str,
    password: &str,
) -> Result<(String, String, Nonce), String> {
    let rp = cluster.rp().await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(
            openidconnect::AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let fail = |e: reqwest::Error| e.to_string();
    let res = cluster
        .browse(page, |u| browser.http.get(u), url.as_str())
        .await?;
    if res.status() != 200 {
        return Err(format!("login page: {}", res.status()));
    }
    let form = parse_form_at(&cluster.issuer, &res.text().await.map_err(fail)?);
    let mut fields = form.fields.clone();
    fields.insert("username".into(), user.into());
    fields.insert("password".into(), password.into());
    let res = cluster
        .browse(post, |u| browser.http.post(u).form(&fields), &form.action)
        .await?;
    if res.status() != 303 {
        return Err(format!("login: {}", res.status()));
    }
    let q = redirect_params(&res);
    assert_eq!(&q["state"], state.secret());
    Ok((q["code"].clone(), verifier.secret().clone(), nonce))
}

/// Redeems a code through the balancer with the RP library and validates
/// the ID token (signature via the JWKS, issuer, audience, nonce). Returns
/// the access token's jti, or the error code the node answered.
pub async fn redeem(
    cluster: &Arc<Cluster>,
    code: &str,
    verifier: &str,
    nonce: &Nonce,
) -> Result<String, String> {
    let rp = cluster.rp().await?;
    let res = rp
        .exchange_code(AuthorizationCode::new(code.into()))
        .unwrap()
        .set_pkce_verifier(openidconnect::PkceCodeVerifier::new(verifier.into()))
        .request_async(&cluster.rp_http())
        .await;
    match res {
        Ok(t) => {
            let id = t.id_token().expect("an ID token");
            id.claims(&rp.id_token_verifier(), nonce)
                .expect("a valid ID token");
            let at = t.access_token().secret();
            Ok(jwt_payload(at)["jti"].as_str().unwrap().to_owned())
        }
        Err(openidconnect::RequestTokenError::ServerResponse(e)) => Err(e.error().to_string()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// One client-credentials grant through the balancer; the token's jti.
pub async fn cc_grant(cluster: &Cluster) -> Result<String, String> {
    let res = cluster
        .send(
            |http, url| {
                http.post(url)
                    .basic_auth(KFZ, Some(KFZ_SECRET))
                    .form(&[("grant_type", "client_credentials")])
            },
            &format!("{}/token", cluster.issuer),
        )
        .await
        .map_err(|e| format!("{e}"))?;
    let status = res.status();
    let v: serde_json::Value = res.json().await.map_err(|e| format!("{e}"))?;
    if status != 200 {
        return Err(format!("{status}: {v}"));
    }
    Ok(jwt_payload(v["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned())
}

/// The jtis of every audited token issuance.
pub async fn audited_jtis(pool: &sqlx::AnyPool) -> std::collections::HashSet<String> {
    let details: Vec<String> =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'token_issued'")
            .fetch_all(pool)
            .await
            .unwrap();
    details
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|d| d["jti"].as_str().map(str::to_owned))
        .collect()
}

/// `interkom audit verify` on the cluster's database, as an operator runs it.
pub async fn audit_verify(cluster: &Cluster) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_interkom"))
        .args(["audit", "verify"])
        .current_dir(repo_root())
        .env("INTERKOM_CONFIG", repo_root().join("config/interkom.toml"))
        .env("INTERKOM_DATABASE_URL", &cluster.database_url)
        .env("INTERKOM_KEY_ENCRYPTION_KEY", &cluster.kek)
        .env("INTERKOM_AUDIT__CHECKPOINT_KEY", checkpoint_key())
        .env("INTERKOM_LOG", "error")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "audit verify failed: {text}");
    text
}

pub async fn pool(cluster: &Cluster) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&cluster.database_url).await.unwrap()
}
