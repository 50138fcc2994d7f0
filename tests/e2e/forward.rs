//! Forward authentication at the protocol level: the requests Traefik and
//! Caddy send (`X-Forwarded-*`) and nginx's (`X-Original-*`), the pages on
//! the protected host, the admin API's rules. The real proxies in front of
//! a backend, driven by Chromium, are in tests/browser/forward*.test.mjs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

const APP1: &str = "https://intranet.hitzacker.example";
const APP2: &str = "https://ratsinfo.hitzacker.example";
const GORLEBEN: &str = "https://intranet.gorleben.example";

/// A protected host as its proxy sees it: interkom's pages under
/// `/.interkom/` passed on, the host's own cookies kept.
struct Host {
    origin: String,
    cookies: HashMap<String, String>,
}

impl Host {
    fn new(origin: &str) -> Host {
        Host {
            origin: origin.to_owned(),
            cookies: HashMap::new(),
        }
    }

    fn forwarded(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let host = self.origin.split("://").nth(1).unwrap();
        let proto = self.origin.split("://").next().unwrap();
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut r = r
            .header("x-forwarded-host", host)
            .header("x-forwarded-proto", proto);
        if !cookie.is_empty() {
            r = r.header("cookie", cookie.join("; "));
        }
        r
    }

    /// Keeps what the host's cookies became.
    fn keep(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    /// The check as Traefik and Caddy send it.
    async fn check(&self, s: &TestServer, method: &str, uri: &str) -> reqwest::Response {
        self.forwarded(TestServer::http().get(s.url("/forward-auth/check")))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .send()
            .await
            .unwrap()
    }

    /// The check as the shipped nginx snippet sends it.
    async fn check_nginx(&self, s: &TestServer, method: &str, uri: &str) -> reqwest::Response {
        self.forwarded(TestServer::http().get(s.url("/forward-auth/nginx")))
            .header("x-original-method", method)
            .header("x-original-uri", uri)
            .send()
            .await
            .unwrap()
    }

    /// A URL on the host under `/.interkom/` (or its full address), as
    /// the proxy passes it to interkom.
    async fn page(&mut self, s: &TestServer, url: &str) -> reqwest::Response {
        let path = url.strip_prefix(&self.origin).unwrap_or(url);
        let rest = path
            .strip_prefix("/.interkom/")
            .expect("a page of interkom");
        let res = self
            .forwarded(TestServer::http().get(s.url(&format!("/forward-auth/{rest}"))))
            .send()
            .await
            .unwrap();
        self.keep(&res);
        res
    }

    /// A whole login from a check: the start page, interkom's login form
    /// in `browser`, the callback; returns the callback's answer.
    async fn log_in(
        &mut self,
        s: &TestServer,
        browser: &Browser,
        uri: &str,
        user: &str,
        password: &str,
    ) -> reqwest::Response {
        let res = self.check(s, "GET", uri).await;
        assert_eq!(res.status(), 302, "a login is asked for");
        let start = location(&res).unwrap();
        assert!(
            start.starts_with(&format!("{}/.interkom/start?", self.origin)),
            "{start}"
        );
        let res = self.page(s, &start).await;
        assert_eq!(res.status(), 303);
        let authorize = location(&res).unwrap();
        assert!(authorize.starts_with(&s.url("/authorize?")), "{authorize}");
        let form = browser.open_login(s, &authorize).await;
        let res = browser.submit(&form, user, password).await;
        assert_eq!(
            res.status(),
            303,
            "{}",
            res.text().await.unwrap_or_default()
        );
        self.callback(s, &location(&res).unwrap()).await
    }

    async fn callback(&mut self, s: &TestServer, url: &str) -> reqwest::Response {
        assert!(
            url.starts_with(&format!("{}/.interkom/callback?", self.origin)),
            "{url}"
        );
        self.page(s, url).await
    }
}

fn app(id: &str, tenant: &str, origin: &str, resource: &str) -> Value {
    json!({
        "id": id, "tenant": tenant, "name": format!("Anwendung {id}"),
        "origins": [origin], "resource": resource,
    })
}

/// The status of an admin API call without a body.
async fn status(s: &TestServer, token: &str, method: Method, path: &str) -> u16 {
    admin(s, method, token, path, None).await.0
}

async fn register(s: &TestServer, token: &str, body: Value) -> (u16, Value) {
    let id = body["id"].as_str().unwrap().to_owned();
    admin(
        s,
        Method::PUT,
        token,
        &format!("/applications/{id}"),
        Some(body),
    )
    .await
}

/// A node with the demo's Hitzacker intranet (normal) and Ratsinfo, and
/// Gorleben's intranet; the Kreis's administrator registered them.
async fn setup() -> (TestServer, String) {
    let s = TestServer::start().await;
    let kreis = admin_account(
        &s,
        "lk-luechow-dannenberg",
        "kreis.it",
        &["admin", "sachbearbeitung"],
    )
    .await;
    let mut one = app(
        "intranet-hitzacker",
        "hitzacker-elbe",
        APP1,
        "ratsinfo-hitzacker",
    );
    one["jwt"] = json!(true);
    for body in [
        one,
        app(
            "ratsinfo-hitzacker-web",
            "hitzacker-elbe",
            APP2,
            "ratsinfo-hitzacker",
        ),
        app(
            "intranet-gorleben",
            "gorleben",
            GORLEBEN,
            "ratsinfo-gorleben",
        ),
    ] {
        let (st, v) = register(&s, &kreis, body).await;
        assert_eq!(st, 201, "{v}");
    }
    (s, kreis)
}

#[tokio::test]
async fn a_login_through_the_traefik_contract_sets_the_host_cookie_and_the_headers() {
    let (s, _) = setup().await;
    let browser = Browser::new();
    let mut host = Host::new(APP1);
    let res = host
        .log_in(
            &s,
            &browser,
            "/akten?x=1&y=2",
            "jan.meyer",
            "Hitzacker-Demo-2026!",
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res).unwrap(), format!("{APP1}/akten?x=1&y=2"));
    let set: Vec<&str> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let cookie = set.iter().find(|c| c.starts_with("interkom_app=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Domain"),
        "a cookie of this host only: {cookie}"
    );

