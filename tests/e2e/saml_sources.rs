//! Citizens and businesses through a SAML identity source: interkom as
//! service provider of a BundID-like IdP from another ecosystem (pysaml2
//! with PyPI's xmlsec, `tests/saml/idp.py`): signed AuthnRequests with the
//! AKDB extension, encrypted (AES-256-GCM, RSA-OAEP-SHA256) and signed
//! assertions, transient NameIDs, STORK level strings, bPK2. The Leistung
//! is an OIDC client; the flow runs as a browser would (cookies, forms).

use std::collections::BTreeMap;

use interkom_directory::saml_sources::{LevelName, RequestBinding, SamlSourceConfig};
use interkom_policy::{Loa, Population};
use serde_json::Value;

use crate::common::*;

const AKDB_EXTENSION: &str = concat!(
    r#"<akdb:AuthenticationRequest xmlns:akdb="https://www.akdb.de/request/2018/09" "#,
    r#"xmlns:classic-ui="https://www.akdb.de/request/2018/09/classic-ui/v1" Version="2" EnableStatusDetail="true">"#,
    r#"<akdb:RequestedAttributes>{requested_attributes}</akdb:RequestedAttributes>"#,
    r#"<akdb:DisplayInformation><classic-ui:Version><classic-ui:OrganizationDisplayName>{organisation}</classic-ui:OrganizationDisplayName>"#,
    r#"<classic-ui:OnlineServiceId>{online_service_id}</classic-ui:OnlineServiceId><classic-ui:Lang>{lang}</classic-ui:Lang>"#,
    r#"</classic-ui:Version></akdb:DisplayInformation></akdb:AuthenticationRequest>"#
);

/// The BundID registration, with the names of its interface description.
fn bundid(id: &str, population: Population) -> SamlSourceConfig {
    let mut attributes = BTreeMap::new();
    for (claim, name) in [
        ("given_name", "urn:oid:2.5.4.42"),
        ("family_name", "urn:oid:2.5.4.4"),
        ("birthdate", "urn:oid:1.2.40.0.10.2.1.1.55"),
        ("address", "urn:oid:2.5.4.16"),
        ("email", "urn:oid:0.9.2342.19200300.100.1.3"),
        ("organisation", "urn:x-interkom-test:muk:organisation"),
    ] {
        attributes.insert(claim.to_owned(), name.to_owned());
    }
    let level = |name: &str, loa| LevelName {
        name: name.into(),
        loa,
    };
    SamlSourceConfig {
        id: id.into(),
        tenant: "lk-luechow-dannenberg".into(),
        name: if population == Population::Citizen {
            "BundID".into()
        } else {
            "Mein Unternehmenskonto".into()
        },
        description: String::new(),
        population,
        metadata_url: None,
        metadata_file: None,
        binding: RequestBinding::Post,
        levels: vec![
            level("STORK-QAA-Level-1", Loa::Low),
            level("STORK-QAA-Level-3", Loa::Substantial),
            level("STORK-QAA-Level-4", Loa::High),
        ],
        level_attribute: Some("urn:oid:1.2.40.0.10.2.1.1.261.94".into()),
        pseudonym_attribute: if population == Population::Citizen {
            "urn:oid:1.3.6.1.4.1.25484.494450.3".into()
        } else {
            "urn:x-interkom-test:muk:organisationPseudonym".into()
        },
        attributes,
        extensions: Some(AKDB_EXTENSION.into()),
        requested_attribute: Some(
            r#"<akdb:RequestedAttribute Name="{name}" RequiredAttribute="{required}"/>"#.into(),
        ),
        force_authn: false,
        clock_skew: 60,
    }
}

/// A node with the IdP registered as `bundid` (and as `muk`).
async fn setup(idp_args: &[&str]) -> (TestServer, PyPeer) {
    let s = TestServer::start_with(|fc| fc.brokering.allow_loopback = true).await;
    let idp = PyPeer::start(
        "idp.py",
        "--sp-metadata",
        &s.url("/saml/sp/metadata"),
        idp_args,
    );
    s.app
        .directory
        .put_saml_source(bundid("bundid", Population::Citizen), &idp.metadata().await)
        .await
        .unwrap();
    (s, idp)
}

/// A hidden field, or the action, of the first form in a page.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let at = html.find("<form").expect("a form");
    let action = attr(&html[at..], "action");
    let mut fields = Vec::new();
    let mut rest = &html[at..];
    while let Some(i) = rest.find("type=\"hidden\"") {
        let tail = &rest[i..];
        let end = tail.find('>').unwrap();
        let tag = &tail[..end];
        fields.push((attr(tag, "name"), attr(tag, "value")));
        rest = &tail[end..];
    }
    (action, fields)
}

struct Started {
    verifier: String,
    redirect: String,
}

