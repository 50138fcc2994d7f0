//! The rule of the levels over the demo county: every clause as a table of
//! scenarios, asked through the AuthZEN endpoint of a real node (and checked
//! against the engine in process), then enforced at login.

use interkom_directory::NewUser;
use interkom_policy::store::{self, Grant};
use interkom_policy::RuleLine;
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, TokenResponse,
};
use serde_json::{json, Value};

use crate::common::*;

const HIGH: &str = "urn:interkom:loa:high";
const SUBSTANTIAL: &str = "urn:interkom:loa:substantial";
const LOW: &str = "urn:interkom:loa:low";

/// Users beyond the demo's, each with one purpose in the table.
async fn add_users(s: &TestServer) {
    for (username, tenant, roles) in [
        ("gartow.melde", "sg-gartow", &["meldebehoerde"][..]),
        ("hitzacker.kaemmerei", "hitzacker-elbe", &["kaemmerei"][..]),
        ("elbtalaue.kaemmerei", "sg-elbtalaue", &["kaemmerei"][..]),
        (
            "dannenberg.clerk",
            "dannenberg-elbe",
            &["sachbearbeitung"][..],
        ),
        (
            "kreis.clerk",
            "lk-luechow-dannenberg",
            &["sachbearbeitung"][..],
        ),
        (
            "kreis.sozial",
            "lk-luechow-dannenberg",
            &["sozialamt", "kommunalaufsicht"][..],
        ),
    ] {
        s.app
            .directory
            .add_user(NewUser {
                tenant: tenant.into(),
                username: username.into(),
                password: "Test-Passwort-2026!".into(),
                name: None,
                email: None,
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            })
            .await
            .unwrap();
    }
}

