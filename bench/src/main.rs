//! `interkom-load`: a bounded HTTP load generator for interkom's OAuth 2.0 /
//! OpenID Connect endpoints, driven by `scripts/bench-http`.
//!
//! The generator shares a small machine with the server, so it is kept lean:
//! one long-lived HTTP/1.1 keep-alive connection per task (hyper's
//! connection-level client: no pool, no cookie jar, no redirects followed),
//! TCP_NODELAY, a single-threaded runtime unless `--threads` says otherwise,
//! and every header and body that never changes is built once.
//!
//! A run always ends by itself: after `--warmup` seconds that are not
//! counted, it measures for `--duration` seconds (at most 120) or until
//! `--max-requests` iterations have started, whichever comes first; a
//! connection still busy a grace period later is abandoned. Only loopback
//! issuers are accepted: load may only target this machine.
//!
//! Scenarios (one iteration is one latency sample):
//! - `client_credentials`: `POST /token` with `grant_type=client_credentials`.
//! - `introspect`: `POST /introspect` of one access token obtained up front.
//! - `refresh`: `POST /token` with `grant_type=refresh_token`, always with the
//!   newest token (they rotate; reusing one revokes the family). Every
//!   connection logs in once before the clock starts.
//! - `authzen`: `POST /access/v1/evaluation` (AuthZEN), one decision that
//!   the demo policy permits (a clerk reading the council information system
//!   of her own Gemeinde), with a client-credentials token fetched up front.
//! - `authzen_batch`: `POST /access/v1/evaluations` with 10 such decisions
//!   (subject, action and context given once); one sample is one batch.
//! - `login`: the whole browser login — `GET /authorize`, `POST /login` (an
//!   argon2id check), `POST /token` with the code and PKCE verifier. Nothing
//!   is carried between iterations, so each one checks the password.
//! - `directory_login`: a directory account's login through to the
//!   authorization code — `GET /authorize`, `POST /login` (search bind,
//!   groups, a bind as the person, account link, code); with
//!   `--username-range N` the `{n}` of `--username` runs over 0001…N.
//! - `saml_acs`: a citizen's SAML login as interkom consumes it — the
//!   signed, encrypted Response at the ACS, the login taken up, the code
//!   redeemed (see `saml_acs`); the logins are opened and their Responses
//!   made before the clock starts (`--saml-idp`, `--saml-prepared`).
//!
//! Output: one JSON line on stdout and a readable summary on stderr.
//! `requests` counts measured iterations including failed ones; `rps` and the
//! percentiles count successful iterations only, so errors answered quickly
//! cannot flatter the result.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::http::response::Parts;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use url::Url;

mod saml_acs;

/// Longest measured period a run may ask for.
const MAX_DURATION_SECS: u64 = 120;
/// How long connections (and, for `refresh`, their logins) may take to set up.
const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// How long after the end a connection may take to finish its last iteration.
const GRACE: Duration = Duration::from_secs(10);
/// Pause after a failure that gives no answer, so a dead server is not
/// hammered in a tight loop.
const BACKOFF: Duration = Duration::from_millis(10);

const FORM: &str = "application/x-www-form-urlencoded";
const CC_BODY: &[u8] = b"grant_type=client_credentials&scope=roles+authzen";

