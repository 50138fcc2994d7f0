//! The admin API: delegated administration across the levels. Each
//! escalation path has a test: acting outside one's subtree, handing out a
//! role one lacks, changing one's own roles, applying a `sehr_hoch` change
//! without a second administrator, approving one's own proposal or grant.
//! Every change and every refusal is an `admin_change` audit event.

use serde_json::{json, Value};

use crate::common::*;

/// An administrator's bearer token (logged in through the gateway).
async fn token_for(s: &TestServer, user: &str, password: &str) -> String {
    console_token(s, user, password).await
}

async fn kreis_admin(s: &TestServer) -> String {
    token_for(s, ADMIN_USER, ADMIN_PASSWORD).await
}

/// Adds an account directly (test set-up) and logs it in.
async fn account(s: &TestServer, tenant: &str, username: &str, roles: &[&str]) -> (String, String) {
    let password = format!("{username}-Passwort-2026!");
    let id = s
        .app
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
    (id, token_for(s, username, &password).await)
}

async fn call(
    s: &TestServer,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut r = TestServer::http()
        .request(method, s.url(&format!("/admin/v1{path}")))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    if let Some(m) = if_match {
        r = r.header("if-match", m);
    }
    r.send().await.unwrap()
}

async fn get(s: &TestServer, token: &str, path: &str) -> reqwest::Response {
    call(s, reqwest::Method::GET, token, path, None, None).await
}

async fn post(s: &TestServer, token: &str, path: &str, body: Value) -> reqwest::Response {
    call(s, reqwest::Method::POST, token, path, Some(body), None).await
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    let code = res.status().as_u16();
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let v: Value = res.json().await.unwrap();
    assert_eq!(code, status, "{v}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(v["status"], status);
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
    v
}

async fn ok(res: reqwest::Response, status: u16) -> (Value, Option<String>) {
    let code = res.status().as_u16();
    let tag = res
        .headers()
        .get("etag")
        .map(|t| t.to_str().unwrap().to_owned());
    let v: Value = res.json().await.unwrap();
    assert_eq!(code, status, "{v}");
    (v, tag)
}

/// The newest `admin_change` events.
async fn changes(s: &TestServer) -> Vec<interkom_audit::StoredEvent> {
    s.audit("admin_change").await
}

fn details(e: &interkom_audit::StoredEvent) -> Value {
    serde_json::from_str(&e.details).unwrap()
}

#[tokio::test]
async fn users_are_created_read_locked_and_reset_with_etags_and_audit() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;

    // Create a clerk in a Gemeinde: the initial password is shown once.
    let (created, tag) = ok(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "gorleben", "username": "gerd.gorleben", "name": "Gerd",
                    "email": "g@gorleben.example", "roles": ["kommunalaufsicht"] }),
        )
        .await,
        201,
    )
    .await;
    let id = created["user"]["id"].as_str().unwrap().to_owned();
    let initial = created["initial_password"].as_str().unwrap().to_owned();
    assert!(initial.len() >= 20);
    assert!(tag.is_some());
    let ev = &changes(&s).await[0];
    assert_eq!(ev.outcome, "success");
    assert_eq!(details(ev)["op"], "user.create");
    assert_eq!(ev.tenant.as_deref(), Some("gorleben"));
    assert!(
        !ev.details.contains(&initial),
        "no secret in the audit trail"
    );

    // The new account can log in with it.
    token_for(&s, "gerd.gorleben", &initial).await;

    // Read with an ETag; an update needs If-Match and a current one.
    let (user, tag) = ok(get(&s, &admin, &format!("/users/{id}")).await, 200).await;
    assert_eq!(user["username"], "gerd.gorleben");
    assert_eq!(user["roles"][0]["role"], "kommunalaufsicht");
    let tag = tag.unwrap();
    let path = format!("/users/{id}");
    let body = json!({ "locked": true });
    problem(
        call(
            &s,
            reqwest::Method::PATCH,
            &admin,
            &path,
            Some(body.clone()),
            None,
        )
        .await,
        428,
    )
    .await;
    problem(
        call(
            &s,
            reqwest::Method::PATCH,
            &admin,
            &path,
            Some(body.clone()),
            Some("\"stale\""),
        )
        .await,
        412,
    )
    .await;
    let (locked, new_tag) = ok(
        call(
            &s,
            reqwest::Method::PATCH,
            &admin,
            &path,
            Some(body),
            Some(&tag),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(locked["locked"], true);
    assert_ne!(new_tag.unwrap(), tag);
    let ev = &changes(&s).await[0];
    let d = details(ev);
    assert_eq!(d["op"], "user.lock");
    assert_eq!(d["before"]["locked"], false);
    assert_eq!(d["after"]["locked"], true);
    // The old tag is stale now.
    problem(
        call(
            &s,
            reqwest::Method::PATCH,
            &admin,
            &path,
            Some(json!({ "locked": false })),
            Some(&tag),
        )
        .await,
        412,
    )
    .await;
    // A locked account cannot log in.
    let (_, challenge) = pkce();
    let url = authorize_url(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_REDIRECT),
            ("scope", "openid"),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let b = Browser::new();
    let form = b.open_login(&s, &url).await;
    let res = b.submit(&form, "gerd.gorleben", &initial).await;
    assert_ne!(res.status().as_u16(), 303, "a locked account logs in");
    assert!(res.status().as_u16() < 500);
    assert!(
        res.text().await.unwrap().contains("<form"),
        "the login form again"
    );
    let (_, tag) = ok(get(&s, &admin, &path).await, 200).await;
    ok(
        call(
            &s,
            reqwest::Method::PATCH,
            &admin,
            &path,
            Some(json!({ "locked": false })),
            tag.as_deref(),
        )
        .await,
        200,
    )
    .await;

    // Password reset: a new initial password.
    let (reset, _) = ok(
        post(
            &s,
            &admin,
            &format!("/users/{id}/password-reset"),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let new_password = reset["initial_password"].as_str().unwrap();
    assert_ne!(new_password, initial);
    token_for(&s, "gerd.gorleben", new_password).await;
    let b = Browser::new();
    let form = b.open_login(&s, &url).await;
    let res = b.submit(&form, "gerd.gorleben", &initial).await;
    assert_ne!(res.status().as_u16(), 303, "the old password still works");

    // Listing: paged by username.
    let (page, _) = ok(get(&s, &admin, "/users?limit=2").await, 200).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (page2, _) = ok(
        get(&s, &admin, &format!("/users?limit=2&cursor={cursor}")).await,
        200,
    )
    .await;
    assert!(page2["users"][0]["username"].as_str().unwrap() > cursor);
}

#[tokio::test]
async fn bad_input_gets_problem_json() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    // Unknown field, wrong type, missing field, wrong content type.
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "gorleben", "username": "x.y", "admin": true }),
        )
        .await,
        400,
    )
    .await;
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": 7, "username": "x.y" }),
        )
        .await,
        400,
    )
    .await;
    problem(
        post(&s, &admin, "/users", json!({ "username": "x.y" })).await,
        400,
    )
    .await;
    let res = TestServer::http()
        .post(s.url("/admin/v1/users"))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("tenant=gorleben")
        .send()
        .await
        .unwrap();
    problem(res, 415).await;
    // Oversize body.
    let big = "x".repeat(100 * 1024);
    let res = post(
        &s,
        &admin,
        "/users",
        json!({ "tenant": "gorleben", "username": big }),
    )
    .await;
    assert_eq!(res.status().as_u16(), 413);
    // Filters and cursors reach SQL: a NUL (which PostgreSQL refuses in
    // text) is a 400, never a 500.
    for path in [
        "/policy/lines?resource=a%00b",
        "/grants?subject=%00",
        "/users?cursor=x%00",
    ] {
        problem(get(&s, &admin, path).await, 400).await;
    }
    // Unknown ids, tenants, roles; invalid policy lines; a taken username.
    problem(get(&s, &admin, "/users/no-such-user").await, 404).await;
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "atlantis", "username": "x.y" }),
        )
        .await,
        400,
    )
    .await;
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "gorleben", "username": "x.y", "roles": ["kaiser"] }),
        )
        .await,
        400,
    )
    .await;
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "gorleben", "username": "jan.meyer" }),
        )
        .await,
        409,
    )
    .await;
    problem(
        post(&s, &admin, "/policy/changes", json!({ "add": ["p, a, b"] })).await,
        400,
    )
    .await;
    problem(post(&s, &admin, "/policy/changes", json!({})).await, 400).await;
    problem(get(&s, &admin, "/users?limit=0").await, 400).await;
    problem(get(&s, &admin, "/users?colour=red").await, 400).await;
    problem(get(&s, &admin, "/proposals/nope").await, 404).await;
    problem(get(&s, &admin, "/nothing-here").await, 404).await;
    // An administrator's token issued to another Fachverfahren (which could
    // replay it) is not one for administration.
    let portal = portal_tokens(&s, &Browser::new(), ADMIN_USER, ADMIN_PASSWORD).await;
    let portal = portal["access_token"].as_str().unwrap();
    let p = problem(get(&s, portal, "/users").await, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("console"));
    // No token at all.
    let res = TestServer::http()
        .get(s.url("/admin/v1/users"))
        .send()
        .await
        .unwrap();
    problem(res, 401).await;
}