    let res = host.check(&s, "GET", "/akten").await;
    assert_eq!(res.status(), 200);
    let h = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("x-interkom-user").as_deref(), Some("jan.meyer"));
    assert_eq!(h("x-interkom-tenant").as_deref(), Some("hitzacker-elbe"));
    assert_eq!(h("x-interkom-acr").as_deref(), Some("urn:interkom:loa:low"));
    assert!(h("x-interkom-roles").unwrap().contains("sachbearbeitung"));
    let subject = h("x-interkom-subject").unwrap();
    // The JWT verifies with interkom's keys and names this application.
    let jwt = h("x-interkom-jwt").unwrap();
    let claims = jwt_payload(&jwt);
    assert_eq!(claims["aud"], "intranet-hitzacker");
    assert_eq!(claims["sub"], subject.as_str());
    assert_eq!(claims["iss"], s.issuer.as_str());
    let keys = jwks(&s).await;
    let kid = jwt_header(&jwt)["kid"].as_str().unwrap().to_owned();
    let jwk = keys.find(&kid).expect("signed with a published key");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["intranet-hitzacker"]);
    v.set_issuer(&[s.issuer.as_str()]);
    jsonwebtoken::decode::<Value>(&jwt, &key, &v).expect("a valid JWT");
    // A write is decided as such (the clerk may write the Ratsinfo).
    assert_eq!(host.check(&s, "POST", "/akten").await.status(), 200);

    // The login and the host session are audited with the application as
    // client.
    let issued = s.audit("token_issued").await;
    assert!(issued.iter().any(
        |e| e.actor_client.as_deref() == Some("app:intranet-hitzacker")
            && e.details.contains("forward_auth")
    ));
}

#[tokio::test]
async fn single_sign_on_reaches_a_second_host_without_a_password_and_cookies_stay_per_host() {
    let (s, _) = setup().await;
    let browser = Browser::new();
    let mut one = Host::new(APP1);
    let res = one
        .log_in(&s, &browser, "/", "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    assert_eq!(res.status(), 303);
    // The first host's cookie means nothing on the second.
    let mut two = Host::new(APP2);
    two.cookies = one.cookies.clone();
    assert_eq!(two.check(&s, "GET", "/").await.status(), 302);
    two.cookies.clear();
    // The browser's interkom session logs it in without a form.
    let res = two.check(&s, "GET", "/sitzungen").await;
    let start = location(&res).unwrap();
    let res = two.page(&s, &start).await;
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 303, "single sign-on: no login page");
    let res = two.callback(&s, &location(&res).unwrap()).await;
    assert_eq!(location(&res).unwrap(), format!("{APP2}/sitzungen"));
    let res = two.check(&s, "GET", "/sitzungen").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-interkom-user"], "jan.meyer");
    // Headers the application did not choose are not sent.
    assert!(res.headers().get("x-interkom-jwt").is_none());
}