#[derive(Parser, Debug)]
#[command(
    name = "interkom-load",
    version,
    about = "Bounded HTTP load generator for interkom (loopback only)"
)]
struct Cli {
    /// The issuer URL; its host must be loopback (127.0.0.0/8, localhost, ::1).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// Several nodes serving the issuer (`127.0.0.1:PORT`, repeatable): the
    /// connections are spread over them round robin, as a load balancer with
    /// keep-alive does. Default: the issuer's own address.
    #[arg(long = "node")]
    nodes: Vec<String>,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Measured seconds (at most 120).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=30))]
    warmup: u64,
    /// Concurrent keep-alive connections, one task each.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    connections: u32,
    /// Stop after this many measured iterations even if time is left.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_requests: u64,
    /// Runtime worker threads; 1 runs everything on the calling thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Machine client for client_credentials and introspection (HTTP Basic).
    #[arg(long, default_value = "kfz-backend")]
    cc_client_id: String,
    #[arg(long, default_value = "kfz-backend-demo-secret-0123456789abcdefgh")]
    cc_client_secret: String,
    /// Confidential web client for login and refresh (HTTP Basic).
    #[arg(long, default_value = "serviceportal")]
    client_id: String,
    #[arg(long, default_value = "serviceportal-demo-secret-0123456789abcdef")]
    client_secret: String,
    #[arg(long, default_value = "http://localhost:9000/callback")]
    redirect_uri: String,
    #[arg(long, default_value = "kreis.admin")]
    username: String,
    #[arg(long, default_value = "Kreis-Demo-2026!")]
    password: String,
    /// Replaces `{n}` in `--username` by 0001…N, a different one at each
    /// iteration (0: the name as given).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=99_999))]
    username_range: u32,
    /// forward_check: the protected application's origin (registered in
    /// interkom); the login there is made once before the clock starts.
    #[arg(long, default_value = "http://app.localhost:18081")]
    app_origin: String,
    /// forward_check: send the requests to the application through this
    /// proxy (`127.0.0.1:PORT`, e.g. nginx with the shipped snippet)
    /// instead of to interkom's check endpoint.
    #[arg(long)]
    proxy: Option<String>,
    /// saml_sso: the registered SP's entity id and ACS URL.
    #[arg(long, default_value = "https://bench-sp.example/saml")]
    sp_entity: String,
    #[arg(long, default_value = "https://bench-sp.example/saml/acs")]
    sp_acs: String,
    /// saml_acs: the IdP's key and certificate (`PREFIX.key`, `.crt`, as
    /// `interkom-bench-idp` writes them; registered as source `bench-idp`).
    #[arg(long)]
    saml_idp: Option<String>,
    /// saml_acs: logins opened and Responses made before the clock starts
    /// (the run ends when they are used up).
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    saml_prepared: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    #[value(name = "client_credentials")]
    ClientCredentials,
    Introspect,
    Refresh,
    Login,
    #[value(name = "directory_login")]
    DirectoryLogin,
    Authzen,
    #[value(name = "authzen_batch")]
    AuthzenBatch,
    /// The forward-auth check with a valid host session (as nginx's
    /// subrequest sends it), or with `--proxy` a request through the proxy.
    #[value(name = "forward_check")]
    ForwardCheck,
    /// A SAML login with an existing session: an AuthnRequest in (Redirect
    /// binding), the signed Response out (`/saml/sso`, then `/saml/return`).
    #[value(name = "saml_sso")]
    SamlSso,
    /// A citizen's SAML login consumed: the Response at the ACS, the login
    /// taken up, the code redeemed.
    #[value(name = "saml_acs")]
    SamlAcs,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::ClientCredentials => "client_credentials",
            Scenario::Introspect => "introspect",
            Scenario::Refresh => "refresh",
            Scenario::Login => "login",
            Scenario::DirectoryLogin => "directory_login",
            Scenario::Authzen => "authzen",
            Scenario::AuthzenBatch => "authzen_batch",
            Scenario::ForwardCheck => "forward_check",
            Scenario::SamlSso => "saml_sso",
            Scenario::SamlAcs => "saml_acs",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cli.threads as usize);
        b
    };
    let result = builder
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interkom-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Everything about the server that stays fixed during a run, built once.
#[derive(Clone)]
struct Target {
    /// Where the issuer's first connection goes (and the only one, for one node).
    addr: SocketAddr,
    nodes: Vec<SocketAddr>,
    host: HeaderValue,
    /// The issuer's path (empty at the root).
    base: String,
    token: Uri,
    introspect: Uri,
    evaluation: Uri,
    evaluations: Uri,
    login: Uri,
    /// `/authorize?…` without the per-iteration state, nonce and challenge.
    authorize: String,
    cc_basic: HeaderValue,
    rp_basic: HeaderValue,
    redirect_uri: String,
    redirect_uri_enc: String,
    /// `&username=…&password=…`, form-encoded.
    credentials: String,
    /// With `--username-range`: the name around `{n}`, and the range.
    username_parts: Option<(String, String, u32)>,
    password_enc: String,
}

impl Target {
    fn new(cli: &Cli) -> anyhow::Result<Target> {
        let issuer = Url::parse(&cli.issuer)
            .with_context(|| format!("--issuer `{}` is not a URL", cli.issuer))?;
        let addr = loopback_addr(&issuer)?;
        let host = issuer.host_str().unwrap_or("127.0.0.1");
        let host =
            HeaderValue::from_str(&format!("{host}:{}", addr.port())).context("issuer host")?;
        let base = issuer.path().trim_end_matches('/');
        let uri = |path: &str| -> anyhow::Result<Uri> {
            format!("{base}{path}")
                .parse::<Uri>()
                .with_context(|| format!("endpoint {base}{path}"))
        };
        let nodes = cli
            .nodes
            .iter()
            .map(|n| {
                let u = Url::parse(&format!("http://{n}"))
                    .with_context(|| format!("--node `{n}` is not host:port"))?;
                loopback_addr(&u)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Target {
            addr: nodes.first().copied().unwrap_or(addr),
            nodes: if nodes.is_empty() { vec![addr] } else { nodes },
            host,
            base: base.to_owned(),
            token: uri("/token")?,
            introspect: uri("/introspect")?,
            evaluation: uri("/access/v1/evaluation")?,
            evaluations: uri("/access/v1/evaluations")?,
            login: uri("/login")?,
            authorize: format!(
                "{base}/authorize?response_type=code&client_id={}&redirect_uri={}\
                 &scope=openid%20profile&code_challenge_method=S256",
                enc(&cli.client_id),
                enc(&cli.redirect_uri)
            ),
            cc_basic: basic(&cli.cc_client_id, &cli.cc_client_secret)?,
            rp_basic: basic(&cli.client_id, &cli.client_secret)?,
            redirect_uri: cli.redirect_uri.clone(),
            redirect_uri_enc: enc(&cli.redirect_uri),
            credentials: format!(
                "&username={}&password={}",
                enc(&cli.username),
                enc(&cli.password)
            ),
            username_parts: match (cli.username_range, cli.username.split_once("{n}")) {
                (0, _) => None,
                (n, Some((a, b))) => Some((a.to_owned(), b.to_owned(), n)),
                (_, None) => bail!("--username-range needs `{{n}}` in --username"),
            },
            password_enc: enc(&cli.password),
        })
    }

    /// The credentials of iteration `i` (the same ones without a range).
    fn credentials_for(&self, i: u64) -> std::borrow::Cow<'_, str> {
        match &self.username_parts {
            None => std::borrow::Cow::Borrowed(&self.credentials),
            Some((a, b, n)) => std::borrow::Cow::Owned(format!(
                "&username={}&password={}",
                enc(&format!("{a}{:04}{b}", i % u64::from(*n) + 1)),
                self.password_enc
            )),
        }
    }