#[tokio::test]
async fn administrators_act_only_inside_their_subtree() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    // An administrator of the Gemeinde Hitzacker (Elbe).
    let (_, hitz) = account(
        &s,
        "hitzacker-elbe",
        "hitzacker.admin",
        &["admin", "sachbearbeitung"],
    )
    .await;
    let (gorleben_clerk, _) = account(&s, "gorleben", "gorleben.clerk", &["sachbearbeitung"]).await;
    let (hitz_clerk, _) = account(&s, "hitzacker-elbe", "hitzacker.clerk", &[]).await;

    // Inside: their own Gemeinde.
    ok(get(&s, &hitz, &format!("/users/{hitz_clerk}")).await, 200).await;
    ok(
        call(
            &s,
            reqwest::Method::PUT,
            &hitz,
            &format!("/users/{hitz_clerk}/roles/hitzacker-elbe/sachbearbeitung"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    // Outside: the neighbouring Gemeinde, the Samtgemeinde above.
    problem(
        get(&s, &hitz, &format!("/users/{gorleben_clerk}")).await,
        403,
    )
    .await;
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &hitz,
            &format!("/users/{gorleben_clerk}/roles/gorleben/sachbearbeitung"),
            None,
            None,
        )
        .await,
        403,
    )
    .await;
    problem(
        post(
            &s,
            &hitz,
            "/users",
            json!({ "tenant": "sg-elbtalaue", "username": "sg.person" }),
        )
        .await,
        403,
    )
    .await;
    problem(get(&s, &hitz, "/users?tenant=gorleben").await, 403).await;
    let listed: Vec<String> = ok(get(&s, &hitz, "/users").await, 200).await.0["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["tenant"].as_str().unwrap().to_owned())
        .collect();
    assert!(listed.iter().all(|t| t == "hitzacker-elbe"), "{listed:?}");
    // A policy line on a resource of the Samtgemeinde, or for every tenant.
    problem(
        post(
            &s,
            &hitz,
            "/policy/changes",
            json!({ "add": ["p, sachbearbeitung, gewerbe-elbtalaue, read, own, allow, true"] }),
        )
        .await,
        403,
    )
    .await;
    problem(
        post(
            &s,
            &hitz,
            "/policy/changes",
            json!({ "add": ["p, sachbearbeitung, *, read, own, allow, true"] }),
        )
        .await,
        403,
    )
    .await;
    // Someone who administers nothing.
    let (_, clerk) = account(&s, "gorleben", "plain.clerk", &["sachbearbeitung"]).await;
    problem(get(&s, &clerk, "/users").await, 403).await;
    // The Kreis reaches all of it.
    ok(
        get(&s, &admin, &format!("/users/{gorleben_clerk}")).await,
        200,
    )
    .await;

    // Every refusal is audited with the actor and the reason.
    let denied: Vec<_> = changes(&s)
        .await
        .into_iter()
        .filter(|e| e.outcome == "denied")
        .collect();
    assert!(denied.len() >= 7, "{}", denied.len());
    assert!(denied
        .iter()
        .any(|e| e.reason.as_deref().is_some_and(|r| r.contains("outside"))));
}

#[tokio::test]
async fn nobody_hands_out_a_role_they_lack_or_changes_their_own() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    let me = s
        .app
        .directory
        .find_user(ADMIN_USER)
        .await
        .unwrap()
        .unwrap()
        .id;
    let (clerk, _) = account(&s, "gorleben", "g.clerk", &[]).await;
    // kreis.admin holds admin and kommunalaufsicht, not security_staff.
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &admin,
            &format!("/users/{clerk}/roles/gorleben/security_staff"),
            None,
            None,
        )
        .await,
        403,
    )
    .await;
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "gorleben", "username": "new.isb", "roles": ["security_staff"] }),
        )
        .await,
        403,
    )
    .await;
    // Taking away a role one lacks is refused as well.
    let (isb, _) = account(&s, "gorleben", "g.isb", &["security_staff"]).await;
    problem(
        call(
            &s,
            reqwest::Method::DELETE,
            &admin,
            &format!("/users/{isb}/roles/gorleben/security_staff"),
            None,
            None,
        )
        .await,
        403,
    )
    .await;
    // A role held above the tenant may be handed out below.
    let (after, _) = ok(
        call(
            &s,
            reqwest::Method::PUT,
            &admin,
            &format!("/users/{clerk}/roles/gorleben/kommunalaufsicht"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(after["roles"][0]["role"], "kommunalaufsicht");
    let d = details(&changes(&s).await[0]);
    assert_eq!(d["op"], "user.roles.add");
    assert_eq!(d["before"], json!([]));
    assert_eq!(d["after"][0]["role"], "kommunalaufsicht");
    ok(
        call(
            &s,
            reqwest::Method::DELETE,
            &admin,
            &format!("/users/{clerk}/roles/gorleben/kommunalaufsicht"),
            None,
            None,
        )
        .await,
        200,
    )
    .await;
    // Their own roles: neither adding nor removing; nor locking themselves.
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &admin,
            &format!("/users/{me}/roles/lk-luechow-dannenberg/kommunalaufsicht"),
            None,
            None,
        )
        .await,
        403,
    )
    .await;
    problem(
        call(
            &s,
            reqwest::Method::DELETE,
            &admin,
            &format!("/users/{me}/roles/lk-luechow-dannenberg/kommunalaufsicht"),
            None,
            None,
        )
        .await,
        403,
    )
    .await;
    let (_, tag) = ok(get(&s, &admin, &format!("/users/{me}")).await, 200).await;
    problem(
        call(
            &s,
            reqwest::Method::PATCH,
            &admin,
            &format!("/users/{me}"),
            Some(json!({ "locked": true })),
            tag.as_deref(),
        )
        .await,
        403,
    )
    .await;
    // Nothing changed.
    let roles = interkom_policy::roles::roles_in(&s.app.pool, &me, "lk-luechow-dannenberg")
        .await
        .unwrap();
    assert_eq!(
        roles,
        vec!["admin".to_owned(), "kommunalaufsicht".to_owned()]
    );
}