/// Asks the PDP (client credentials of the Kfz backend).
async fn pdp(s: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let token = cc_token(s).await;
    let res = TestServer::http()
        .post(s.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The strongest, freshest login: only the rules decide.
fn strong(s: &TestServer) -> Value {
    json!({ "acr": HIGH, "amr": ["pwd", "hwk"], "auth_time": s.clock.now() })
}

fn item(subject: &str, action: &str, resource: &str, context: Value) -> Value {
    json!({
        "subject": { "type": "user", "id": subject },
        "action": { "name": action },
        "resource": { "type": "resource", "id": resource },
        "context": context,
    })
}

/// Runs `(subject, action, resource, context, expected effect, reason code)`
/// as one batch and compares; also against the engine in process.
async fn check_table(s: &TestServer, table: &[(&str, &str, &str, Value, &str, &str)]) {
    let items: Vec<Value> = table
        .iter()
        .map(|(su, a, r, c, _, _)| item(su, a, r, c.clone()))
        .collect();
    let (status, body) = pdp(
        s,
        "/access/v1/evaluations",
        &json!({ "evaluations": items }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["evaluations"].as_array().unwrap();
    assert_eq!(results.len(), table.len());
    let snap = s.app.policy.snapshot();
    for ((su, a, r, c, effect, code), got) in table.iter().zip(results) {
        let what = format!("{su} {a} {r}: {got}");
        assert_eq!(got["context"]["effect"], *effect, "{what}");
        assert_eq!(got["decision"], *effect == "allow", "{what}");
        let codes: Vec<&str> = got["context"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect();
        assert!(codes.contains(code), "{what}: expected reason {code}");
        // The same question in process gives the same effect.
        let amr: Vec<&str> = c["amr"]
            .as_array()
            .map(|a| a.iter().map(|m| m.as_str().unwrap()).collect())
            .unwrap_or_default();
        let ctx = interkom_policy::AuthContext::from_claims(
            c["acr"].as_str(),
            &amr,
            c["auth_time"].as_i64(),
            s.clock.now(),
        );
        let d = snap.decide(
            interkom_policy::SubjectRef::User(su),
            a,
            interkom_policy::ResourceRef::id(r),
            &ctx,
        );
        assert_eq!(d.allowed(), *effect == "allow", "in process: {what}");
    }
}

#[tokio::test]
async fn the_rule_of_the_levels_clause_by_clause() {
    let s = TestServer::start().await;
    add_users(&s).await;
    let st = strong(&s);
    #[rustfmt::skip]
    let table: Vec<(&str, &str, &str, Value, &str, &str)> = vec![
        // 1. Default deny: unknown subject, resource or action; nothing permits.
        // (An unknown subject is answered as one without a permit: the PDP
        // does not tell whether a username exists.)
        ("nobody", "read", "ratsinfo-hitzacker", st.clone(), "deny", "no_permit"),
        ("jan.meyer", "read", "no-such-resource", st.clone(), "deny", "unknown_resource"),
        ("jan.meyer", "shred", "haushalt-hitzacker-elbe", st.clone(), "deny", "no_permit"),
        // 2. A role acts in its own tenant, with exactly its permissions.
        ("jan.meyer", "read", "ratsinfo-hitzacker", st.clone(), "allow", "rule_permits"),
        ("jan.meyer", "read", "haushalt-hitzacker-elbe", st.clone(), "allow", "rule_permits"),
        ("jan.meyer", "write", "haushalt-hitzacker-elbe", st.clone(), "deny", "no_permit"),
        ("hitzacker.kaemmerei", "write", "haushalt-hitzacker-elbe", st.clone(), "allow", "rule_permits"),
        ("anna.schulz", "read", "ewo-elbtalaue", st.clone(), "allow", "rule_permits"),
        // 3a. Only supervisory roles reach down ...
        ("kreis.admin", "read", "haushalt-hitzacker-elbe", st.clone(), "allow", "rule_permits"),
        ("kreis.admin", "read", "haushalt-sg-elbtalaue", st.clone(), "allow", "rule_permits"),
        ("kreis.admin", "read", "ratsinfo-gorleben", st.clone(), "allow", "rule_permits"),
        ("kreis.admin", "write", "haushalt-hitzacker-elbe", st.clone(), "deny", "no_permit"),
        // ... a non-supervisory role does not, at any level.
        ("kreis.clerk", "read", "ratsinfo-hitzacker", st.clone(), "deny", "no_permit"),
        ("elbtalaue.kaemmerei", "read", "haushalt-hitzacker-elbe", st.clone(), "deny", "no_permit"),
        // 3b. A Samtgemeinde reaches its members for the tasks it performs
        // for them, not a neighbouring Samtgemeinde's Gemeinden.
        ("anna.schulz", "read", "meldedaten-hitzacker-elbe", st.clone(), "allow", "rule_permits"),
        ("gartow.melde", "read", "meldedaten-gorleben", st.clone(), "allow", "rule_permits"),
        ("anna.schulz", "read", "meldedaten-gorleben", st.clone(), "deny", "no_permit"),
        ("gartow.melde", "read", "meldedaten-hitzacker-elbe", st.clone(), "deny", "no_permit"),
        ("gartow.melde", "read", "ewo-elbtalaue", st.clone(), "deny", "no_permit"),
        // 4. Upward and sideways only by a grant.
        ("jan.meyer", "read", "ewo-elbtalaue", st.clone(), "deny", "no_permit"),
        ("dannenberg.clerk", "read", "ratsinfo-hitzacker", st.clone(), "deny", "no_permit"),
        ("jan.meyer", "read", "gewerbe-elbtalaue", st.clone(), "allow", "grant_permits"),
        ("jan.meyer", "write", "gewerbe-elbtalaue", st.clone(), "deny", "no_permit"),
        ("dannenberg.clerk", "read", "gewerbe-elbtalaue", st.clone(), "deny", "no_permit"),
        ("gartow.melde", "login", "serviceportal", st.clone(), "allow", "grant_permits"),
        // 6. An explicit deny overrides every allow.
        ("kreis.sozial", "read", "sozialhilfe", st.clone(), "deny", "rule_denies"),
        ("kreis.admin", "read", "sozialhilfe", st.clone(), "deny", "rule_denies"),
    ];
    check_table(&s, &table).await;
}

#[tokio::test]
async fn grants_need_validity_expiry_and_for_sehr_hoch_a_second_approver() {
    let s = TestServer::start().await;
    add_users(&s).await;
    s.app
        .directory
        .add_user(NewUser {
            tenant: "sg-elbtalaue".into(),
            username: "sg.aufsicht".into(),
            password: "Test-Passwort-2026!".into(),
            name: None,
            email: None,
            roles: vec!["kommunalaufsicht".into()],
        })
        .await
        .unwrap();
    let now = s.clock.now();
    let st = strong(&s);
    let grant = |id: &str, grantee: &str, resource: &str, expires_at: i64| Grant {
        id: id.into(),
        grantee: grantee.into(),
        resource: resource.into(),
        actions: vec!["read".into()],
        purpose: "Amtshilfe".into(),
        not_before: None,
        expires_at,
        grantor: "anna.schulz".into(),
        approver: None,
        approved_at: None,
        revoked_at: None,
    };
    let pool = &s.app.pool;
    let add = |g: Grant| async move { store::add_grant(pool, &g, "test", now).await };
    add(grant(
        "soon-expired",
        "user:dannenberg.clerk",
        "ratsinfo-hitzacker",
        now + 3600,
    ))
    .await
    .unwrap();
    add(grant(
        "user",
        "user:jan.meyer",
        "ratsinfo-gorleben",
        now + 86400,
    ))
    .await
    .unwrap();
    add(grant(
        "by-role",
        "sachbearbeitung@dannenberg-elbe",
        "ratsinfo-gorleben",
        now + 86400,
    ))
    .await
    .unwrap();
    add(grant(
        "sehr-hoch",
        "user:dannenberg.clerk",
        "meldedaten-hitzacker-elbe",
        now + 86400,
    ))
    .await
    .unwrap();
    let mut later = grant(
        "later",
        "user:hitzacker.kaemmerei",
        "ratsinfo-gorleben",
        now + 86400,
    );
    later.not_before = Some(now + 3600);
    add(later).await.unwrap();
    // Approval cannot be smuggled in with the grant: it is stored unapproved.
    let mut smuggled = grant(
        "smuggled",
        "user:jan.meyer",
        "meldedaten-hitzacker-elbe",
        now + 86400,
    );
    smuggled.approver = Some("kreis.admin".into());
    smuggled.approved_at = Some(now);
    add(smuggled).await.unwrap();
    // No action, or already expired: refused.
    let mut none = grant("none", "user:jan.meyer", "ratsinfo-gorleben", now + 86400);
    none.actions.clear();
    assert!(add(none).await.is_err());
    assert!(add(grant(
        "past",
        "user:jan.meyer",
        "ratsinfo-gorleben",
        now - 1
    ))
    .await
    .is_err());
    // Grants to the Kommunalaufsicht, approved, cannot beat the deny line:
    // neither at the Kreis (own reach) nor from a Samtgemeinde (no reach).
    add(grant(
        "sozial-kreis",
        "user:kreis.admin",
        "sozialhilfe",
        now + 86400,
    ))
    .await
    .unwrap();
    add(grant(
        "sozial-sg",
        "user:sg.aufsicht",
        "sozialhilfe",
        now + 86400,
    ))
    .await
    .unwrap();
    store::approve_grant(pool, "sozial-kreis", "ines.brandt", now)
        .await
        .unwrap();
    store::approve_grant(pool, "sozial-sg", "ines.brandt", now)
        .await
        .unwrap();
    s.app.policy.reload().await.unwrap();
    #[rustfmt::skip]
    check_table(&s, &[
        ("dannenberg.clerk", "read", "ratsinfo-hitzacker", st.clone(), "allow", "grant_permits"),
        ("dannenberg.clerk", "write", "ratsinfo-hitzacker", st.clone(), "deny", "no_permit"),
        ("jan.meyer", "read", "ratsinfo-gorleben", st.clone(), "allow", "grant_permits"),
        ("dannenberg.clerk", "read", "ratsinfo-gorleben", st.clone(), "allow", "grant_permits"),
        ("hitzacker.kaemmerei", "read", "ratsinfo-gorleben", st.clone(), "deny", "grant_not_yet_valid"),
        ("dannenberg.clerk", "read", "meldedaten-hitzacker-elbe", st.clone(), "deny", "grant_awaits_approval"),
        ("jan.meyer", "read", "meldedaten-hitzacker-elbe", st.clone(), "deny", "grant_awaits_approval"),
        ("kreis.admin", "read", "sozialhilfe", st.clone(), "deny", "rule_denies"),
        ("sg.aufsicht", "read", "sozialhilfe", st.clone(), "deny", "rule_denies"),
    ]).await;
    // Four eyes: the grantor cannot approve, not under another name either.
    let err = store::approve_grant(pool, "sehr-hoch", "anna.schulz", now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must not be its grantor"), "{err}");
    let anna_id = s
        .app
        .directory
        .find_user("anna.schulz")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(store::approve_grant(pool, "sehr-hoch", &anna_id, now)
        .await
        .is_err());
    store::approve_grant(pool, "sehr-hoch", "kreis.admin", now)
        .await
        .unwrap();
    store::revoke_grant(pool, "by-role", now).await.unwrap();
    // A revoked grant cannot be approved.
    assert!(store::approve_grant(pool, "by-role", "kreis.admin", now)
        .await
        .is_err());
    s.app.policy.reload().await.unwrap();
    #[rustfmt::skip]
    check_table(&s, &[
        ("dannenberg.clerk", "read", "meldedaten-hitzacker-elbe", st.clone(), "allow", "grant_permits"),
        ("dannenberg.clerk", "read", "ratsinfo-gorleben", st.clone(), "deny", "grant_revoked"),
    ]).await;
    // Time passes: one grant begins, the others run out.
    s.clock.advance(3700);
    let st = strong(&s);
    #[rustfmt::skip]
    check_table(&s, &[
        ("hitzacker.kaemmerei", "read", "ratsinfo-gorleben", st.clone(), "allow", "grant_permits"),
        ("dannenberg.clerk", "read", "ratsinfo-hitzacker", st.clone(), "deny", "grant_expired"),
    ]).await;
    s.clock.advance(86400);
    let st = strong(&s);
    check_table(
        &s,
        &[(
            "jan.meyer",
            "read",
            "ratsinfo-gorleben",
            st,
            "deny",
            "grant_expired",
        )],
    )
    .await;
}

#[tokio::test]
async fn the_protection_need_sets_assurance_age_and_second_factor() {
    let s = TestServer::start().await;
    let now = s.clock.now();
    let ctx = |acr: &str, amr: &[&str], age: i64| json!({ "acr": acr, "amr": amr, "auth_time": now - age });
    #[rustfmt::skip]
    let table = vec![
        // normal: low suffices, for 12 hours.
        ("jan.meyer", "read", "ratsinfo-hitzacker", ctx(LOW, &["pwd"], 0), "allow", "rule_permits"),
        ("jan.meyer", "read", "ratsinfo-hitzacker", ctx(LOW, &["pwd"], 43_201), "step_up", "auth_too_old"),
        ("jan.meyer", "read", "ratsinfo-hitzacker", json!({}), "step_up", "acr_too_low"),
        // hoch: substantial with a second factor, for an hour.
        ("jan.meyer", "read", "gewerbe-elbtalaue", ctx(LOW, &["pwd"], 0), "step_up", "acr_too_low"),
        ("jan.meyer", "read", "gewerbe-elbtalaue", ctx(SUBSTANTIAL, &["pwd"], 0), "step_up", "second_factor_missing"),
        ("jan.meyer", "read", "gewerbe-elbtalaue", ctx(SUBSTANTIAL, &["pwd", "otp"], 0), "allow", "grant_permits"),
        ("jan.meyer", "read", "gewerbe-elbtalaue", ctx(SUBSTANTIAL, &["pwd", "otp"], 3_601), "step_up", "auth_too_old"),
        // sehr_hoch: high, within 15 minutes.
        ("anna.schulz", "read", "meldedaten-hitzacker-elbe", ctx(SUBSTANTIAL, &["pwd", "otp"], 0), "step_up", "acr_too_low"),
        ("anna.schulz", "read", "meldedaten-hitzacker-elbe", ctx(HIGH, &["pwd", "hwk"], 600), "allow", "rule_permits"),
        ("anna.schulz", "read", "meldedaten-hitzacker-elbe", ctx(HIGH, &["pwd", "hwk"], 901), "step_up", "auth_too_old"),
        // A weak login never turns a deny into a step-up: no hint of access.
        ("jan.meyer", "read", "meldedaten-hitzacker-elbe", ctx(LOW, &["pwd"], 0), "deny", "no_permit"),
    ];
    check_table(&s, &table).await;
    // The step-up tells the Fachverfahren what to ask for.
    let (_, body) = pdp(
        &s,
        "/access/v1/evaluation",
        &item(
            "anna.schulz",
            "read",
            "meldedaten-hitzacker-elbe",
            ctx(LOW, &["pwd"], 0),
        ),
    )
    .await;
    assert_eq!(body["decision"], false);
    assert_eq!(body["context"]["step_up"]["acr_values"], HIGH);
    assert_eq!(body["context"]["step_up"]["max_age"], 900);
    assert_eq!(body["context"]["protection_need"], "sehr_hoch");
    // Audited: every deny, every step-up, and permits on sehr_hoch only;
    // a batch's as one summary, each sehr_hoch permit by itself.
    let batches = s.audit("decision_batch").await;
    let sum = |k: &str| -> i64 {
        batches
            .iter()
            .map(|b| {
                serde_json::from_str::<Value>(&b.details).unwrap()[k]
                    .as_i64()
                    .unwrap()
            })
            .sum()
    };
    assert_eq!(sum("denied"), 1);
    assert!(batches
        .iter()
        .all(|b| b.actor_client.as_deref() == Some(KFZ)));
    let denied: Vec<Value> = batches
        .iter()
        .flat_map(|b| {
            let d: Value = serde_json::from_str(&b.details).unwrap();
            d["items"].as_array().unwrap().clone()
        })
        .filter(|i| i["effect"] == "deny")
        .collect();
    assert_eq!(denied[0]["subject"]["id"], "jan.meyer");
    assert_eq!(denied[0]["resource"]["id"], "meldedaten-hitzacker-elbe");
    let single_step_ups = s.audit("decision_step_up").await.len() as i64;
    assert_eq!(single_step_ups, 1, "the single evaluation");
    assert_eq!(sum("step_up") + single_step_ups, 8);
    assert!(s.audit("decision_denied").await.is_empty());
    assert_eq!(s.audit("decision_permitted_sehr_hoch").await.len(), 1);
    assert!(s.audit("decision_permitted").await.is_empty());
}

/// Redeems a Ratsinformationssystem code with the `openidconnect` client
/// (PKCE verifier, ID-token signature and claims checked by the library).
async fn redeem(
    s: &TestServer,
    code: &str,
    verifier: openidconnect::PkceCodeVerifier,
) -> openidconnect::core::CoreTokenResponse {
    s.rp(RATSINFO, None, RATSINFO_REDIRECT)
        .await
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&TestServer::http())
        .await
        .unwrap()
}

/// The public Ratsinformationssystem client with PKCE, through the
/// `openidconnect` library; returns the redirect's query parameters.
async fn ratsinfo_login(
    s: &TestServer,
    browser: &Browser,
    user: Option<(&str, &str)>,
    extra: &[(&str, &str)],
) -> (
    std::collections::HashMap<String, String>,
    openidconnect::PkceCodeVerifier,
    Nonce,
) {
    let rp = s.rp(RATSINFO, None, RATSINFO_REDIRECT).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for (k, v) in extra {
        req = req.add_extra_param(*k, *v);
    }
    let (url, state, nonce) = req.url();
    let res = match user {
        Some((u, p)) => {
            let form = browser.open_login(s, url.as_str()).await;
            browser.submit(&form, u, p).await
        }
        None => browser.get(url.as_str()).await,
    };
    assert_eq!(res.status(), 303);
    let q = redirect_params(&res);
    assert_eq!(
        q["state"],
        *state.secret(),
        "state comes back on success and error"
    );
    assert_eq!(q["iss"], s.issuer);
    (q, verifier, nonce)
}

#[tokio::test]
async fn login_is_enforced_with_roles_for_the_client_deny_and_unmet_assurance() {
    let s = TestServer::start().await;
    add_users(&s).await;
    let rp = s.rp(RATSINFO, None, RATSINFO_REDIRECT).await;

    // Own tenant: a code, and the roles the policy gives for this client.
    let browser = Browser::new();
    let (q, verifier, nonce) =
        ratsinfo_login(&s, &browser, Some((CLERK_USER, CLERK_PASSWORD)), &[]).await;
    let tokens = redeem(&s, &q["code"], verifier).await;
    let id = tokens.id_token().unwrap();
    id.claims(&rp.id_token_verifier(), &nonce).unwrap();
    assert_eq!(
        jwt_payload(&id.to_string())["roles"],
        json!(["sachbearbeitung"])
    );

    // The Kommunalaufsicht reaches down: only that role is in the token.
    let browser = Browser::new();
    let (q, verifier, _) =
        ratsinfo_login(&s, &browser, Some((ADMIN_USER, ADMIN_PASSWORD)), &[]).await;
    let tokens = redeem(&s, &q["code"], verifier).await;
    assert_eq!(
        jwt_payload(&tokens.id_token().unwrap().to_string())["roles"],
        json!(["kommunalaufsicht"])
    );

    // Sideways: access_denied to the client, audited, no code.
    let browser = Browser::new();
    let (q, _, _) = ratsinfo_login(
        &s,
        &browser,
        Some(("dannenberg.clerk", "Test-Passwort-2026!")),
        &[],
    )
    .await;
    assert_eq!(q["error"], "access_denied");
    assert!(!q.contains_key("code"));
    let denied = s.audit("decision_denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor_client.as_deref(), Some(RATSINFO));
    assert_eq!(denied[0].target.as_deref(), Some("ratsinfo-hitzacker"));
    assert_eq!(denied[0].reason.as_deref(), Some("no_permit"));
    // ... the password was right: the session gives single sign-on where
    // the policy allows (the portal, by the county-wide grant).
    let res = browser
        .get(&authorize_url(
            &s,
            &[
                ("response_type", "code"),
                ("client_id", PORTAL),
                ("redirect_uri", PORTAL_REDIRECT),
                ("scope", "openid"),
                ("prompt", "none"),
            ],
        ))
        .await;
    assert!(redirect_params(&res).contains_key("code"));
    // ... and SSO to the denied client is still denied.
    let (q, _, _) = ratsinfo_login(&s, &browser, None, &[("prompt", "none")]).await;
    assert_eq!(q["error"], "access_denied");

    // sehr_hoch needs `high`, which no login here reaches.
    let browser = Browser::new();
    let (challenge, _verifier) = PkceCodeChallenge::new_random_sha256();
    let url = authorize_url(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", "ewo-elbtalaue"),
            ("redirect_uri", "http://localhost:9001/callback"),
            ("scope", "openid"),
            ("state", "e1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    );
    let form = browser.open_login(&s, &url).await;
    let res = browser
        .submit(&form, "anna.schulz", "Elbtalaue-Demo-2026!")
        .await;
    let q = redirect_params(&res);
    assert_eq!(q["error"], "unmet_authentication_requirements");
    assert_eq!(q["state"], "e1");
    let step_up = s.audit("decision_step_up").await;
    assert_eq!(step_up.len(), 1);
    assert_eq!(step_up[0].reason.as_deref(), Some("acr_too_low"));
    assert_eq!(step_up[0].tenant.as_deref(), Some("sg-elbtalaue"));
}

#[tokio::test]
async fn an_old_login_steps_up_and_a_withdrawn_permission_stops_refresh() {
    let s = TestServer::start_with(|fc| fc.tokens.session_ttl = 86_400).await;
    let browser = Browser::new();
    let (q, verifier, _) =
        ratsinfo_login(&s, &browser, Some((CLERK_USER, CLERK_PASSWORD)), &[]).await;
    let tokens = redeem(&s, &q["code"], verifier).await;
    let first_auth = jwt_payload(&tokens.id_token().unwrap().to_string())["auth_time"]
        .as_i64()
        .unwrap();
    let refresh = tokens.refresh_token().unwrap().secret().clone();

    // A deny line for this user takes effect at once: refresh is refused.
    let deny =
        RuleLine::parse("p, user:jan.meyer, ratsinfo-hitzacker, *, direct, deny, true").unwrap();
    assert!(store::add_rule(&s.app.pool, &deny, "test", s.clock.now())
        .await
        .unwrap());
    s.app.policy.reload().await.unwrap();
    let refresh_req = |rt: String| {
        let s = &s;
        async move {
            s.post_form(
                "/token",
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("client_id", RATSINFO),
                ],
            )
            .await
        }
    };
    let v = expect_oauth_error(refresh_req(refresh.clone()).await, 400, "invalid_grant").await;
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("no longer permits"));
    // Withdrawn deny: the same refresh token works (it was not used up).
    assert!(store::remove_rule(&s.app.pool, &deny).await.unwrap());
    s.app.policy.reload().await.unwrap();
    assert_eq!(refresh_req(refresh).await.status(), 200);

    // 13 hours later the session lives on, but `normal` allows 12: with
    // prompt=none the client learns it, otherwise the user logs in again.
    s.clock.advance(13 * 3600);
    let (q, _, _) = ratsinfo_login(&s, &browser, None, &[("prompt", "none")]).await;
    assert_eq!(q["error"], "unmet_authentication_requirements");
    let (q, verifier, _) =
        ratsinfo_login(&s, &browser, Some((CLERK_USER, CLERK_PASSWORD)), &[]).await;
    let tokens = redeem(&s, &q["code"], verifier).await;
    let second_auth = jwt_payload(&tokens.id_token().unwrap().to_string())["auth_time"]
        .as_i64()
        .unwrap();
    assert!(
        second_auth >= first_auth + 13 * 3600,
        "a fresh authentication"
    );
}

#[tokio::test]
async fn a_change_on_one_node_reaches_another_at_once() {
    let a = TestServer::start().await;
    // On PostgreSQL node B polls only hourly: only the announcement
    // (LISTEN/NOTIFY) can tell it in time. On SQLite it polls every second.
    let pg = backend() == "postgres";
    let b = TestServer::start_on(a.database_url.clone(), Some(a.kek.clone()), |fc| {
        fc.policy_poll_seconds = if pg { 3600 } else { 1 };
    })
    .await;
    let q = item("jan.meyer", "read", "ratsinfo-hitzacker", strong(&b));
    let (_, before) = pdp(&b, "/access/v1/evaluation", &q).await;
    assert_eq!(before["decision"], true);
    // Changed through node A's database; node B was not told.
    let deny =
        RuleLine::parse("p, user:jan.meyer, ratsinfo-hitzacker, read, direct, deny, true").unwrap();
    store::add_rule(&a.app.pool, &deny, "test", a.clock.now())
        .await
        .unwrap();
    let limit = std::time::Duration::from_millis(if pg { 1000 } else { 3000 });
    let started = std::time::Instant::now();
    loop {
        let (_, now) = pdp(&b, "/access/v1/evaluation", &q).await;
        if now["decision"] == false {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "node B still allows after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn what_if_lists_the_decisions_a_change_would_flip() {
    let s = TestServer::start().await;
    add_users(&s).await;
    let change = interkom_policy::Change {
        add: vec![
            RuleLine::parse("p, kaemmerei, haushalt, read, members, allow, true").unwrap(),
            RuleLine::parse("g, sg-elbtalaue, haushalt").unwrap(),
        ],
        remove: vec![
            RuleLine::parse("p, kommunalaufsicht, haushalt, read, subtree, allow, true").unwrap(),
        ],
        ..Default::default()
    };
    let flips = s
        .app
        .policy
        .what_if(&change, s.clock.now())
        .await
        .unwrap()
        .flips;
    let has = |who: &str, res: &str, after: bool| {
        flips.iter().any(|f| {
            f.subject == who && f.resource == res && f.action == "read" && f.after == after
        })
    };
    assert!(
        has("elbtalaue.kaemmerei", "haushalt-hitzacker-elbe", true),
        "{flips:?}"
    );
    assert!(
        has("kreis.admin", "haushalt-hitzacker-elbe", false),
        "{flips:?}"
    );
    assert!(has("kreis.sozial", "haushalt-lk", false), "{flips:?}");
    // Nothing unrelated flips, and nothing was applied.
    assert!(
        flips.iter().all(|f| f.resource.starts_with("haushalt-")),
        "{flips:?}"
    );
    let (_, v) = pdp(
        &s,
        "/access/v1/evaluation",
        &item("kreis.admin", "read", "haushalt-hitzacker-elbe", strong(&s)),
    )
    .await;
    assert_eq!(v["decision"], true);
}

#[tokio::test]
async fn objects_of_a_known_kind_are_judged_by_the_tenant_that_owns_them() {
    let s = TestServer::start().await;
    add_users(&s).await;
    let st = strong(&s);
    let ask = |subject: &str, kind: &str, owner: &str, ctx: &Value| {
        json!({
            "subject": { "type": "user", "id": subject },
            "action": { "name": "read" },
            "resource": { "type": kind, "id": "person-4711", "properties": { "owner": owner } },
            "context": ctx,
        })
    };
    let cases = [
        // A resident's record in Gorleben (Samtgemeinde Gartow).
        (
            ask("gartow.melde", "einwohnermeldewesen", "gorleben", &st),
            "allow",
            "rule_permits",
        ),
        (
            ask("anna.schulz", "einwohnermeldewesen", "gorleben", &st),
            "deny",
            "no_permit",
        ),
        (
            ask("anna.schulz", "einwohnermeldewesen", "hitzacker-elbe", &st),
            "allow",
            "rule_permits",
        ),
        (
            ask("jan.meyer", "einwohnermeldewesen", "hitzacker-elbe", &st),
            "deny",
            "no_permit",
        ),
        // Classified like the registered resources of its kind: sehr_hoch.
        (
            ask(
                "anna.schulz",
                "einwohnermeldewesen",
                "hitzacker-elbe",
                &json!({ "acr": LOW, "amr": ["pwd"], "auth_time": s.clock.now() }),
            ),
            "step_up",
            "acr_too_low",
        ),
        (
            ask("anna.schulz", "einwohnermeldewesen", "atlantis", &st),
            "deny",
            "unknown_resource",
        ),
        (
            ask("anna.schulz", "friedhof", "hitzacker-elbe", &st),
            "deny",
            "unknown_resource",
        ),
    ];
    for (body, effect, code) in cases {
        let (status, v) = pdp(&s, "/access/v1/evaluation", &body).await;
        assert_eq!(status, 200);
        assert_eq!(v["context"]["effect"], effect, "{body}: {v}");
        let codes = v["context"]["reasons"].as_array().unwrap();
        assert!(
            codes.iter().any(|r| r["code"] == code),
            "{code}: {body}: {v}"
        );
    }
    // The login's assurance may come as the subject's properties.
    let (_, v) = pdp(
        &s,
        "/access/v1/evaluation",
        &json!({
            "subject": { "type": "user", "id": "jan.meyer",
                         "properties": { "acr": LOW, "amr": ["pwd"], "auth_time": s.clock.now() } },
            "action": { "name": "read" },
            "resource": { "type": "resource", "id": "ratsinfo-hitzacker" },
        }),
    )
    .await;
    assert_eq!(v["decision"], true, "{v}");
}

#[tokio::test]
async fn what_if_covers_grants_and_protection_needs_too() {
    let s = TestServer::start().await;
    add_users(&s).await;
    let now = s.clock.now();
    let snap = s.app.policy.snapshot();
    // A proposed grant to a sehr_hoch resource: judged as if approved.
    let change = interkom_policy::Change {
        add_grants: vec![Grant {
            id: "proposal".into(),
            grantee: "user:dannenberg.clerk".into(),
            resource: "meldedaten-hitzacker-elbe".into(),
            actions: vec!["read".into()],
            purpose: "Wahlvorbereitung".into(),
            not_before: None,
            expires_at: now + 86_400,
            grantor: "anna.schulz".into(),
            approver: None,
            approved_at: None,
            revoked_at: None,
        }],
        // Revoking the Wirtschaftsförderung grant ends its reading.
        revoke_grants: vec!["gewerbe-wirtschaftsfoerderung-hitzacker".into()],
        // The council information system of Gorleben moves to Hitzacker.
        put_resources: vec![interkom_policy::ResourceSpec {
            owner: Some("hitzacker-elbe".into()),
            ..snap.resource("ratsinfo-gorleben").unwrap().clone()
        }],
        ..Default::default()
    };
    let flips = s.app.policy.what_if(&change, now).await.unwrap().flips;
    let has = |who: &str, act: &str, res: &str, after: bool| {
        flips
            .iter()
            .any(|f| f.subject == who && f.action == act && f.resource == res && f.after == after)
    };
    assert!(
        has(
            "dannenberg.clerk",
            "read",
            "meldedaten-hitzacker-elbe",
            true
        ),
        "{flips:?}"
    );
    assert!(
        has("jan.meyer", "read", "gewerbe-elbtalaue", false),
        "{flips:?}"
    );
    assert!(
        has("jan.meyer", "read", "ratsinfo-gorleben", true),
        "{flips:?}"
    );
    // Nothing was applied.
    let (_, v) = pdp(
        &s,
        "/access/v1/evaluation",
        &item("jan.meyer", "read", "gewerbe-elbtalaue", strong(&s)),
    )
    .await;
    assert_eq!(v["decision"], true);
}

#[tokio::test]
async fn a_revoked_baseline_grant_stays_revoked_when_the_baseline_changes() {
    let a = TestServer::start().await;
    let now = a.clock.now();
    let grant = "gewerbe-wirtschaftsfoerderung-hitzacker";
    store::revoke_grant(&a.app.pool, grant, now).await.unwrap();
    // The policy directory changes: one line more.
    let dir = std::env::temp_dir().join(format!("interkom-policies-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(repo_root().join("policies")).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
    }
    let mut csv = std::fs::read_to_string(dir.join("baseline.csv")).unwrap();
    csv.push_str("p, kaemmerei, gewerbeamt, read, own, allow, true\n");
    std::fs::write(dir.join("baseline.csv"), csv).unwrap();
    // What `policy check|explain|what-if` see, without importing ...
    let set = interkom_policy::PolicySet::load(&dir).unwrap();
    let live = store::load_with_baseline(&a.app.pool, &set, now)
        .await
        .unwrap();
    assert!(live
        .grants
        .iter()
        .any(|g| g.id == grant && g.revoked_at.is_some()));
    // ... and a node that imports it.
    let d = dir.clone();
    let b = TestServer::start_on(a.database_url.clone(), Some(a.kek.clone()), move |fc| {
        fc.policy_dir = d
    })
    .await;
    let snap = b.app.policy.snapshot();
    assert_eq!(
        snap.baseline, set.version,
        "the changed baseline was imported"
    );
    let d = snap.decide(
        interkom_policy::SubjectRef::User("jan.meyer"),
        "read",
        interkom_policy::ResourceRef::id("gewerbe-elbtalaue"),
        &interkom_policy::AuthContext {
            acr: Some(interkom_policy::Loa::High),
            auth_time: Some(b.clock.now()),
            second_factor: true,
            now: b.clock.now(),
        },
    );
    assert!(!d.allowed());
    assert!(
        d.reasons
            .iter()
            .any(|r| snap.describe(r)["code"] == "grant_revoked"),
        "{:?}",
        d.reasons
    );
    let _ = std::fs::remove_dir_all(&dir);
}