    fn get(&self, uri: Uri) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri;
        req.headers_mut().insert(header::HOST, self.host.clone());
        req
    }

    fn post(&self, uri: &Uri, auth: Option<&HeaderValue>, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri.clone();
        let h = req.headers_mut();
        h.insert(header::HOST, self.host.clone());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FORM));
        if let Some(auth) = auth {
            h.insert(header::AUTHORIZATION, auth.clone());
        }
        req
    }
}

/// The address to connect to, refusing anything that is not this machine.
/// `localhost` is pinned to 127.0.0.1 rather than resolved, so a stray
/// hosts entry cannot send the load elsewhere.
fn loopback_addr(issuer: &Url) -> anyhow::Result<SocketAddr> {
    if issuer.scheme() != "http" {
        bail!("--issuer must be http:// (the load generator speaks no TLS)");
    }
    let ip: IpAddr = match issuer.host() {
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => ip.into(),
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => ip.into(),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            Ipv4Addr::LOCALHOST.into()
        }
        _ => bail!(
            "refusing to load `{}`: load may only target this machine \
             (127.0.0.0/8, localhost or ::1)",
            issuer.host_str().unwrap_or("")
        ),
    };
    let port = issuer
        .port_or_known_default()
        .context("the issuer has no port")?;
    Ok(SocketAddr::new(ip, port))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// HTTP Basic client credentials; RFC 6749 §2.3.1 form-encodes both parts.
fn basic(id: &str, secret: &str) -> anyhow::Result<HeaderValue> {
    let raw = format!("{}:{}", enc(id), enc(secret));
    HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw))).context("client credentials")
}

/// URL-safe random text: `N` random bytes, base64url without padding.
fn random_b64<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The text between `prefix` and the next `"`. Good enough for the values
/// read here — base64url tokens in compact serde_json output and in the
/// login form's hidden inputs — which never need escaping; a full JSON or
/// HTML parse would cost the shared CPU for nothing.
fn quoted_after<'a>(haystack: &'a [u8], prefix: &[u8]) -> Option<&'a str> {
    let start = haystack.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
    let rest = haystack.get(start..)?;
    let len = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(rest.get(..len)?).ok()
}

/// Why one iteration failed. Built only on the error path.
#[derive(Debug)]
struct Failure {
    step: &'static str,
    status: Option<StatusCode>,
    detail: String,
}

impl Failure {
    /// No usable HTTP answer (connect, I/O, protocol).
    fn io(step: &'static str, e: impl fmt::Display) -> Failure {
        Failure {
            step,
            status: None,
            detail: e.to_string(),
        }
    }

    /// An answer, but not the expected one.
    fn answer(step: &'static str, status: StatusCode, body: &[u8]) -> Failure {
        let shown = body.get(..600).unwrap_or(body);
        Failure {
            step,
            status: Some(status),
            detail: String::from_utf8_lossy(shown).trim().to_owned(),
        }
    }

    fn note(step: &'static str, status: StatusCode, detail: impl Into<String>) -> Failure {
        Failure {
            step,
            status: Some(status),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{}: HTTP {}: {}", self.step, s.as_u16(), self.detail),
            None => write!(f, "{}: {}", self.step, self.detail),
        }
    }
}

/// One keep-alive connection, reopened when the server has closed it.
struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The `interkom_session` cookie the last login set (saml_sso).
    last_session: Option<String>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            sender: None,
            last_session: None,
        }
    }

    async fn open(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::io("connect", e))?;
        // Small requests and answers: Nagle plus delayed ACKs would add
        // tens of milliseconds to the latencies measured.
        stream
            .set_nodelay(true)
            .map_err(|e| Failure::io("connect", e))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::io("connect", e))?;
        // The connection future does the I/O; it ends when `sender` is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender
            .ready()
            .await
            .map_err(|e| Failure::io("connect", e))?;
        Ok(sender)
    }

    /// Sends `req` and reads the whole answer (always read to the end, or
    /// the connection could not be reused).
    async fn exchange(
        &mut self,
        step: &'static str,
        req: Request<Full<Bytes>>,
    ) -> Result<(Parts, Bytes), Failure> {
        let usable = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            // A closed idle connection is not an error; reopening it is part
            // of the iteration's time.
            self.sender = None;
            self.sender = Some(Self::open(self.addr).await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(Failure::io(step, "not connected"));
        };
        let result = async {
            let res = sender.send_request(req).await?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts, body))
        }
        .await;
        result.map_err(|e| {
            self.sender = None;
            Failure::io(step, e)
        })
    }
}