#[tokio::test]
async fn sehr_hoch_changes_need_a_second_administrator() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    let (second_id, second) =
        account(&s, "lk-luechow-dannenberg", "zweite.admin", &["admin"]).await;
    // A deny line on a sehr_hoch resource: it flips the Samtgemeinde's
    // Meldebehörde (reach `members`) from allowed to denied.
    let line = "p, meldebehoerde, meldedaten-hitzacker-elbe, export, members, deny, true";

    // The preview: what would flip, and that it needs four eyes.
    let (preview, _) = ok(
        post(&s, &admin, "/policy/what-if", json!({ "add": [line] })).await,
        200,
    )
    .await;
    assert_eq!(preview["requires_approval"], true);
    assert!(preview["flips"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["resource"] == "meldedaten-hitzacker-elbe"
            && f["before"] == true
            && f["after"] == false));

    // Applying it makes a proposal; the line is not live yet.
    let (p, _) = ok(
        post(
            &s,
            &admin,
            "/policy/changes",
            json!({ "add": [line], "comment": "Vertretung" }),
        )
        .await,
        202,
    )
    .await;
    let proposal = p["proposal"].as_str().unwrap().to_owned();
    let live = |s: &TestServer| s.app.gateway.policy().snapshot().version;
    let v0 = live(&s);
    let (lines, _) = ok(get(&s, &admin, "/policy/lines").await, 200).await;
    assert!(!lines["lines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["line"] == line));

    // The proposer cannot approve it.
    problem(
        post(
            &s,
            &admin,
            &format!("/proposals/{proposal}/approve"),
            json!({}),
        )
        .await,
        403,
    )
    .await;
    // The second administrator sees and approves it; it is applied.
    let (list, _) = ok(get(&s, &second, "/proposals?status=pending").await, 200).await;
    assert_eq!(list["proposals"][0]["id"], proposal);
    let (done, _) = ok(
        post(
            &s,
            &second,
            &format!("/proposals/{proposal}/approve"),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(done["applied"], true);
    assert!(live(&s) > v0);
    let (lines, _) = ok(get(&s, &admin, "/policy/lines").await, 200).await;
    assert!(lines["lines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["line"] == line && l["source"] == "admin"));
    // Once decided, it stays decided.
    problem(
        post(
            &s,
            &second,
            &format!("/proposals/{proposal}/approve"),
            json!({}),
        )
        .await,
        409,
    )
    .await;

    // The audit trail has the proposal and the change with its approver.
    let evs = changes(&s).await;
    let applied = details(&evs[0]);
    assert_eq!(applied["op"], "policy.change");
    assert_eq!(applied["approver"], second_id);
    assert_eq!(applied["after"]["added"][0], line);
    assert!(evs.iter().any(|e| details(e)["op"] == "proposal.create"));
    assert!(evs
        .iter()
        .any(|e| e.outcome == "denied" && details(e)["op"] == "proposal.approve"));

    // A change of a sehr_hoch resource's protection need is a proposal too;
    // a normal one applies at once (with If-Match once it exists).
    let (r, tag) = ok(get(&s, &admin, "/resources/meldedaten-gorleben").await, 200).await;
    let mut body = r.clone();
    body.as_object_mut().unwrap().remove("id");
    body["protection"]["c"] = json!("hoch");
    let res = call(
        &s,
        reqwest::Method::PUT,
        &admin,
        "/resources/meldedaten-gorleben",
        Some(body.clone()),
        tag.as_deref(),
    )
    .await;
    assert_eq!(res.status().as_u16(), 202);
    let still = s
        .app
        .gateway
        .policy()
        .snapshot()
        .resource("meldedaten-gorleben")
        .unwrap()
        .protection;
    assert_eq!(still.c, interkom_policy::ProtectionNeed::SehrHoch);
    let new = json!({ "name": "Hundesteuer", "kind": "steuern", "owner": "gorleben",
                      "protection": { "c": "normal", "i": "hoch", "a": "normal" } });
    ok(
        call(
            &s,
            reqwest::Method::PUT,
            &admin,
            "/resources/hundesteuer-gorleben",
            Some(new.clone()),
            None,
        )
        .await,
        201,
    )
    .await;
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &admin,
            "/resources/hundesteuer-gorleben",
            Some(new),
            None,
        )
        .await,
        428,
    )
    .await;
}

#[tokio::test]
async fn grants_need_a_grantor_who_holds_the_right_and_another_approver() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    let (_, second) = account(
        &s,
        "lk-luechow-dannenberg",
        "zweite.admin",
        &["admin", "sozialamt", "kommunalaufsicht"],
    )
    .await;
    let (_, third) = account(&s, "lk-luechow-dannenberg", "dritte.admin", &["admin"]).await;
    let expires = "2099-01-01T00:00:00Z";
    // kreis.admin may not read the Sozialhilfe data, so cannot grant it.
    let body = json!({ "grantee": "user:jan.meyer", "resource": "sozialhilfe", "actions": ["read"],
                       "purpose": "Amtshilfe", "expires_at": expires });
    problem(post(&s, &admin, "/grants", body.clone()).await, 403).await;
    // Bad grants.
    problem(post(&s, &admin, "/grants", json!({ "grantee": "user:nobody", "resource": "haushalt-lk", "actions": ["read"], "purpose": "x", "expires_at": expires })).await, 400).await;
    problem(post(&s, &admin, "/grants", json!({ "grantee": "user:jan.meyer", "resource": "haushalt-lk", "actions": ["read"], "purpose": "x", "expires_at": "2001-01-01T00:00:00Z" })).await, 400).await;
    problem(post(&s, &admin, "/grants", json!({ "grantee": "user:jan.meyer", "resource": "haushalt-lk", "actions": ["*"], "purpose": "x", "expires_at": expires })).await, 400).await;

    // A grant on a resource the grantor may use: recorded unapproved; the
    // grantor cannot approve it, another administrator can.
    let resource = *readable_by_kreis_admin(&s)
        .await
        .first()
        .expect("kreis.admin reads some resource");
    let body = json!({ "grantee": "user:jan.meyer", "resource": resource, "actions": ["read"],
                       "purpose": "Prüfung", "expires_at": expires });
    let (g, _) = ok(post(&s, &admin, "/grants", body).await, 201).await;
    let id = g["grant"]["id"].as_str().unwrap().to_owned();
    assert!(g["grant"]["approver"].is_null());
    problem(
        post(&s, &admin, &format!("/grants/{id}/approve"), json!({})).await,
        403,
    )
    .await;
    // An approver who may not do it themselves cannot approve it either.
    problem(
        post(&s, &third, &format!("/grants/{id}/approve"), json!({})).await,
        403,
    )
    .await;
    let (a, _) = ok(
        post(&s, &second, &format!("/grants/{id}/approve"), json!({})).await,
        200,
    )
    .await;
    assert!(a["grant"]["approver"].is_string());
    let d = details(&changes(&s).await[0]);
    assert_eq!(d["op"], "grant.approve");
    assert!(d["before"]["approver"].is_null());
    assert!(d["after"]["approver"].is_string());
    // Revocation, once.
    ok(
        post(&s, &admin, &format!("/grants/{id}/revoke"), json!({})).await,
        200,
    )
    .await;
    problem(
        post(&s, &admin, &format!("/grants/{id}/revoke"), json!({})).await,
        409,
    )
    .await;
    // A Gemeinde's administrator sees no grants of the Kreis's resources.
    let (_, hitz) = account(&s, "hitzacker-elbe", "hitzacker.admin", &["admin"]).await;
    let (list, _) = ok(get(&s, &hitz, "/grants").await, 200).await;
    let (all, _) = ok(get(&s, &admin, "/grants").await, 200).await;
    assert!(all["grants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["id"] == id.as_str()));
    assert!(list["grants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["id"] != id.as_str()));
    problem(
        post(&s, &hitz, &format!("/grants/{id}/approve"), json!({})).await,
        403,
    )
    .await;
}

#[tokio::test]
async fn clients_tenants_and_keys() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    let (_, hitz) = account(&s, "hitzacker-elbe", "hitzacker.admin", &["admin"]).await;

    // Tenants: each sees their subtree.
    let (t, _) = ok(get(&s, &hitz, "/tenants").await, 200).await;
    let ids: Vec<&str> = t["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["hitzacker-elbe"]);
    let (t, _) = ok(get(&s, &admin, "/tenants").await, 200).await;
    assert_eq!(t["tenants"].as_array().unwrap().len(), 31);

    // A Fachverfahren of the Gemeinde, registered by its administrator.
    let (c, tag) = ok(
        post(&s, &hitz, "/clients", json!({ "id": "steuerverfahren-hitzacker", "tenant": "hitzacker-elbe",
            "name": "Hundesteuer", "grant_types": ["client_credentials"], "auth_method": "client_secret_basic",
            "scopes": ["openid"] })).await,
        201,
    )
    .await;
    let secret = c["client_secret"].as_str().unwrap().to_owned();
    assert!(tag.is_some());
    let cc = |secret: String| {
        let s = &s;
        async move {
            s.post_form(
                "/token",
                Some(("steuerverfahren-hitzacker", &secret)),
                &[("grant_type", "client_credentials")],
            )
            .await
            .status()
            .as_u16()
        }
    };
    assert_eq!(cc(secret.clone()).await, 200);
    // Secret rotation: the old secret stops working.
    let (r, _) = ok(
        post(
            &s,
            &hitz,
            "/clients/steuerverfahren-hitzacker/secret",
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let new_secret = r["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(cc(secret).await, 401);
    assert_eq!(cc(new_secret).await, 200);
    // Changes need If-Match; bad redirect URIs are refused.
    let (cur, tag) = ok(
        get(&s, &hitz, "/clients/steuerverfahren-hitzacker").await,
        200,
    )
    .await;
    assert_eq!(cur["name"], "Hundesteuer");
    let path = "/clients/steuerverfahren-hitzacker";
    problem(
        call(
            &s,
            reqwest::Method::PATCH,
            &hitz,
            path,
            Some(json!({ "name": "Hundesteuer 2" })),
            None,
        )
        .await,
        428,
    )
    .await;
    problem(
        call(&s, reqwest::Method::PATCH, &hitz, path,
            Some(json!({ "grant_types": ["authorization_code"], "redirect_uris": ["http://evil.example/cb"] })), tag.as_deref()).await,
        400,
    )
    .await;
    let (after, _) = ok(
        call(
            &s,
            reqwest::Method::PATCH,
            &hitz,
            path,
            Some(json!({ "name": "Hundesteuer 2" })),
            tag.as_deref(),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(after["name"], "Hundesteuer 2");
    let d = details(&changes(&s).await[0]);
    assert_eq!(d["op"], "client.update");
    assert_eq!(d["before"]["name"], "Hundesteuer");
    assert!(!d.to_string().contains("secret_hash"));
    // Outside the subtree: the Kreis's portal; a client in another tenant.
    problem(get(&s, &hitz, &format!("/clients/{PORTAL}")).await, 403).await;
    problem(
        post(&s, &hitz, &format!("/clients/{PORTAL}/secret"), json!({})).await,
        403,
    )
    .await;
    problem(
        post(
            &s,
            &hitz,
            "/clients",
            json!({ "id": "x-gorleben", "tenant": "gorleben", "name": "X",
            "grant_types": ["client_credentials"], "auth_method": "client_secret_basic" }),
        )
        .await,
        403,
    )
    .await;
    problem(
        post(
            &s,
            &admin,
            "/clients",
            json!({ "id": "steuerverfahren-hitzacker", "tenant": "hitzacker-elbe", "name": "dup",
            "grant_types": ["client_credentials"], "auth_method": "client_secret_basic" }),
        )
        .await,
        409,
    )
    .await;
    let listed = ok(get(&s, &hitz, "/clients").await, 200).await.0;
    assert!(listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["tenant"] == "hitzacker-elbe"));

    // A client id that is a person's account id (their `sub`) would let the
    // client's own tokens pass as that person: refused. The console's own
    // registration is not the administrators' to change.
    let me = s
        .app
        .directory
        .find_user(ADMIN_USER)
        .await
        .unwrap()
        .unwrap()
        .id;
    problem(
        post(
            &s,
            &hitz,
            "/clients",
            json!({ "id": me, "tenant": "hitzacker-elbe", "name": "X",
            "grant_types": ["client_credentials"], "auth_method": "client_secret_basic" }),
        )
        .await,
        400,
    )
    .await;
    problem(
        post(
            &s,
            &admin,
            "/clients",
            json!({ "id": "interkom-console", "tenant": "lk-luechow-dannenberg", "name": "X",
            "grant_types": ["client_credentials"], "auth_method": "client_secret_basic" }),
        )
        .await,
        409,
    )
    .await;
    problem(get(&s, &admin, "/clients/interkom-console").await, 403).await;
    problem(
        post(&s, &admin, "/clients/interkom-console/secret", json!({})).await,
        403,
    )
    .await;
    problem(
        call(
            &s,
            reqwest::Method::PATCH,
            &admin,
            "/clients/interkom-console",
            Some(json!({ "redirect_uris": ["https://evil.example/cb"] })),
            Some("*"),
        )
        .await,
        403,
    )
    .await;
    // Keys: anyone administering may list; only the Kreis rotates.
    let (k, _) = ok(get(&s, &hitz, "/keys").await, 200).await;
    let before = k["keys"].as_array().unwrap().len();
    problem(post(&s, &hitz, "/keys/rotate", json!({})).await, 403).await;
    let (r, _) = ok(post(&s, &admin, "/keys/rotate", json!({})).await, 200).await;
    assert!(r["keys"].as_array().unwrap().len() > before);
    assert!(!s.audit("key_rotated").await.is_empty());
    assert_eq!(details(&changes(&s).await[0])["op"], "key.rotate");
}

/// Whether `user` may `action` on `resource` (rules alone, strongest login).
fn may(s: &TestServer, user: &str, action: &str, resource: &str) -> bool {
    let now = s.app.gateway.clock().now();
    let ctx = interkom_policy::engine::AuthContext {
        acr: Some(interkom_policy::Loa::High),
        auth_time: Some(now),
        second_factor: true,
        now,
    };
    s.app
        .gateway
        .policy()
        .snapshot()
        .decide(
            interkom_policy::engine::SubjectRef::User(user),
            action,
            interkom_policy::engine::ResourceRef::id(resource),
            &ctx,
        )
        .allowed()
}

#[tokio::test]
async fn a_grant_on_sehr_hoch_works_only_once_another_administrator_approved_it() {
    let s = TestServer::start().await;
    // Two administrators of the Samtgemeinde who are also its Meldebehörde.
    let (_, first) = account(&s, "sg-elbtalaue", "sg.admin", &["admin", "meldebehoerde"]).await;
    let (_, second) = account(&s, "sg-elbtalaue", "sg.admin2", &["admin", "meldebehoerde"]).await;
    assert!(!may(&s, CLERK_USER, "read", "meldedaten-hitzacker-elbe"));
    let (g, _) = ok(
        post(
            &s,
            &first,
            "/grants",
            json!({ "grantee": format!("user:{CLERK_USER}"),
            "resource": "meldedaten-hitzacker-elbe", "actions": ["read"], "purpose": "Vertretung",
            "expires_at": "2099-01-01T00:00:00Z" }),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(g["requires_approval"], true);
    let id = g["grant"]["id"].as_str().unwrap();
    assert!(
        !may(&s, CLERK_USER, "read", "meldedaten-hitzacker-elbe"),
        "unapproved"
    );
    problem(
        post(&s, &first, &format!("/grants/{id}/approve"), json!({})).await,
        403,
    )
    .await;
    assert!(!may(&s, CLERK_USER, "read", "meldedaten-hitzacker-elbe"));
    ok(
        post(&s, &second, &format!("/grants/{id}/approve"), json!({})).await,
        200,
    )
    .await;
    assert!(
        may(&s, CLERK_USER, "read", "meldedaten-hitzacker-elbe"),
        "approved"
    );
    problem(
        post(&s, &second, &format!("/grants/{id}/approve"), json!({})).await,
        409,
    )
    .await;
}

#[tokio::test]
async fn new_administrators_and_their_passwords_take_two() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    let (_, second) = account(
        &s,
        "lk-luechow-dannenberg",
        "zweite.admin",
        &["admin", "kommunalaufsicht"],
    )
    .await;
    let (clerk, clerk_token) = account(&s, "gorleben", "g.clerk", &[]).await;
    // `admin` is not handed out on creation ...
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "gorleben", "username": "neu.admin", "roles": ["admin"] }),
        )
        .await,
        400,
    )
    .await;
    // ... and assigning it is a proposal.
    let path = format!("/users/{clerk}/roles/gorleben/admin");
    let (p, _) = ok(
        call(&s, reqwest::Method::PUT, &admin, &path, None, None).await,
        202,
    )
    .await;
    let pid = p["proposal"].as_str().unwrap().to_owned();
    problem(get(&s, &clerk_token, "/users").await, 403).await;
    // The proposer does not approve it; a second administrator does.
    problem(
        post(&s, &admin, &format!("/proposals/{pid}/approve"), json!({})).await,
        403,
    )
    .await;
    ok(
        post(&s, &second, &format!("/proposals/{pid}/approve"), json!({})).await,
        200,
    )
    .await;
    let roles = interkom_policy::roles::roles_in(&s.app.pool, &clerk, "gorleben")
        .await
        .unwrap();
    assert_eq!(roles, vec!["admin".to_owned()]);
    let d = details(&changes(&s).await[0]);
    assert_eq!(d["op"], "user.roles.add");
    assert!(d["approver"].is_string());
    // Resetting an administrator's password is a proposal; the approver
    // receives the new password, not the proposer.
    let second_id = s
        .app
        .directory
        .find_user("zweite.admin")
        .await
        .unwrap()
        .unwrap()
        .id;
    let (p, _) = ok(
        post(
            &s,
            &admin,
            &format!("/users/{second_id}/password-reset"),
            json!({}),
        )
        .await,
        202,
    )
    .await;
    assert!(p.get("initial_password").is_none());
    let pid = p["proposal"].as_str().unwrap().to_owned();
    // The subject of the reset cannot approve it.
    problem(
        post(&s, &second, &format!("/proposals/{pid}/approve"), json!({})).await,
        403,
    )
    .await;
    let (_, third) = account(
        &s,
        "lk-luechow-dannenberg",
        "dritte.admin",
        &["admin", "kommunalaufsicht"],
    )
    .await;
    let (r, _) = ok(
        post(&s, &third, &format!("/proposals/{pid}/approve"), json!({})).await,
        200,
    )
    .await;
    assert!(r["result"]["initial_password"].is_string());
    // A username that names another account is refused.
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "gorleben", "username": clerk }),
        )
        .await,
        409,
    )
    .await;
}

#[tokio::test]
async fn resources_cannot_borrow_kinds_clients_or_leave_the_subtree() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    let (_, hitz) = account(&s, "hitzacker-elbe", "hitzacker.admin", &["admin"]).await;
    let normal = |owner: &str, client: Option<&str>| {
        json!({ "kind": "steuern", "owner": owner, "client": client,
                "protection": { "c": "normal", "i": "normal", "a": "normal" } })
    };
    // An id that is a kind (`haushalt`): a line on it would be Kreis-wide.
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &hitz,
            "/resources/haushalt",
            Some(normal("hitzacker-elbe", None)),
            None,
        )
        .await,
        409,
    )
    .await;
    // Binding another tenant's client, or one bound already, or none.
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &hitz,
            "/resources/zzz",
            Some(normal("hitzacker-elbe", Some(PORTAL))),
            None,
        )
        .await,
        403,
    )
    .await;
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &admin,
            "/resources/zzz",
            Some(normal("lk-luechow-dannenberg", Some(PORTAL))),
            None,
        )
        .await,
        409,
    )
    .await;
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &admin,
            "/resources/zzz",
            Some(normal("lk-luechow-dannenberg", Some("no-such-client"))),
            None,
        )
        .await,
        400,
    )
    .await;
    // A resource of another tenant, or moving one's own away.
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &hitz,
            "/resources/x-gorleben",
            Some(normal("gorleben", None)),
            None,
        )
        .await,
        403,
    )
    .await;
    ok(
        call(
            &s,
            reqwest::Method::PUT,
            &hitz,
            "/resources/hund-hitzacker",
            Some(normal("hitzacker-elbe", None)),
            None,
        )
        .await,
        201,
    )
    .await;
    let (_, tag) = ok(get(&s, &hitz, "/resources/hund-hitzacker").await, 200).await;
    problem(
        call(
            &s,
            reqwest::Method::PUT,
            &hitz,
            "/resources/hund-hitzacker",
            Some(normal("gorleben", None)),
            tag.as_deref(),
        )
        .await,
        403,
    )
    .await;
    // A line whose object is a kind is everybody's: not a Gemeinde's to change.
    let kind_line = "p, kommunalaufsicht, haushalt, read, subtree, allow, true";
    problem(
        post(
            &s,
            &hitz,
            "/policy/changes",
            json!({ "remove": [kind_line] }),
        )
        .await,
        403,
    )
    .await;
    problem(
        post(
            &s,
            &hitz,
            "/policy/what-if",
            json!({ "remove": [kind_line] }),
        )
        .await,
        403,
    )
    .await;
    // A Gemeinde's administrator cannot approve the Kreis's proposals.
    let (p, _) = ok(post(&s, &admin, "/policy/changes", json!({ "add": ["p, meldebehoerde, meldedaten-gorleben, export, members, deny, true"] })).await, 202).await;
    let pid = p["proposal"].as_str().unwrap();
    problem(
        post(&s, &hitz, &format!("/proposals/{pid}/approve"), json!({})).await,
        403,
    )
    .await;
    // A Gemeinde's lines list shows only its own.
    let (lines, _) = ok(get(&s, &hitz, "/policy/lines").await, 200).await;
    assert!(lines["lines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| !l["line"].as_str().unwrap().contains("haushalt")));
    let (lines, _) = ok(get(&s, &admin, "/policy/lines").await, 200).await;
    assert!(lines["lines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["line"] == kind_line));
    // Wrong method and oversize body: problem+json too.
    problem(
        call(
            &s,
            reqwest::Method::DELETE,
            &admin,
            "/policy/lines",
            None,
            None,
        )
        .await,
        405,
    )
    .await;
    let big = "x".repeat(100 * 1024);
    problem(
        post(
            &s,
            &admin,
            "/users",
            json!({ "tenant": "gorleben", "username": big }),
        )
        .await,
        413,
    )
    .await;
}

#[tokio::test]
async fn lists_are_paged_and_filtered() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    for (list, key) in [
        ("/policy/lines", "lines"),
        ("/resources", "resources"),
        ("/clients", "clients"),
        ("/users", "users"),
    ] {
        // Page by page, nothing twice, nothing left out.
        let (all, _) = ok(get(&s, &admin, &format!("{list}?limit=1000")).await, 200).await;
        let total = all[key].as_array().unwrap().len();
        assert!(total >= 3, "{list}");
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{list}?limit=2&cursor={}", urlencoding(c)),
                None => format!("{list}?limit=2"),
            };
            let (page, _) = ok(get(&s, &admin, &url).await, 200).await;
            let items = page[key].as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), total, "{list}");
        problem(get(&s, &admin, &format!("{list}?colour=red")).await, 400).await;
        problem(get(&s, &admin, &format!("{list}?limit=5000")).await, 400).await;
    }
    let (r, _) = ok(get(&s, &admin, "/resources?tenant=gorleben").await, 200).await;
    let owners: Vec<&str> = r["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["owner"].as_str().unwrap())
        .collect();
    assert!(
        !owners.is_empty() && owners.iter().all(|o| *o == "gorleben"),
        "{owners:?}"
    );
    let (l, _) = ok(
        get(&s, &admin, "/policy/lines?subject=kommunalaufsicht").await,
        200,
    )
    .await;
    let lines = l["lines"].as_array().unwrap();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l["line"]
        .as_str()
        .unwrap()
        .starts_with("p, kommunalaufsicht,")));
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every grant the caller sees, page by page of `limit`: each once.
async fn grant_pages(s: &TestServer, token: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("/grants?{query}&limit={limit}&cursor={}", urlencoding(c)),
            None => format!("/grants?{query}&limit={limit}"),
        };
        let (page, _) = ok(get(s, token, &url).await, 200).await;
        let items = page["grants"].as_array().unwrap();
        assert!(items.len() <= limit, "{url}");
        for g in items {
            assert!(
                seen.iter().all(|x| x["id"] != g["id"]),
                "{} twice ({url})",
                g["id"]
            );
            seen.push(g.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), limit, "a page before the last is full");
                assert_eq!(items.last().unwrap()["id"], c, "the cursor is the last id");
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    seen
}