/// The authorization URL of the Leistung `client` (its demo redirect on
/// `port`), with a PKCE challenge; the verifier.
fn leistung_url(s: &TestServer, client: &str, port: u16) -> (String, Started) {
    let (verifier, challenge) = pkce();
    let redirect = format!("http://localhost:{port}/callback");
    let url = authorize_url(
        s,
        &[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", &redirect),
            ("scope", "openid profile email"),
            ("state", "st"),
            ("nonce", "no"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    (url, Started { verifier, redirect })
}

/// Opens the Leistung's login: its page, with the sources offered.
async fn open(s: &TestServer, b: &Browser, client: &str, port: u16) -> (Started, String) {
    let (url, started) = leistung_url(s, client, port);
    let res = b.get(&url).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    (started, html)
}

/// Chooses `source` on the Leistung's page (`html`); returns the IdP's
/// login page and the AuthnRequest's XML.
async fn choose(s: &TestServer, b: &Browser, html: &str, source: &str) -> (String, String) {
    let mut fields = vec![
        ("login_request".to_owned(), hidden(html, "login_request")),
        ("csrf_token".to_owned(), hidden(html, "csrf_token")),
        ("source".to_owned(), source.to_owned()),
    ];
    if html.contains("name=\"retry\"") {
        fields.push(("retry".into(), "1".into()));
    }
    let res = b
        .http
        .post(s.url("/login/saml"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the page that posts the AuthnRequest");
    let (action, fields) = form_of(&res.text().await.unwrap());
    let request = fields
        .iter()
        .find(|(n, _)| n == "SAMLRequest")
        .unwrap()
        .1
        .clone();
    let xml = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &request).unwrap(),
    )
    .unwrap();
    let res = b.http.post(&action).form(&fields).send().await.unwrap();
    assert_eq!(res.status(), 200, "the IdP accepts the signed request");
    (res.text().await.unwrap(), xml)
}

/// Logs in at the IdP's page; returns the fields it posts to our ACS.
async fn idp_login(
    b: &Browser,
    idp: &PyPeer,
    page: &str,
    user: &str,
    level: &str,
) -> (String, Vec<(String, String)>) {
    let token = hidden(page, "token");
    let res = b
        .http
        .post(idp.url("/login"))
        .form(&[
            ("token", token.as_str()),
            ("user", user),
            ("level", level),
            ("action", "login"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    form_of(&res.text().await.unwrap())
}

/// Posts the Response to the ACS and follows to the end of the login.
async fn post_acs(b: &Browser, action: &str, fields: &[(String, String)]) -> reqwest::Response {
    let res = b.http.post(action).form(fields).send().await.unwrap();
    if res.status() != 303 {
        return res;
    }
    b.get(&location(&res).unwrap()).await
}

async fn tokens(s: &TestServer, client: &str, st: &Started, res: &reqwest::Response) -> Value {
    assert_eq!(res.status(), 303);
    let to = location(res).unwrap();
    assert!(to.starts_with(&st.redirect), "back at the Leistung: {to}");
    let code = redirect_params(res)["code"].clone();
    let res = s
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &st.redirect),
                ("client_id", client),
                ("code_verifier", &st.verifier),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_citizen_logs_in_at_hoch_and_the_leistung_gets_only_its_data() {
    let (s, idp) = setup(&[]).await;
    let b = Browser::new();
    let (st, html) = open(&s, &b, "meldebescheinigung-elbtalaue", 9012).await;
    // The page names the Leistung, the Kommune, the level and the data.
    assert!(html.contains("Meldebescheinigung"), "{html}");
    assert!(html.contains("Samtgemeinde Elbtalaue"));
    assert!(html.contains(">hoch<"));
    assert!(html.contains("§ 18 Abs. 1 Bundesmeldegesetz"));
    assert!(html.contains("data-claim=\"birthdate\""));
    assert!(html.contains("value=\"bundid\""));
    let (page, request) = choose(&s, &b, &html, "bundid").await;
    // Signed, asking for the level in BundID's names, with the extension.
    assert!(request.contains("<ds:Signature"), "{request}");
    assert!(request.contains(r#"Comparison="minimum""#));
    assert!(request.contains("STORK-QAA-Level-4"));
    assert!(request.contains("meldebescheinigung-elbtalaue"));
    assert!(
        page.contains("id=\"online-service-id\">meldebescheinigung-elbtalaue"),
        "{page}"
    );
    assert!(
        page.contains("urn:oid:1.2.40.0.10.2.1.1.55"),
        "the birthdate is asked for"
    );
    assert!(
        page.contains("id=\"level-3\" value=\"STORK-QAA-Level-3\" disabled"),
        "{page}"
    );
    let (action, fields) = idp_login(&b, &idp, &page, "erika", "STORK-QAA-Level-4").await;
    assert_eq!(action, s.url("/saml/sp/acs"));
    let res = post_acs(&b, &action, &fields).await;
    let t = tokens(&s, "meldebescheinigung-elbtalaue", &st, &res).await;
    let id = jwt_payload(t["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:interkom:loa:high");
    assert_eq!(id["given_name"], "Erika");
    assert_eq!(id["family_name"], "Mustermann");
    assert!(
        id["birthdate"].is_string() && id["address"].is_string(),
        "{id}"
    );
    // Data minimisation: nothing the Leistung is not registered for.
    for absent in ["email", "tenant", "roles", "preferred_username", "name"] {
        assert!(id.get(absent).is_none(), "{absent} leaked: {id}");
    }
    let at = jwt_payload(t["access_token"].as_str().unwrap());
    assert!(at.get("tenant").is_none() && at.get("roles").is_none());

    // The same Response again: refused, on every node (replay cache).
    let again = b.http.post(&action).form(&fields).send().await.unwrap();
    assert_eq!(again.status(), 400);

    // The consent to the transfer: which data, required and achieved level.
    let consents = s.audit("consent_given").await;
    let c = consents.last().unwrap();
    assert!(c.details.contains("meldebescheinigung-elbtalaue") && c.details.contains("birthdate"));
    assert!(c.details.contains("urn:interkom:loa:high"));
    // The audit trail is pseudonymous: no name, no account id.
    let logins = s.audit("login").await;
    let ev = logins.last().unwrap();
    let subject = ev.actor_subject.clone().unwrap();
    assert!(subject.starts_with("pseudonym:"), "{subject}");
    assert_eq!(ev.tenant.as_deref(), Some("sg-elbtalaue"));
    let mut all = Vec::new();
    for a in [
        "login",
        "token_issued",
        "account_provisioned",
        "login_failed",
    ] {
        all.extend(s.audit(a).await);
    }
    let text = serde_json::to_string(
        &all.iter()
            .map(|e| (&e.actor_subject, &e.details))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        !text.contains("Erika")
            && !text.contains("Mustermann")
            && !text.contains(id["sub"].as_str().unwrap()),
        "{text}"
    );
}

#[tokio::test]
async fn a_level_below_the_leistungs_is_shown_and_stepped_up_with_force_authn() {
    let (s, idp) = setup(&["--allow-lower-level"]).await;
    let b = Browser::new();
    let (st, html) = open(&s, &b, "bewohnerparken-dannenberg", 9011).await;
    let (page, request) = choose(&s, &b, &html, "bundid").await;
    assert!(request.contains("STORK-QAA-Level-3"));
    assert!(!request.contains("ForceAuthn"));
    // The IdP (wrongly) answers at level 1: the level comes from the
    // assertion, never from the request.
    let (action, fields) = idp_login(&b, &idp, &page, "max", "STORK-QAA-Level-1").await;
    let res = post_acs(&b, &action, &fields).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("„niedrig“") && html.contains("„substanziell“"),
        "{html}"
    );
    assert!(html.contains("name=\"retry\""));
    let failed = s.audit("login_failed").await;
    assert_eq!(
        failed.last().unwrap().reason.as_deref(),
        Some("level_too_low")
    );
    // Again, with a stronger means: ForceAuthn this time.
    let (page, request) = choose(&s, &b, &html, "bundid").await;
    assert!(request.contains(r#"ForceAuthn="true""#), "{request}");
    let (action, fields) = idp_login(&b, &idp, &page, "max", "STORK-QAA-Level-3").await;
    let res = post_acs(&b, &action, &fields).await;
    let t = tokens(&s, "bewohnerparken-dannenberg", &st, &res).await;
    let id = jwt_payload(t["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:interkom:loa:substantial");
    assert_eq!(id["given_name"], "Max Jürgen");
}

#[tokio::test]
async fn responses_of_no_request_of_ours_and_dtds_are_refused_with_a_page() {
    let (s, _idp) = setup(&[]).await;
    let b = Browser::new();
    let post = |xml: String| {
        let b = &b;
        let s = &s;
        async move {
            let v = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, xml);
            b.http
                .post(s.url("/saml/sp/acs"))
                .form(&[("SAMLResponse", v)])
                .send()
                .await
                .unwrap()
        }
    };
    let unsolicited = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_1" Version="2.0" IssueInstant="2026-12-07T00:00:00Z"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:Response>"#;
    let res = post(unsolicited.into()).await;
    assert_eq!(res.status(), 400);
    assert!(
        !res.text().await.unwrap().contains("<form"),
        "the page posts nothing"
    );
    let unknown = unsolicited.replace("ID=\"_1\"", "ID=\"_1\" InResponseTo=\"_never-sent\"");
    assert_eq!(post(unknown).await.status(), 400);
    let dtd = format!("<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{unsolicited}");
    assert_eq!(post(dtd).await.status(), 400);
    let res = b
        .http
        .post(s.url("/saml/sp/acs"))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(s.audit("login_failed").await.len() >= 4);
    // No account was made for any of them.
    assert!(s.audit("account_provisioned").await.is_empty());
}

#[tokio::test]
async fn the_sp_metadata_is_stable_and_has_no_valid_until_or_id() {
    let (s, _idp) = setup(&[]).await;
    let md = TestServer::http()
        .get(s.url("/saml/sp/metadata"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        md.contains(&format!("entityID=\"{}\"", s.url("/saml/sp"))),
        "{md}"
    );
    assert!(!md.contains("validUntil") && !md.contains(" ID="));
    assert!(md.contains("use=\"encryption\"") && md.contains("use=\"signing\""));
    assert!(md.contains("AuthnRequestsSigned=\"true\""));
}

#[tokio::test]
async fn leistungen_are_administered_within_the_subtree_and_weakening_needs_a_second_administrator()
{
    use reqwest::Method;
    let (s, _idp) = setup(&[]).await;
    let kreis = console_token(&s, ADMIN_USER, ADMIN_PASSWORD).await;
    let gemeinde = admin_account(&s, "hitzacker-elbe", "gem.admin", &["admin"]).await;
    let second = admin_account(&s, "hitzacker-elbe", "gem.admin2", &["admin"]).await;
    // The Kreis sees the four of the demo county; Hitzacker its own.
    let (st, all) = admin(&s, Method::GET, &kreis, "/leistungen", None).await;
    assert_eq!(st, 200, "{all}");
    assert_eq!(all["leistungen"].as_array().unwrap().len(), 4);
    let (_, own) = admin(&s, Method::GET, &gemeinde, "/leistungen", None).await;
    let ids: Vec<&str> = own["leistungen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hundesteuer-hitzacker"]);
    // Another Kommune's Leistung: refused, read or written.
    let (st, _) = admin(
        &s,
        Method::GET,
        &gemeinde,
        "/leistungen/bewohnerparken-dannenberg",
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (_, mut parken) = admin(
        &s,
        Method::GET,
        &kreis,
        "/leistungen/bewohnerparken-dannenberg",
        None,
    )
    .await;
    parken["loa"] = "high".into();
    let (st, _) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        "/leistungen/bewohnerparken-dannenberg",
        Some(parken),
    )
    .await;
    assert_eq!(st, 403);
    // Its own Leistung through a client of another Kommune: refused.
    let (_, hund) = admin(
        &s,
        Method::GET,
        &gemeinde,
        "/leistungen/hundesteuer-hitzacker",
        None,
    )
    .await;
    let mut other = hund.clone();
    other["client"] = "bewohnerparken-dannenberg".into();
    let (st, v) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        "/leistungen/hundesteuer-hitzacker",
        Some(other),
    )
    .await;
    assert_eq!(st, 403, "{v}");
    let mut unknown = hund.clone();
    unknown["sources"] = serde_json::json!(["nowhere"]);
    let (st, v) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        "/leistungen/hundesteuer-hitzacker",
        Some(unknown),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    // Raising the level: applied at once.
    let mut raised = hund.clone();
    raised["loa"] = "substantial".into();
    let (st, v) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        "/leistungen/hundesteuer-hitzacker",
        Some(raised),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // Lowering it again, or widening the data: proposals.
    for (what, change) in [
        ("a lower level", serde_json::json!({"loa": "low"})),
        (
            "more data",
            serde_json::json!({"claims": ["given_name", "family_name", "address", "email"]}),
        ),
    ] {
        let (_, mut now) = admin(
            &s,
            Method::GET,
            &gemeinde,
            "/leistungen/hundesteuer-hitzacker",
            None,
        )
        .await;
        let before = now.clone();
        for (k, v) in change.as_object().unwrap() {
            now[k] = v.clone();
        }
        let (st, v) = admin(
            &s,
            Method::PUT,
            &gemeinde,
            "/leistungen/hundesteuer-hitzacker",
            Some(now),
        )
        .await;
        assert_eq!(st, 202, "{what}: {v}");
        let pid = v["proposal"].as_str().unwrap().to_owned();
        let path = format!("/proposals/{pid}/approve");
        let (st, _) = admin(&s, Method::POST, &gemeinde, &path, None).await;
        assert_eq!(st, 403, "{what}: the proposer cannot approve");
        let (_, still) = admin(
            &s,
            Method::GET,
            &gemeinde,
            "/leistungen/hundesteuer-hitzacker",
            None,
        )
        .await;
        assert_eq!(still, before, "{what}: nothing applied yet");
        let (st, v) = admin(&s, Method::POST, &second, &path, None).await;
        assert_eq!(st, 200, "{what}: {v}");
    }
    let (_, after) = admin(
        &s,
        Method::GET,
        &gemeinde,
        "/leistungen/hundesteuer-hitzacker",
        None,
    )
    .await;
    assert_eq!(after["loa"], "low");
    assert!(after["claims"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "email"));
    // The change reached the login at once: the page shows the new level.
    let b = Browser::new();
    let (_, html) = open(&s, &b, "hundesteuer-hitzacker", 9010).await;
    assert!(
        html.contains(">niedrig<") && html.contains("data-claim=\"email\""),
        "{html}"
    );
    let changes = s.audit("admin_change").await;
    assert!(changes
        .iter()
        .any(|e| e.details.to_string().contains("leistung.put")));
}

#[tokio::test]
async fn a_business_logs_in_and_its_organisation_arrives_as_xml() {
    let (s, _bundid) = setup(&[]).await;
    // Mein Unternehmenskonto: another IdP (entity id), another population.
    let muk = PyPeer::start(
        "idp.py",
        "--sp-metadata",
        &s.url("/saml/sp/metadata"),
        &["--entity-id", "urn:x-interkom-test:muk"],
    );
    s.app
        .directory
        .put_saml_source(bundid("muk", Population::Business), &muk.metadata().await)
        .await
        .unwrap();
    let b = Browser::new();
    let (st, html) = open(&s, &b, "gewerbeanmeldung-kreis", 9013).await;
    // Only the business source is offered for a business Leistung.
    assert!(
        html.contains("value=\"muk\"") && !html.contains("value=\"bundid\""),
        "{html}"
    );
    let (page, _) = choose(&s, &b, &html, "muk").await;
    let (action, fields) = idp_login(&b, &muk, &page, "muk", "STORK-QAA-Level-3").await;
    let res = post_acs(&b, &action, &fields).await;
    let t = tokens(&s, "gewerbeanmeldung-kreis", &st, &res).await;
    let id = jwt_payload(t["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:interkom:loa:substantial");
    let org = id["organisation"].as_str().unwrap();
    assert!(
        org.contains("<muk:Name>Musterbau GmbH</muk:Name>") && org.contains("HRB 123456"),
        "{org}"
    );
    assert_eq!(id["email"], "j.bauer@musterbau.example");
    assert!(
        id.get("given_name").is_none(),
        "not registered for the Leistung: {id}"
    );
    // A citizen's Leistung is not a business's: the business source is
    // not offered there.
    let (_, html) = open(&s, &b, "hundesteuer-hitzacker", 9010).await;
    assert!(!html.contains("value=\"muk\""));
}

#[tokio::test]
async fn the_idps_refusal_with_its_status_detail_is_shown_and_can_be_retried() {
    let (s, idp) = setup(&[]).await;
    // The Leistung asks for the mail address, which Max's account lacks.
    let mut parken = s
        .app
        .policy
        .snapshot()
        .leistung_for_client("bewohnerparken-dannenberg")
        .map(|l| (**l).clone())
        .unwrap();
    parken.claims.insert("email".into());
    interkom_policy::store::put_leistung(&s.app.pool, &parken, 0)
        .await
        .unwrap();
    s.app.policy.reload().await.unwrap();
    let b = Browser::new();
    let (_st, html) = open(&s, &b, "bewohnerparken-dannenberg", 9011).await;
    let (page, request) = choose(&s, &b, &html, "bundid").await;
    assert!(
        request.contains(r#"Name="urn:oid:0.9.2342.19200300.100.1.3" RequiredAttribute="true""#),
        "{request}"
    );
    let (action, fields) = idp_login(&b, &idp, &page, "max", "STORK-QAA-Level-3").await;
    let res = post_acs(&b, &action, &fields).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("RequestDenied"), "{html}");
    assert!(
        html.contains("IDP_REQUIRED_ATTRIBUTES_MISSING"),
        "the detail is shown: {html}"
    );
    assert!(
        html.contains("fehlen Angaben, die diese Leistung benötigt: E-Mail-Adresse"),
        "{html}"
    );
    assert!(html.contains("name=\"retry\""));
    let failed = s.audit("login_failed").await;
    assert!(failed.iter().any(|e| e.details.contains("RequestDenied")));
}

/// A citizen logged in at the Hundesteuer-Anmeldung (level 1).
async fn logged_in(s: &TestServer, idp: &PyPeer, b: &Browser) {
    let (st, html) = open(s, b, "hundesteuer-hitzacker", 9010).await;
    let (page, _) = choose(s, b, &html, "bundid").await;
    let (action, fields) = idp_login(b, idp, &page, "erika", "STORK-QAA-Level-1").await;
    let res = post_acs(b, &action, &fields).await;
    tokens(s, "hundesteuer-hitzacker", &st, &res).await;
}

/// Whether this browser still has a session (single sign-on at the
/// Leistung goes straight back with a code).
async fn has_session(s: &TestServer, b: &Browser) -> bool {
    let (url, _) = leistung_url(s, "hundesteuer-hitzacker", 9010);
    b.get(&url).await.status() == 303
}

#[tokio::test]
async fn single_logout_runs_both_ways_between_interkom_and_the_source() {
    let (s, idp) = setup(&[]).await;
    // Started at interkom: the session ends here, a signed LogoutRequest
    // ends the source's, its LogoutResponse comes back.
    let b = Browser::new();
    logged_in(&s, &idp, &b).await;
    assert!(has_session(&s, &b).await);
    let page = b.get(&s.url("/logout")).await.text().await.unwrap();
    let res = b
        .http
        .post(s.url("/logout"))
        .form(&[
            ("confirm", "yes"),
            ("csrf_token", &hidden(&page, "csrf_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to_idp = location(&res).unwrap();
    assert!(
        to_idp.starts_with(&idp.url("/slo?SAMLRequest=")),
        "{to_idp}"
    );
    assert!(to_idp.contains("&Signature="));
    let res = b.get(&to_idp).await;
    assert_eq!(res.status(), 303, "the IdP ends its session and answers");
    let back = location(&res).unwrap();
    assert!(
        back.starts_with(&s.url("/saml/sp/slo?SAMLResponse=")),
        "{back}"
    );
    let res = b.get(&back).await;
    assert_eq!(res.status(), 200, "the logged-out page");
    assert!(!has_session(&s, &b).await);

    // Started at the source: its signed LogoutRequest ends interkom's
    // session, interkom answers with a signed LogoutResponse.
    let b = Browser::new();
    logged_in(&s, &idp, &b).await;
    assert!(has_session(&s, &b).await);
    let res = b.get(&idp.url("/logout")).await;
    assert_eq!(res.status(), 303);
    let to_us = location(&res).unwrap();
    assert!(
        to_us.starts_with(&s.url("/saml/sp/slo?SAMLRequest=")),
        "{to_us}"
    );
    let res = b.get(&to_us).await;
    assert_eq!(res.status(), 303);
    let answer = location(&res).unwrap();
    assert!(answer.starts_with(&idp.url("/slo?SAMLResponse=")) && answer.contains("&Signature="));
    let res = b.get(&answer).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Abgemeldet") && html.contains("Success"),
        "{html}"
    );
    assert!(!has_session(&s, &b).await);
    let logouts = s.audit("logout").await;
    assert!(logouts.iter().any(|e| e.details.contains("saml_source")
        && e.actor_subject
            .as_deref()
            .is_some_and(|x| x.starts_with("pseudonym:"))));

    // A LogoutRequest not signed by the source ends nothing.
    let b = Browser::new();
    logged_in(&s, &idp, &b).await;
    let unsigned = interkom_saml::logout::LogoutRequest {
        id: "_forged".into(),
        issue_instant: 0,
        issuer: idp.url("/idp"),
        destination: None,
        name_id: "_anyone".into(),
        name_id_format: None,
        sp_name_qualifier: None,
        session_indexes: vec![],
    };
    let url = interkom_saml::binding::redirect_url(
        &s.url("/saml/sp/slo"),
        interkom_saml::binding::Param::Request,
        &unsigned.to_xml(),
        None,
        None,
    )
    .unwrap();
    assert_eq!(b.get(&url).await.status(), 400);
    assert!(has_session(&s, &b).await);
}

#[tokio::test]
async fn saml_sources_are_administered_within_the_subtree_and_serve_it_only() {
    use reqwest::Method;
    let (s, bund) = setup(&[]).await;
    let kreis = console_token(&s, ADMIN_USER, ADMIN_PASSWORD).await;
    let gemeinde = admin_account(&s, "hitzacker-elbe", "gem.admin", &["admin"]).await;
    let second = admin_account(&s, "hitzacker-elbe", "gem.admin2", &["admin"]).await;
    // The Kreis sees BundID with its IdP's entity id; Hitzacker nothing,
    // and may neither read nor change it.
    let (st, all) = admin(&s, Method::GET, &kreis, "/saml-sources", None).await;
    assert_eq!(st, 200, "{all}");
    let listed = all["saml_sources"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "bundid");
    assert!(listed[0]["entity_id"].as_str().unwrap().starts_with("http"));
    let (_, own) = admin(&s, Method::GET, &gemeinde, "/saml-sources", None).await;
    assert_eq!(own["saml_sources"].as_array().unwrap().len(), 0);
    let (st, _) = admin(&s, Method::GET, &gemeinde, "/saml-sources/bundid", None).await;
    assert_eq!(st, 403);
    let bund_md = bund.metadata().await;
    let body =
        serde_json::json!({ "source": bundid("bundid", Population::Citizen), "metadata": bund_md });
    let (st, _) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        "/saml-sources/bundid",
        Some(body),
    )
    .await;
    assert_eq!(st, 403, "the Kreis's source");

    // Hitzacker registers an IdP of its own.
    let idp = PyPeer::start("idp.py", "--sp-metadata", &s.url("/saml/sp/metadata"), &[]);
    let md = idp.metadata().await;
    let mut cfg = bundid("buergerkonto-hitzacker", Population::Citizen);
    cfg.tenant = "hitzacker-elbe".into();
    cfg.name = "Bürgerkonto Hitzacker".into();
    let path = "/saml-sources/buergerkonto-hitzacker";
    let with = |k: &str, v: Value| {
        let mut x = serde_json::to_value(&cfg).unwrap();
        x[k] = v;
        x
    };
    for (what, body, status) in [
        (
            "for the Kreis",
            serde_json::json!({ "source": with("tenant", "lk-luechow-dannenberg".into()), "metadata": md }),
            403,
        ),
        (
            "BundID's entity id",
            serde_json::json!({ "source": cfg, "metadata": bund_md }),
            409,
        ),
        (
            "a file on the server",
            serde_json::json!({ "source": with("metadata_file", "/etc/passwd".into()), "metadata": md }),
            400,
        ),
        ("no metadata", serde_json::json!({ "source": cfg }), 400),
    ] {
        let (st, v) = admin(&s, Method::PUT, &gemeinde, path, Some(body)).await;
        assert_eq!(st, status, "{what}: {v}");
    }
    let (st, v) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        path,
        Some(serde_json::json!({ "source": cfg, "metadata": md })),
    )
    .await;
    // Hitzacker's Hundesteuer, naming no sources, would accept it: a new
    // source it accepts waits for a second administrator.
    assert_eq!(st, 202, "{v}");
    let approve = format!("/proposals/{}/approve", v["proposal"].as_str().unwrap());
    let (st, _) = admin(&s, Method::POST, &gemeinde, &approve, None).await;
    assert_eq!(st, 403, "the proposer cannot approve");
    let (st, _) = admin(&s, Method::GET, &gemeinde, path, None).await;
    assert_eq!(st, 404, "nothing registered yet");
    let (st, r) = admin(&s, Method::POST, &second, &approve, None).await;
    assert_eq!(st, 200, "{r}");
    let (_, v) = admin(&s, Method::GET, &gemeinde, path, None).await;
    assert_eq!(v["tenant"], "hitzacker-elbe");
    // One for businesses, which no Leistung of Hitzacker serves: at once.
    let other = PyPeer::start("idp.py", "--sp-metadata", &s.url("/saml/sp/metadata"), &[]);
    let mut firmen = bundid("firmenkonto-hitzacker", Population::Business);
    firmen.tenant = "hitzacker-elbe".into();
    let (st, v) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        "/saml-sources/firmenkonto-hitzacker",
        Some(serde_json::json!({ "source": firmen, "metadata": other.metadata().await })),
    )
    .await;
    assert_eq!(st, 201, "{v}");

    // Its own Leistung offers it; Dannenberg's, naming no sources, does
    // not — BundID, the Kreis's, both do.
    let b = Browser::new();
    let (_, html) = open(&s, &b, "hundesteuer-hitzacker", 9010).await;
    assert!(html.contains("value=\"buergerkonto-hitzacker\""), "{html}");
    assert!(html.contains("value=\"bundid\""));
    let (_, html) = open(&s, &b, "bewohnerparken-dannenberg", 9011).await;
    assert!(!html.contains("value=\"buergerkonto-hitzacker\""), "{html}");
    assert!(html.contains("value=\"bundid\""));

    // A new name: at once. A level name standing for more, or keys given
    // anew: a second administrator approves.
    let (_, mut now) = admin(&s, Method::GET, &gemeinde, path, None).await;
    now["name"] = "Servicekonto Hitzacker".into();
    let strip = |mut v: Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("entity_id");
        o.remove("metadata_fetched_at");
        v
    };
    let (st, v) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        path,
        Some(serde_json::json!({ "source": strip(now.clone()) })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"], "Servicekonto Hitzacker");
    for what in ["a higher level", "keys given anew"] {
        let (_, before) = admin(&s, Method::GET, &gemeinde, path, None).await;
        let body = if what == "a higher level" {
            let mut higher = strip(before.clone());
            higher["levels"][0]["loa"] = "high".into();
            serde_json::json!({ "source": higher })
        } else {
            serde_json::json!({ "source": strip(before.clone()), "metadata": format!("{md}\n") })
        };
        let (st, p) = admin(&s, Method::PUT, &gemeinde, path, Some(body)).await;
        assert_eq!(st, 202, "{what}: {p}");
        let approve = format!("/proposals/{}/approve", p["proposal"].as_str().unwrap());
        let (st, _) = admin(&s, Method::POST, &gemeinde, &approve, None).await;
        assert_eq!(st, 403, "{what}: the proposer cannot approve");
        let (_, still) = admin(&s, Method::GET, &gemeinde, path, None).await;
        assert_eq!(still, before, "{what}: nothing applied yet");
        let (st, r) = admin(&s, Method::POST, &second, &approve, None).await;
        assert_eq!(st, 200, "{what}: {r}");
    }
    let (_, after) = admin(&s, Method::GET, &gemeinde, path, None).await;
    assert_eq!(after["levels"][0]["loa"], "high");

    let (st, _) = admin(&s, Method::DELETE, &gemeinde, path, None).await;
    assert_eq!(st, 204);
    let (_, html) = open(&s, &b, "hundesteuer-hitzacker", 9010).await;
    assert!(!html.contains("value=\"buergerkonto-hitzacker\""));
    // A Gemeinde taking the id the Kreis's Gewerbeanmeldung names: the
    // Leistung still offers nothing of it.
    let mut muk = bundid("muk", Population::Business);
    muk.tenant = "hitzacker-elbe".into();
    let (st, v) = admin(
        &s,
        Method::PUT,
        &gemeinde,
        "/saml-sources/muk",
        Some(serde_json::json!({ "source": muk, "metadata": md })),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (_, html) = open(&s, &b, "gewerbeanmeldung-kreis", 9013).await;
    assert!(!html.contains("value=\"muk\""), "{html}");
    // Deleting BundID and registering it again with other keys is no way
    // around a second administrator.
    let (st, _) = admin(&s, Method::DELETE, &kreis, "/saml-sources/bundid", None).await;
    assert_eq!(st, 204);
    let third = PyPeer::start("idp.py", "--sp-metadata", &s.url("/saml/sp/metadata"), &[]);
    let (st, v) = admin(
        &s,
        Method::PUT,
        &kreis,
        "/saml-sources/bundid",
        Some(serde_json::json!({ "source": bundid("bundid", Population::Citizen), "metadata": third.metadata().await })),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    let changes = s.audit("admin_change").await;
    for op in ["saml_source.put", "saml_source.delete"] {
        assert!(
            changes.iter().any(|e| e.details.contains(op)),
            "{op} audited"
        );
    }
}

#[tokio::test]
async fn the_what_if_of_a_leistung_says_what_would_change_and_stores_nothing() {
    use reqwest::Method;
    let (s, _idp) = setup(&[]).await;
    let kreis = console_token(&s, ADMIN_USER, ADMIN_PASSWORD).await;
    let gemeinde = admin_account(&s, "hitzacker-elbe", "gem.admin", &["admin"]).await;
    let path = "/leistungen/meldebescheinigung-elbtalaue";
    let (_, before) = admin(&s, Method::GET, &kreis, path, None).await;
    assert_eq!(before["loa"], "high");
    let mut lower = before.clone();
    lower["loa"] = "substantial".into();
    let mut claims: Vec<Value> = before["claims"].as_array().unwrap().clone();
    assert!(!claims.contains(&"email".into()));
    claims.push("email".into());
    lower["claims"] = claims.into();
    let what_if = format!("{path}/what-if");
    let (st, w) = admin(&s, Method::POST, &kreis, &what_if, Some(lower.clone())).await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["needs_approval"], true);
    assert_eq!(w["before"]["loa"], "high");
    assert_eq!(w["after"]["loa"], "substantial");
    assert_eq!(w["claims_gained"], serde_json::json!(["email"]));
    assert_eq!(w["claims_lost"], serde_json::json!([]));
    // BundID, named by the Leistung, reaches both levels: offered before
    // and after.
    assert_eq!(w["after"]["sources"][0]["id"], "bundid");
    assert_eq!(w["after"]["sources"][0]["max_loa"], "high");
    assert_eq!(w["sources_gained"], serde_json::json!([]));
    let (_, still) = admin(&s, Method::GET, &kreis, path, None).await;
    assert_eq!(still, before, "a what-if stores nothing");
    assert!(s.audit("admin_change").await.is_empty());
    // Raising a level needs no second administrator.
    let (_, mut hund) = admin(
        &s,
        Method::GET,
        &kreis,
        "/leistungen/hundesteuer-hitzacker",
        None,
    )
    .await;
    hund["loa"] = "substantial".into();
    let (st, w) = admin(
        &s,
        Method::POST,
        &gemeinde,
        "/leistungen/hundesteuer-hitzacker/what-if",
        Some(hund),
    )
    .await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["needs_approval"], false);
    // Another Kommune's Leistung: no what-if either.
    let (st, _) = admin(&s, Method::POST, &gemeinde, &what_if, Some(lower)).await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn a_metadata_refresh_fetched_for_an_earlier_registration_changes_nothing() {
    let (s, idp) = setup(&[]).await;
    let dir = &s.app.directory;
    let md = idp.metadata().await;
    let stored = |dir: &interkom_directory::Directory| {
        let dir = dir.clone();
        async move {
            dir.saml_source("bundid")
                .await
                .unwrap()
                .unwrap()
                .metadata
                .clone()
        }
    };
    let old = dir
        .saml_source("bundid")
        .await
        .unwrap()
        .unwrap()
        .cfg
        .clone();
    // Registered anew while a refresh of the old registration was fetching.
    let new = SamlSourceConfig {
        name: "BundID (neu)".into(),
        ..old.clone()
    };
    dir.put_saml_source(new.clone(), &md).await.unwrap();
    let fetched = format!("{md}\n");
    dir.refresh_saml_metadata("bundid", &old, &fetched)
        .await
        .unwrap();
    assert_eq!(stored(dir).await, md, "the late refresh is dropped");
    dir.refresh_saml_metadata("bundid", &new, &fetched)
        .await
        .unwrap();
    assert_eq!(
        stored(dir).await,
        fetched,
        "a refresh of the registration as it is"
    );
}