/// One full browser login; returns the token endpoint's answer.
async fn login(conn: &mut Conn, t: &Target) -> Result<Bytes, Failure> {
    let (code, verifier) = login_code(conn, t, &t.credentials).await?;
    // 3. The client redeems the code with its secret and the verifier.
    let form = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}",
        enc(&code),
        t.redirect_uri_enc
    );
    let (parts, body) = conn
        .exchange(
            "token",
            t.post(&t.token, Some(&t.rp_basic), Bytes::from(form)),
        )
        .await?;
    if parts.status == StatusCode::OK && contains(&body, br#""id_token":""#) {
        Ok(body)
    } else {
        Err(Failure::answer("token", parts.status, &body))
    }
}

/// The login form, filled in with `credentials`, through to the code;
/// returns the code and the PKCE verifier.
async fn login_code(
    conn: &mut Conn,
    t: &Target,
    credentials: &str,
) -> Result<(String, String), Failure> {
    // 32 random bytes give 43 base64url characters, within RFC 7636's
    // 43..=128 characters of [A-Za-z0-9-._~].
    let verifier = random_b64::<32>();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random_b64::<16>();
    let nonce = random_b64::<16>();

    // 1. The authorization request shows the login form and binds it to
    //    this browser with a cookie.
    let uri: Uri = format!(
        "{}&state={state}&nonce={nonce}&code_challenge={challenge}",
        t.authorize
    )
    .parse()
    .map_err(|e| Failure::io("authorize", e))?;
    let location = form_login(conn, t, uri, credentials).await?;
    if !location.starts_with(&t.redirect_uri) {
        return Err(Failure::note(
            "login",
            StatusCode::SEE_OTHER,
            format!("redirect to `{location}`"),
        ));
    }
    let query = location.split_once('?').map_or("", |(_, q)| q);
    let mut code = None;
    let mut state_ok = false;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "code" => code = Some(v.into_owned()),
            "state" => state_ok = *v == *state,
            _ => {}
        }
    }
    let (Some(code), true) = (code, state_ok) else {
        return Err(Failure::note(
            "login",
            StatusCode::SEE_OTHER,
            format!("redirect without code or with another state: `{location}`"),
        ));
    };
    Ok((code, verifier))
}