#[tokio::test]
async fn grants_are_paged_one_by_one_and_filtered() {
    let s = TestServer::start().await;
    let admin = kreis_admin(&s).await;
    // Grants the Kreis administrator may give: on the resources they read.
    let readable = readable_by_kreis_admin(&s).await;
    assert!(!readable.is_empty(), "kreis.admin reads some resource");
    let mut created = Vec::new();
    for (i, grantee) in [
        "user:jan.meyer",
        "*@hitzacker-elbe",
        "*@gorleben",
        "user:jan.meyer",
    ]
    .into_iter()
    .enumerate()
    {
        let resource = readable[i % readable.len()];
        let body = json!({ "grantee": grantee, "resource": resource, "actions": ["read"],
                           "purpose": format!("Prüfung {i}"), "expires_at": "2099-01-01T00:00:00Z" });
        let (g, _) = ok(post(&s, &admin, "/grants", body).await, 201).await;
        created.push(g["grant"].clone());
    }

    // One by one: every grant exactly once, in the order of their ids, the
    // same as in one page.
    let (all, _) = ok(get(&s, &admin, "/grants?limit=1000").await, 200).await;
    assert!(all["next_cursor"].is_null());
    let all = all["grants"].as_array().unwrap().clone();
    let single = grant_pages(&s, &admin, "", 1).await;
    assert_eq!(single, all);
    let ids: Vec<&str> = single.iter().map(|g| g["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    for g in &created {
        assert_eq!(single.iter().filter(|x| x["id"] == g["id"]).count(), 1);
        let shown = single.iter().find(|x| x["id"] == g["id"]).unwrap();
        assert_eq!(shown, g, "a grant reads as it was created");
    }

    // Filtered by grantee, by resource, by both: exactly the matching ones.
    let by_subject = grant_pages(&s, &admin, "subject=user%3Ajan.meyer", 1).await;
    let want: Vec<&Value> = all
        .iter()
        .filter(|g| g["grantee"] == "user:jan.meyer")
        .collect();
    assert!(want.len() >= 2);
    assert_eq!(by_subject.iter().collect::<Vec<_>>(), want);
    let resource = readable[0];
    let by_resource = grant_pages(&s, &admin, &format!("resource={resource}"), 1).await;
    let want: Vec<&Value> = all.iter().filter(|g| g["resource"] == resource).collect();
    assert!(!want.is_empty());
    assert_eq!(by_resource.iter().collect::<Vec<_>>(), want);
    let both = grant_pages(
        &s,
        &admin,
        &format!("resource={resource}&subject=user%3Ajan.meyer"),
        1,
    )
    .await;
    assert!(both
        .iter()
        .all(|g| g["resource"] == resource && g["grantee"] == "user:jan.meyer"));
    assert_eq!(
        both.len(),
        all.iter()
            .filter(|g| g["resource"] == resource && g["grantee"] == "user:jan.meyer")
            .count()
    );
    let (none, _) = ok(
        get(&s, &admin, "/grants?resource=no-such-resource").await,
        200,
    )
    .await;
    assert_eq!(none["grants"], json!([]));
    assert!(none["next_cursor"].is_null());

    // A Gemeinde's administrator pages through none of the Kreis's.
    let (_, hitz) = account(&s, "hitzacker-elbe", "hitzacker.admin", &["admin"]).await;
    let theirs = grant_pages(&s, &hitz, "", 1).await;
    let snap = s.app.gateway.policy().snapshot();
    for g in &created {
        let owner = snap
            .resource(g["resource"].as_str().unwrap())
            .and_then(|r| r.owner.clone());
        if owner.as_deref() != Some("hitzacker-elbe") {
            assert!(theirs.iter().all(|x| x["id"] != g["id"]));
        }
    }
}

#[tokio::test]
async fn the_openapi_document_names_a_schema_for_every_answer() {
    let s = TestServer::start().await;
    let res = TestServer::http()
        .get(s.url("/admin/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let Some(responses) = op.get("responses").and_then(Value::as_object) else {
                continue;
            };
            for (status, r) in responses {
                if !matches!(status.as_str(), "200" | "201" | "202") {
                    continue;
                }
                let content = r["content"].as_object().unwrap();
                if content.contains_key("application/x-ndjson") {
                    // The audit export: a stream of lines.
                    assert_eq!(path, "/audit/export");
                    continue;
                }
                let schema = &content["application/json"]["schema"];
                let name = schema["$ref"]
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    .unwrap_or_else(|| {
                        panic!("{method} {path} {status}: no named schema: {schema}")
                    });
                let component = &schemas[name];
                // A real schema: properties, or a composition of them.
                let typed = component["properties"]
                    .as_object()
                    .is_some_and(|p| !p.is_empty())
                    || component.get("allOf").is_some()
                    || component.get("oneOf").is_some();
                assert!(
                    typed,
                    "{method} {path} {status}: {name} is untyped: {component}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "{checked} answers checked");
    // Every reference resolves.
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "unresolved {name}");
    }
}

/// The demo resources the Kreis administrator may read (with a strong,
/// fresh login): the ones they may give grants on.
async fn readable_by_kreis_admin(s: &TestServer) -> Vec<&'static str> {
    let subject = s
        .app
        .directory
        .find_user(ADMIN_USER)
        .await
        .unwrap()
        .unwrap()
        .id;
    let snap = s.app.gateway.policy().snapshot();
    let now = s.app.gateway.clock().now();
    let ctx = interkom_policy::engine::AuthContext {
        acr: Some(interkom_policy::Loa::High),
        auth_time: Some(now),
        second_factor: true,
        now,
    };
    [
        "haushalt-sg-elbtalaue",
        "haushalt-hitzacker-elbe",
        "haushalt-lk",
        "bauantrag",
        "kfz-zulassung",
    ]
    .into_iter()
    .filter(|r| {
        snap.decide(
            interkom_policy::engine::SubjectRef::User(&subject),
            "read",
            interkom_policy::engine::ResourceRef::id(r),
            &ctx,
        )
        .allowed()
    })
    .collect()
}