#[tokio::test]
async fn nginx_gets_401_for_a_login_and_403_with_a_page_for_a_denial() {
    let (s, _) = setup().await;
    let browser = Browser::new();
    let host = Host::new(GORLEBEN);
    let res = host.check_nginx(&s, "GET", "/").await;
    assert_eq!(res.status(), 401, "nginx follows no redirect");
    assert!(res.headers().get("location").is_none());

    // A Hitzacker clerk logged in at Gorleben's intranet: denied.
    let mut g = Host::new(GORLEBEN);
    let res = g
        .log_in(&s, &browser, "/", "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    // The login flow itself refuses: the callback shows the denial page
    // and sets no host cookie.
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("keinen Zugang"));
    assert!(!g.cookies.contains_key("interkom_app"));
    let denied = s.audit("decision_denied").await;
    assert!(denied
        .iter()
        .any(|e| e.details.contains("ratsinfo-gorleben")));

    // A host nobody registered: refused, never a login.
    let other = Host::new("https://unbekannt.example");
    let res = other.check_nginx(&s, "GET", "/").await;
    assert_eq!(res.status(), 403);
    // Headers that do not name a host: a page, not a 500.
    let res = TestServer::http()
        .get(s.url("/forward-auth/check"))
        .header(
            "x-forwarded-host",
            "evil.example/@intranet.hitzacker.example",
        )
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_session_that_loses_its_permission_is_denied_at_the_next_check_and_audited() {
    let (s, kreis) = setup().await;
    let browser = Browser::new();
    let mut host = Host::new(APP1);
    host.log_in(&s, &browser, "/", "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    assert_eq!(host.check(&s, "GET", "/").await.status(), 200);
    // The application is moved onto a resource the clerk may not use
    // (Gorleben's): the very next check denies, with a page.
    let mut moved = app(
        "intranet-hitzacker",
        "hitzacker-elbe",
        APP1,
        "haushalt-hitzacker-elbe",
    );
    moved["actions"] = json!({ "GET": "delete", "*": "delete" });
    let (st, v) = admin(
        &s,
        Method::PUT,
        &kreis,
        "/applications/intranet-hitzacker",
        Some(moved),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = host.check(&s, "GET", "/").await;
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("x-interkom-user").is_none());
    let denied = s.audit("decision_denied").await;
    assert!(
        denied
            .iter()
            .any(|e| e.details.contains("forward_auth")
                && e.details.contains("haushalt-hitzacker-elbe")),
        "the denial is audited"
    );
}

#[tokio::test]
async fn a_hoch_application_asks_a_low_session_for_a_step_up() {
    let (s, kreis) = setup().await;
    let (st, v) = register(
        &s,
        &kreis,
        app(
            "kasse-hitzacker",
            "hitzacker-elbe",
            "https://kasse.hitzacker.example",
            "haushalt-hitzacker-elbe",
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let browser = Browser::new();
    let mut low = Host::new(APP1);
    low.log_in(&s, &browser, "/", "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    // The same session on the hoch host: the flow asks for more than the
    // password (jan.meyer has no second factor: the login cannot reach
    // the level, and the host shows why instead of letting him in).
    let mut kasse = Host::new("https://kasse.hitzacker.example");
    let res = kasse.check(&s, "GET", "/").await;
    let res = kasse.page(&s, &location(&res).unwrap()).await;
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 303);
    let res = kasse.callback(&s, &location(&res).unwrap()).await;
    assert_eq!(res.status(), 403);
    assert!(!kasse.cookies.contains_key("interkom_app"));
}

#[tokio::test]
async fn the_callback_refuses_replays_foreign_states_and_codes_of_other_hosts() {
    let (s, _) = setup().await;
    let browser = Browser::new();
    let mut host = Host::new(APP1);
    let res = host.check(&s, "GET", "/").await;
    host.page(&s, &location(&res).unwrap()).await;
    let state_cookie = host.cookies.clone();
    let res = host.check(&s, "GET", "/").await;
    let res = host.page(&s, &location(&res).unwrap()).await;
    let authorize = location(&res).unwrap();
    let form = browser.open_login(&s, &authorize).await;
    let res = browser
        .submit(&form, "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    let callback = location(&res).unwrap();

    // Another browser (no state cookie of this login) cannot use the code.
    let mut stranger = Host::new(APP1);
    let res = stranger.callback(&s, &callback).await;
    assert_eq!(res.status(), 400);
    assert!(!stranger.cookies.contains_key("interkom_app"));
    // Nor the state cookie of an earlier login in this browser.
    let mut earlier = Host::new(APP1);
    earlier.cookies = state_cookie;
    assert_eq!(earlier.callback(&s, &callback).await.status(), 400);
    // The code on another host's callback: refused.
    let mut other = Host::new(APP2);
    other.cookies = host.cookies.clone();
    let foreign = callback.replace(APP1, APP2);
    assert_eq!(other.callback(&s, &foreign).await.status(), 400);
    // The right one works once.
    let mut again = Host::new(APP1);
    again.cookies = host.cookies.clone();
    let res = host.callback(&s, &callback).await;
    assert_eq!(res.status(), 303);
    let res = again.callback(&s, &callback).await;
    assert_eq!(res.status(), 400, "a code is used once");
    assert!(!again.cookies.contains_key("interkom_app"));
}

#[tokio::test]
async fn the_return_address_is_never_another_site() {
    let (s, _) = setup().await;
    let mut host = Host::new(APP1);
    for rd in [
        "https://evil.example/",
        "https://intranet.hitzacker.example.evil.example/",
        "https://user@evil.example/",
        "//evil.example/",
        "https%3A%2F%2Fevil.example%2F",
        "javascript:alert(1)",
        // Another registered host: the cookie is set on this one only.
        "https://ratsinfo.hitzacker.example/",
    ] {
        let res = host
            .page(&s, &format!("{APP1}/.interkom/start?m=GET&rd={rd}"))
            .await;
        assert_eq!(res.status(), 400, "{rd}");
        assert!(res.headers().get("location").is_none(), "{rd}");
        assert!(!host.cookies.contains_key("interkom_app_login"), "{rd}");
    }
    // A start on a host nobody registered: refused.
    let mut nobody = Host::new("https://nobody.example");
    let res = nobody
        .page(
            &s,
            "https://nobody.example/.interkom/start?rd=https://nobody.example/",
        )
        .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn logout_ends_every_host_session_at_once_here_and_within_five_seconds_on_another_node() {
    let (a, _) = setup().await;
    let b = TestServer::start_on(a.database_url.clone(), Some(a.kek.clone()), |_| {}).await;
    let browser = Browser::new();
    let mut one = Host::new(APP1);
    one.log_in(&a, &browser, "/", "jan.meyer", "Hitzacker-Demo-2026!")
        .await;
    let mut two = Host::new(APP2);
    let res = two.check(&a, "GET", "/").await;
    let res = two.page(&a, &location(&res).unwrap()).await;
    let res = browser.get(&location(&res).unwrap()).await;
    two.callback(&a, &location(&res).unwrap()).await;
    // Both nodes read (and cache) the host sessions.
    for node in [&a, &b] {
        assert_eq!(one.check(node, "GET", "/").await.status(), 200);
        assert_eq!(two.check(node, "GET", "/").await.status(), 200);
    }
    let old_one = one.cookies.clone();
    let res = one.page(&a, &format!("{APP1}/.interkom/logout")).await;
    assert_eq!(res.status(), 200);
    let ended = Instant::now();
    assert!(
        !one.cookies.contains_key("interkom_app"),
        "the cookie is deleted"
    );
    // On the node that logged out, at once, even with the old cookies.
    one.cookies = old_one;
    assert_eq!(one.check(&a, "GET", "/").await.status(), 302);
    assert_eq!(
        two.check(&a, "GET", "/").await.status(),
        302,
        "every host's"
    );
    // On the other node within the cache's lifetime.
    loop {
        let (x, y) = (
            one.check(&b, "GET", "/").await,
            two.check(&b, "GET", "/").await,
        );
        if x.status() == 302 && y.status() == 302 {
            break;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(6),
            "still in after {:?}",
            ended.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // interkom's own session ended too: the next login asks for the form.
    let res = one.check(&a, "GET", "/").await;
    let res = one.page(&a, &location(&res).unwrap()).await;
    let res = browser.get(&location(&res).unwrap()).await;
    assert_eq!(res.status(), 200, "the login form again");
    let logouts = a.audit("logout").await;
    assert!(logouts.iter().any(|e| e.details.contains("forward_auth")));
}

#[tokio::test]
async fn administrators_register_applications_only_within_their_subtree() {
    let (s, kreis) = setup().await;
    let gemeinde = admin_account(
        &s,
        "hitzacker-elbe",
        "gem.admin",
        &["admin", "sachbearbeitung"],
    )
    .await;
    let second = admin_account(
        &s,
        "hitzacker-elbe",
        "gem.admin2",
        &["admin", "sachbearbeitung"],
    )
    .await;
    // Another Kommune's tenant, or its resource: refused.
    let (st, v) = register(
        &s,
        &gemeinde,
        app("x", "gorleben", "https://x.example", "ratsinfo-gorleben"),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = register(
        &s,
        &gemeinde,
        app("x", "hitzacker-elbe", "https://x.example", "kfz-zulassung"),
    )
    .await;
    assert_eq!(st, 403, "the Kreis's resource: {v}");
    // An origin of another tenant's application: not even a path on it.
    let mut path = app("x", "hitzacker-elbe", GORLEBEN, "ratsinfo-hitzacker");
    path["paths"] = json!(["/hitzacker"]);
    let (st, v) = register(&s, &gemeinde, path).await;
    assert_eq!(st, 409, "{v}");
    // The same place twice: refused, and nothing stored is lost.
    let (st, v) = register(
        &s,
        &gemeinde,
        app("x", "hitzacker-elbe", APP1, "ratsinfo-hitzacker"),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(
        status(&s, &kreis, Method::GET, "/applications/intranet-hitzacker").await,
        200
    );
    // Bad input: a problem, never stored.
    for (field, value) in [
        ("origins", json!(["http://intranet.example"])),
        ("origins", json!(["https://intranet.example/pfad"])),
        ("paths", json!(["/../admin"])),
        ("paths", json!(["/.interkom/x"])),
        ("actions", json!({ "GET": "read" })),
        ("headers", json!(["password"])),
        ("resource", json!("unbekannt")),
    ] {
        let mut body = app(
            "bad",
            "hitzacker-elbe",
            "https://bad.example",
            "ratsinfo-hitzacker",
        );
        body[field] = value.clone();
        let (st, v) = register(&s, &gemeinde, body).await;
        assert_eq!(st, 400, "{field} = {value}: {v}");
        assert_eq!(v["status"], 400, "problem+json: {v}");
    }
    assert_eq!(
        status(&s, &kreis, Method::GET, "/applications/bad").await,
        404
    );

    // The Gemeinde's own: fine, and it sees only its subtree's.
    let (st, v) = register(
        &s,
        &gemeinde,
        app(
            "kasse",
            "hitzacker-elbe",
            "https://kasse.hitzacker.example",
            "haushalt-hitzacker-elbe",
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (_, list) = admin(&s, Method::GET, &gemeinde, "/applications", None).await;
    let ids: Vec<&str> = list["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"kasse") && !ids.contains(&"intranet-gorleben"),
        "{ids:?}"
    );
    assert_eq!(
        status(
            &s,
            &gemeinde,
            Method::GET,
            "/applications/intranet-gorleben"
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &s,
            &gemeinde,
            Method::DELETE,
            "/applications/intranet-gorleben"
        )
        .await,
        403
    );

    // A path of the hoch Kasse opened with a normal resource: a lower
    // protection need, so a proposal; the proposer cannot approve it.
    let mut public = app(
        "kasse-public",
        "hitzacker-elbe",
        "https://kasse.hitzacker.example",
        "ratsinfo-hitzacker",
    );
    public["paths"] = json!(["/oeffentlich"]);
    let (st, v) = register(&s, &gemeinde, public).await;
    assert_eq!(st, 202, "{v}");
    let pid = v["proposal"].as_str().unwrap().to_owned();
    assert_eq!(
        status(&s, &gemeinde, Method::GET, "/applications/kasse-public").await,
        404,
        "nothing applied before the approval"
    );
    let st = status(
        &s,
        &gemeinde,
        Method::POST,
        &format!("/proposals/{pid}/approve"),
    )
    .await;
    assert_eq!(st, 403);
    let (st, v) = admin(
        &s,
        Method::POST,
        &second,
        &format!("/proposals/{pid}/approve"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        status(&s, &gemeinde, Method::GET, "/applications/kasse-public").await,
        200
    );
    // Removing the Kasse leaves /oeffentlich as it is and the rest denied:
    // nothing weaker, so no proposal.
    let (st, v) = admin(&s, Method::DELETE, &gemeinde, "/applications/kasse", None).await;
    assert_eq!(st, 204, "{v}");
    let changes = s.audit("admin_change").await;
    assert!(changes
        .iter()
        .any(|e| e.details.contains("application.delete")));
}