/// The login form at authorization request `uri`, filled in with
/// `credentials`; returns where the login sends the browser.
async fn form_login(
    conn: &mut Conn,
    t: &Target,
    uri: Uri,
    credentials: &str,
) -> Result<String, Failure> {
    let (parts, body) = conn.exchange("authorize", t.get(uri)).await?;
    if parts.status != StatusCode::OK {
        return Err(Failure::answer("authorize", parts.status, &body));
    }
    let browser = cookie_set(&parts, "interkom_browser")
        .ok_or_else(|| Failure::note("authorize", parts.status, "no interkom_browser cookie"))?;
    let (Some(login_request), Some(csrf)) = (
        quoted_after(&body, br#"name="login_request" value=""#),
        quoted_after(&body, br#"name="csrf_token" value=""#),
    ) else {
        return Err(Failure::note(
            "authorize",
            parts.status,
            "login form without login_request/csrf_token",
        ));
    };

    // 2. The form submission: CSRF check and argon2id, then a redirect
    //    with the code.
    let cookie = HeaderValue::from_str(&format!("interkom_browser={browser}"))
        .map_err(|e| Failure::io("login", e))?;
    let form = format!("login_request={login_request}&csrf_token={csrf}{credentials}");
    let mut req = t.post(&t.login, None, Bytes::from(form));
    req.headers_mut().insert(header::COOKIE, cookie);
    let (parts, body) = conn.exchange("login", req).await?;
    if parts.status != StatusCode::SEE_OTHER {
        return Err(Failure::answer("login", parts.status, &body));
    }
    conn.last_session = cookie_set(&parts, "interkom_session");
    Ok(parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned())
}

/// The value of cookie `name` an answer sets.
fn cookie_set(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.split_once(';').map_or(v, |(value, _)| value).to_owned())
}

/// The SP of the saml_sso scenario and interkom's session cookie.
struct Saml {
    entity: String,
    acs: String,
    /// `interkom_session=…`.
    session: HeaderValue,
    sso: String,
}

impl Saml {
    /// A fresh AuthnRequest over the Redirect binding (a new id each time:
    /// interkom refuses replays).
    fn sso_uri(&self, t: &Target) -> anyhow::Result<Uri> {
        let req = interkom_saml::authn::AuthnRequest {
            id: interkom_saml::new_id(),
            issue_instant: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as i64,
            issuer: self.entity.clone(),
            destination: Some(self.sso.clone()),
            acs_url: Some(self.acs.clone()),
            acs_index: None,
            protocol_binding: Some(interkom_saml::authn::BINDING_POST.into()),
            force_authn: false,
            is_passive: false,
            name_id_format: None,
            requested: None,
        };
        let url = interkom_saml::binding::redirect_url(
            &format!("{}/saml/sso", t.base),
            interkom_saml::binding::Param::Request,
            &req.to_xml(None),
            None,
            None,
        )?;
        Ok(url.parse()?)
    }
}

/// Logs in once through a SAML request (the login form), keeping the
/// session cookie every later request rides on.
async fn saml_login(t: &Target, cli: &Cli) -> anyhow::Result<Saml> {
    let mut sm = Saml {
        entity: cli.sp_entity.clone(),
        acs: cli.sp_acs.clone(),
        session: HeaderValue::from_static("interkom_session=none"),
        sso: format!("{}/saml/sso", cli.issuer.trim_end_matches('/')),
    };
    let mut conn = Conn::new(t.addr);
    let location = form_login(&mut conn, t, sm.sso_uri(t)?, &t.credentials)
        .await
        .map_err(|f| anyhow!("{f}"))?;
    if !location.contains("/saml/return?") {
        bail!("the SAML login went to `{location}`");
    }
    let session = conn
        .last_session
        .take()
        .context("no interkom_session cookie after the login")?;
    sm.session = HeaderValue::from_str(&format!("interkom_session={session}"))?;
    Ok(sm)
}

/// A protected application's origin and the host cookie of one login
/// there, for the forward-auth scenarios.
struct Forward {
    /// `host[:port]` of the origin (the `X-Forwarded-Host`).
    host: HeaderValue,
    proto: HeaderValue,
    /// `interkom_app=…`.
    cookie: HeaderValue,
    check: Uri,
    /// The proxy in front (`--proxy`): iterations go there instead.
    proxy: Option<SocketAddr>,
}

/// Logs in at the application as a browser behind its proxy would: the
/// start page on the host, the login form, the callback that sets the
/// host's cookie.
async fn forward_login(t: &Target, cli: &Cli) -> anyhow::Result<Forward> {
    let origin = Url::parse(&cli.app_origin).context("--app-origin")?;
    let host = match origin.port() {
        Some(p) => format!("{}:{p}", origin.host_str().unwrap_or("")),
        None => origin.host_str().unwrap_or("").to_owned(),
    };
    let host = HeaderValue::from_str(&host).context("--app-origin host")?;
    let proto = HeaderValue::from_str(origin.scheme()).context("--app-origin scheme")?;
    let base = t.base.clone();
    let forwarded = |mut req: Request<Full<Bytes>>| {
        req.headers_mut().insert("x-forwarded-host", host.clone());
        req.headers_mut().insert("x-forwarded-proto", proto.clone());
        req
    };
    let mut conn = Conn::new(t.addr);
    let rd = format!("{}/", cli.app_origin.trim_end_matches('/'));
    let start: Uri = format!("{base}/forward-auth/start?m=GET&rd={}", enc(&rd)).parse()?;
    let (parts, body) = conn
        .exchange("start", forwarded(t.get(start)))
        .await
        .map_err(|f| anyhow!("{f}"))?;
    if parts.status != StatusCode::SEE_OTHER {
        bail!("{}", Failure::answer("start", parts.status, &body));
    }
    let state_cookie =
        cookie_set(&parts, "interkom_app_login").context("no interkom_app_login cookie")?;
    let authorize = parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("start without a location")?;
    let authorize = Url::parse(authorize).context("start's location")?;
    let uri: Uri = format!("{}?{}", authorize.path(), authorize.query().unwrap_or("")).parse()?;
    let callback = form_login(&mut conn, t, uri, &t.credentials)
        .await
        .map_err(|f| anyhow!("{f}"))?;
    let callback = Url::parse(&callback).context("the login's redirect")?;
    let uri: Uri = format!(
        "{base}/forward-auth/callback?{}",
        callback.query().unwrap_or("")
    )
    .parse()?;
    let mut req = forwarded(t.get(uri));
    req.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("interkom_app_login={state_cookie}"))?,
    );
    let (parts, body) = conn
        .exchange("callback", req)
        .await
        .map_err(|f| anyhow!("{f}"))?;
    if parts.status != StatusCode::SEE_OTHER {
        bail!("{}", Failure::answer("callback", parts.status, &body));
    }
    let handle = cookie_set(&parts, "interkom_app").context("no interkom_app cookie")?;
    let proxy = cli
        .proxy
        .as_deref()
        .map(|p| loopback_addr(&Url::parse(&format!("http://{p}"))?))
        .transpose()
        .context("--proxy")?;
    Ok(Forward {
        cookie: HeaderValue::from_str(&format!("interkom_app={handle}"))?,
        check: format!("{base}/forward-auth/nginx").parse()?,
        host,
        proto,
        proxy,
    })
}

/// What all connections share.
struct Ctx {
    target: Target,
    scenario: Scenario,
    /// `token=…` for the introspect scenario.
    introspect_body: Bytes,
    /// `Bearer …` and the JSON body for the AuthZEN scenarios.
    pdp_auth: Option<HeaderValue>,
    pdp_body: Bytes,
    /// Measured iterations started so far, against `max_requests`.
    started: AtomicU64,
    max_requests: u64,
    reported: AtomicBool,
    /// forward_check: the application and the host cookie.
    forward: Option<Forward>,
    /// saml_sso: the SP and the interkom session.
    saml: Option<Saml>,
    /// saml_acs: the logins prepared.
    acs: Option<saml_acs::Pool>,
}

impl Ctx {
    /// Shows the first failure of the run, once.
    fn report(&self, f: &Failure) {
        if !self.reported.swap(true, Ordering::Relaxed) {
            eprintln!("interkom-load: first error: {f}");
        }
    }
}

/// One connection's state between iterations.
struct Worker {
    conn: Conn,
    /// Iterations of this connection (picks the name of a range).
    round: u64,
    /// The refresh scenario's current (newest) refresh token.
    refresh_token: Option<String>,
}

impl Worker {
    /// Connects and, for `refresh`, logs in, all before the clock starts.
    /// Connection `i` goes to node `i mod n`.
    async fn setup(ctx: &Ctx, i: usize) -> Result<Worker, Failure> {
        let addr = match ctx.forward.as_ref().and_then(|f| f.proxy) {
            Some(proxy) => proxy,
            None => ctx.target.nodes[i % ctx.target.nodes.len()],
        };
        let mut w = Worker {
            // Connections start at different names of a range.
            round: i as u64 * 7,
            conn: Conn::new(addr),
            refresh_token: None,
        };
        w.conn.sender = Some(Conn::open(addr).await?);
        if ctx.scenario == Scenario::Refresh {
            w.relogin(&ctx.target).await?;
        }
        Ok(w)
    }

    async fn relogin(&mut self, t: &Target) -> Result<(), Failure> {
        let body = login(&mut self.conn, t).await?;
        let rt = quoted_after(&body, br#""refresh_token":""#).ok_or_else(|| {
            Failure::note(
                "token",
                StatusCode::OK,
                "no refresh_token in the token response",
            )
        })?;
        self.refresh_token = Some(rt.to_owned());
        Ok(())
    }

    async fn iterate(&mut self, ctx: &Ctx) -> Result<(), Failure> {
        let t = &ctx.target;
        match ctx.scenario {
            Scenario::ClientCredentials => {
                let req = t.post(&t.token, Some(&t.cc_basic), Bytes::from_static(CC_BODY));
                let (parts, body) = self.conn.exchange("token", req).await?;
                if parts.status == StatusCode::OK && contains(&body, br#""access_token":""#) {
                    return Ok(());
                }
                Err(Failure::answer("token", parts.status, &body))
            }
            Scenario::Introspect => {
                let req = t.post(
                    &t.introspect,
                    Some(&t.cc_basic),
                    ctx.introspect_body.clone(),
                );
                let (parts, body) = self.conn.exchange("introspect", req).await?;
                if parts.status == StatusCode::OK && contains(&body, br#""active":true"#) {
                    return Ok(());
                }
                Err(Failure::answer("introspect", parts.status, &body))
            }
            Scenario::Refresh => {
                // Taken, not borrowed: whatever happens, this token is spent.
                let Some(rt) = self.refresh_token.take() else {
                    return Err(Failure::io("refresh", "no refresh token"));
                };
                let mut form = String::with_capacity(40 + rt.len());
                form.push_str("grant_type=refresh_token&refresh_token=");
                form.push_str(&rt);
                let req = t.post(&t.token, Some(&t.rp_basic), Bytes::from(form));
                let (parts, body) = self.conn.exchange("refresh", req).await?;
                if parts.status == StatusCode::OK {
                    if let Some(new) = quoted_after(&body, br#""refresh_token":""#) {
                        self.refresh_token = Some(new.to_owned());
                        return Ok(());
                    }
                }
                Err(Failure::answer("refresh", parts.status, &body))
            }
            Scenario::Login => login(&mut self.conn, t).await.map(drop),
            Scenario::DirectoryLogin => {
                self.round += 1;
                let credentials = t.credentials_for(self.round);
                login_code(&mut self.conn, t, &credentials).await.map(drop)
            }
            Scenario::ForwardCheck => {
                let Some(f) = ctx.forward.as_ref() else {
                    return Err(Failure::io("check", "no host session"));
                };
                let mut req = Request::new(Full::new(Bytes::new()));
                *req.uri_mut() = match f.proxy {
                    Some(_) => Uri::from_static("/"),
                    None => f.check.clone(),
                };
                let h = req.headers_mut();
                h.insert(header::COOKIE, f.cookie.clone());
                if f.proxy.is_some() {
                    // Through the proxy: the application's own request.
                    h.insert(header::HOST, f.host.clone());
                } else {
                    h.insert(header::HOST, t.host.clone());
                    h.insert("x-forwarded-host", f.host.clone());
                    h.insert("x-forwarded-proto", f.proto.clone());
                    h.insert("x-original-uri", HeaderValue::from_static("/"));
                    h.insert("x-original-method", HeaderValue::from_static("GET"));
                }
                let (parts, body) = self.conn.exchange("check", req).await?;
                let user = f.proxy.is_some() || parts.headers.contains_key("x-interkom-user");
                if parts.status == StatusCode::OK && user {
                    return Ok(());
                }
                Err(Failure::answer("check", parts.status, &body))
            }
            Scenario::SamlSso => {
                let Some(sm) = ctx.saml.as_ref() else {
                    return Err(Failure::io("sso", "no session"));
                };
                let uri = sm.sso_uri(t).map_err(|e| Failure::io("sso", e))?;
                let mut req = t.get(uri);
                req.headers_mut().insert(header::COOKIE, sm.session.clone());
                let (parts, body) = self.conn.exchange("sso", req).await?;
                if parts.status != StatusCode::SEE_OTHER {
                    return Err(Failure::answer("sso", parts.status, &body));
                }
                let pending = cookie_set(&parts, "interkom_saml")
                    .ok_or_else(|| Failure::note("sso", parts.status, "no interkom_saml cookie"))?;
                let back = parts
                    .headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| Url::parse(l).ok())
                    .ok_or_else(|| Failure::note("sso", parts.status, "no location"))?;
                let uri: Uri = format!("{}?{}", back.path(), back.query().unwrap_or(""))
                    .parse()
                    .map_err(|e| Failure::io("return", e))?;
                let mut req = t.get(uri);
                let cookie = format!(
                    "{}; interkom_saml={pending}",
                    sm.session.to_str().unwrap_or("")
                );
                req.headers_mut().insert(
                    header::COOKIE,
                    HeaderValue::from_str(&cookie).map_err(|e| Failure::io("return", e))?,
                );
                let (parts, body) = self.conn.exchange("return", req).await?;
                if parts.status == StatusCode::OK && contains(&body, b"SAMLResponse") {
                    return Ok(());
                }
                Err(Failure::answer("return", parts.status, &body))
            }
            Scenario::SamlAcs => match ctx.acs.as_ref() {
                Some(pool) => pool.iterate(&mut self.conn, t).await,
                None => Err(Failure::io("acs", "nothing prepared")),
            },
            Scenario::Authzen | Scenario::AuthzenBatch => {
                let uri = if ctx.scenario == Scenario::Authzen {
                    &t.evaluation
                } else {
                    &t.evaluations
                };
                let mut req = t.post(uri, ctx.pdp_auth.as_ref(), ctx.pdp_body.clone());
                req.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                let (parts, body) = self.conn.exchange("evaluation", req).await?;
                if parts.status == StatusCode::OK
                    && contains(&body, br#""decision":true"#)
                    && !contains(&body, br#""decision":false"#)
                {
                    return Ok(());
                }
                Err(Failure::answer("evaluation", parts.status, &body))
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Timeline {
    warm_end: Instant,
    end: Instant,
}

#[derive(Default)]
struct Tally {
    /// Successful measured iterations, in microseconds.
    latencies_us: Vec<u32>,
    errors: u64,
}

async fn drive(ctx: Arc<Ctx>, mut w: Worker, tl: Timeline) -> Tally {
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(4096),
        errors: 0,
    };
    loop {
        let start = Instant::now();
        if start >= tl.end {
            break;
        }
        let measured = start >= tl.warm_end;
        if w.refresh_token.is_none() && ctx.scenario == Scenario::Refresh {
            // The chain broke (an error above): log in again, untimed, since
            // a login is not what this scenario measures.
            if let Err(f) = w.relogin(&ctx.target).await {
                tally.errors += u64::from(measured);
                ctx.report(&f);
                tokio::time::sleep(BACKOFF).await;
            }
            continue;
        }
        if measured && ctx.started.fetch_add(1, Ordering::Relaxed) >= ctx.max_requests {
            break;
        }
        // saml_acs: the prepared logins are used up.
        if ctx.acs.as_ref().is_some_and(|p| p.len() == 0) {
            break;
        }
        match w.iterate(&ctx).await {
            Ok(()) => {
                if measured {
                    let us = start.elapsed().as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            Err(f) => {
                tally.errors += u64::from(measured);
                ctx.report(&f);
                if f.status.is_none() {
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }
    tally
}

/// One access token for the introspect scenario.
async fn fetch_access_token(t: &Target) -> anyhow::Result<String> {
    let mut conn = Conn::new(t.addr);
    let req = t.post(&t.token, Some(&t.cc_basic), Bytes::from_static(CC_BODY));
    let (parts, body) = conn
        .exchange("token", req)
        .await
        .map_err(|f| anyhow!("getting an access token to introspect: {f}"))?;
    quoted_after(&body, br#""access_token":""#)
        .filter(|_| parts.status == StatusCode::OK)
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow!(
                "getting an access token to introspect: {}",
                Failure::answer("token", parts.status, &body)
            )
        })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.duration > MAX_DURATION_SECS {
        eprintln!("interkom-load: --duration capped at {MAX_DURATION_SECS} s");
    }
    let duration = Duration::from_secs(cli.duration.min(MAX_DURATION_SECS));
    let warmup = Duration::from_secs(cli.warmup);
    let scenario = cli.scenario;
    let connections = cli.connections as usize;
    let target = Target::new(&cli)?;
    let introspect_body = if scenario == Scenario::Introspect {
        let token = tokio::time::timeout(SETUP_LIMIT, fetch_access_token(&target))
            .await
            .map_err(|_| {
                anyhow!(
                    "no access token to introspect within {} s",
                    SETUP_LIMIT.as_secs()
                )
            })??;
        Bytes::from(format!("token={}", enc(&token)))
    } else {
        Bytes::new()
    };
    let (pdp_auth, pdp_body) = if matches!(scenario, Scenario::Authzen | Scenario::AuthzenBatch) {
        let token = tokio::time::timeout(SETUP_LIMIT, fetch_access_token(&target))
            .await
            .map_err(|_| {
                anyhow!(
                    "no access token for the PDP within {} s",
                    SETUP_LIMIT.as_secs()
                )
            })??;
        let auth_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let common = format!(
            r#""subject":{{"type":"user","id":"jan.meyer"}},"action":{{"name":"read"}},"context":{{"acr":"urn:interkom:loa:low","amr":["pwd"],"auth_time":{auth_time}}}"#
        );
        let resource = r#"{"type":"resource","id":"ratsinfo-hitzacker"}"#;
        let body = if scenario == Scenario::Authzen {
            format!("{{{common},\"resource\":{resource}}}")
        } else {
            let items = vec![format!("{{\"resource\":{resource}}}"); 10].join(",");
            format!("{{{common},\"evaluations\":[{items}]}}")
        };
        (
            Some(HeaderValue::from_str(&format!("Bearer {token}"))?),
            Bytes::from(body),
        )
    } else {
        (None, Bytes::new())
    };
    let forward = if scenario == Scenario::ForwardCheck {
        Some(forward_login(&target, &cli).await?)
    } else {
        None
    };
    let saml = if scenario == Scenario::SamlSso {
        Some(saml_login(&target, &cli).await?)
    } else {
        None
    };
    let acs = if scenario == Scenario::SamlAcs {
        let prefix = cli
            .saml_idp
            .as_deref()
            .context("saml_acs needs --saml-idp PREFIX (interkom-bench-idp)")?;
        let pool = saml_acs::prepare(
            &target,
            prefix,
            &cli.issuer,
            cli.saml_prepared as usize,
            connections,
        )
        .await?;
        eprintln!("interkom-load: {} SAML logins prepared", pool.len());
        Some(pool)
    } else {
        None
    };
    let max_requests = match &acs {
        // Warm-up takes from the pool too.
        Some(pool) => cli.max_requests.min(pool.len() as u64),
        None => cli.max_requests,
    };
    let ctx = Arc::new(Ctx {
        acs,
        saml,
        forward,
        target,
        scenario,
        introspect_body,
        pdp_auth,
        pdp_body,
        started: AtomicU64::new(0),
        max_requests,
        reported: AtomicBool::new(false),
    });

    // Connect (and log in, for refresh) first, so the clock only sees load.
    let setup_deadline = Instant::now() + SETUP_LIMIT;
    let setups: Vec<_> = (0..connections)
        .map(|i| {
            let ctx = Arc::clone(&ctx);
            tokio::spawn(async move { Worker::setup(&ctx, i).await })
        })
        .collect();
    let mut workers = Vec::with_capacity(connections);
    for h in setups {
        match timeout_at(setup_deadline, h).await {
            Ok(Ok(Ok(w))) => workers.push(w),
            Ok(Ok(Err(f))) => bail!("setting up a connection: {f}"),
            Ok(Err(e)) => bail!("setting up a connection: {e}"),
            Err(_) => bail!(
                "setting up {connections} connections took longer than {} s",
                SETUP_LIMIT.as_secs()
            ),
        }
    }

    let t0 = Instant::now();
    let tl = Timeline {
        warm_end: t0 + warmup,
        end: t0 + warmup + duration,
    };
    let handles: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(drive(Arc::clone(&ctx), w, tl)))
        .collect();
    let hard_deadline = tl.end + GRACE;
    let mut total = Tally::default();
    let mut abandoned = 0u64;
    for mut h in handles {
        match timeout_at(hard_deadline, &mut h).await {
            Ok(Ok(t)) => {
                total.latencies_us.extend_from_slice(&t.latencies_us);
                total.errors += t.errors;
            }
            Ok(Err(_)) => abandoned += 1,
            Err(_) => {
                h.abort();
                abandoned += 1;
            }
        }
    }
    let stopped = Instant::now();
    if abandoned > 0 {
        eprintln!("interkom-load: {abandoned} connection(s) did not finish in time; each counted as one error");
        total.errors += abandoned;
    }

    let seconds = stopped
        .saturating_duration_since(tl.warm_end)
        .as_secs_f64()
        .max(1e-3);
    let mut lat = total.latencies_us;
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let requests = ok + total.errors;
    let rps = ok as f64 / seconds;
    let p = |q: f64| percentile_ms(&lat, q);
    let (p50, p90, p99, max) = (p(50.0), p(90.0), p(99.0), p(100.0));
    println!(
        "{{\"scenario\":\"{}\",\"requests\":{requests},\"errors\":{},\"seconds\":{seconds:.3},\"rps\":{rps:.1},\
         \"p50_ms\":{},\"p90_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"connections\":{connections}}}",
        scenario.name(),
        total.errors,
        json_ms(p50),
        json_ms(p90),
        json_ms(p99),
        json_ms(max),
    );
    eprintln!(
        "{}: {requests} iterations, {} errors, {seconds:.2} s, {connections} connections: {rps:.1}/s, \
         p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        scenario.name(),
        total.errors,
        json_ms(p50),
        json_ms(p90),
        json_ms(p99),
        json_ms(max),
    );
    Ok(())
}

/// Nearest-rank percentile of sorted microsecond samples, in milliseconds.
fn percentile_ms(sorted: &[u32], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = ((q / 100.0) * n as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, n) - 1)
        .map(|&us| f64::from(us) / 1000.0)
}

fn json_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_owned(), |ms| format!("{ms:.3}"))
}
