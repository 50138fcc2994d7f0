//! The directory's store conformance suite (in the manner of dex's storage
//! tests): every contract of the directory's storage, the same tests on
//! SQLite and on PostgreSQL, without starting a node. PostgreSQL runs when
//! the server of `INTERKOM_TEST_PG` (default
//! postgres://postgres@127.0.0.1:5432) answers; each run makes its own
//! schema and drops it again.
//!
//! Run alone: `cargo nextest run -p interkom-directory --test store`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use interkom_directory::{
    AuthMethod, ClientSpec, Directory, DirectoryConfig, DirectoryError, GrantType, MasterKey,
    NewUser, UpstreamConfig,
};
use interkom_policy::tenant::{Level, TenantSpec};
use interkom_policy::{PolicyEngine, PolicySet, TenantTree};
use interkom_types::{Alg, Clock, Secret};
use sqlx::AnyPool;

fn tree() -> TenantTree {
    let t = |id: &str, level, parent: Option<&str>| TenantSpec {
        id: id.into(),
        name: id.into(),
        level,
        parent: parent.map(str::to_owned),
    };
    TenantTree::from_specs(&[
        t("lk-luechow-dannenberg", Level::Kreis, None),
        t(
            "sg-elbtalaue",
            Level::Samtgemeinde,
            Some("lk-luechow-dannenberg"),
        ),
        t("hitzacker", Level::Gemeinde, Some("sg-elbtalaue")),
        t("damnatz", Level::Gemeinde, Some("sg-elbtalaue")),
    ])
    .unwrap()
}

/// A directory over a freshly migrated database, with caches off (every
/// read goes to the store).
async fn directory(pool: &AnyPool) -> Directory {
    interkom_policy::migrate(pool).await.unwrap();
    interkom_gateway::migrate(pool).await.unwrap();
    interkom_directory::migrate(pool).await.unwrap();
    let tenants = tree();
    tenants.store(pool).await.unwrap();
    let tenants = Arc::new(TenantTree::load(pool).await.unwrap());
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let set = PolicySet::load(&policies).unwrap();
    let clock = Clock::default();
    let policy = PolicyEngine::start(pool.clone(), set, clock.clone())
        .await
        .unwrap();
    Directory::new(
        DirectoryConfig {
            cache_ttl: 0,
            argon2: Default::default(),
            backchannel_allow_loopback: false,
            upstream_allow_loopback: false,
        },
        pool.clone(),
        MasterKey::generate(),
        tenants,
        policy,
        clock,
    )
    .unwrap()
}

/// Runs `check` against every backend that is there.
macro_rules! conformance {
    ($name:ident, $check:ident) => {
        #[tokio::test]
        async fn $name() {
            for b in interkom_types::scratch::every("ik_dirstore").await {
                let dir = directory(&b.pool).await;
                $check(&dir, b.name).await;
                b.close().await;
            }
        }
    };
}

fn new_user(username: &str, tenant: &str) -> NewUser {
    NewUser {
        tenant: tenant.into(),
        username: username.into(),
        password: Secret::new("Kennwort-2026!"),
        name: Some("Maria Muster".into()),
        email: None,
        roles: vec!["sachbearbeitung".into()],
    }
}

async fn accounts(dir: &Directory, db: &str) {
    let id = dir
        .add_user(new_user("m.muster", "hitzacker"))
        .await
        .unwrap();
    let u = dir.find_user("m.muster").await.unwrap().expect(db);
    assert_eq!(
        (u.id.as_str(), u.tenant.as_str()),
        (id.as_str(), "hitzacker"),
        "{db}"
    );
    assert_eq!(dir.user(&id).await.unwrap().unwrap().username, "m.muster");
    assert!(
        dir.verify_password(Some(&u), "Kennwort-2026!".into()).await,
        "{db}"
    );
    assert!(
        !dir.verify_password(Some(&u), "falsch".into()).await,
        "{db}"
    );
    assert!(
        !dir.verify_password(None, "Kennwort-2026!".into()).await,
        "{db}"
    );
    assert_eq!(
        dir.roles_in(&id, "hitzacker").await.unwrap(),
        ["sachbearbeitung"]
    );
    // A name once, a rule broken named.
    assert!(matches!(
        dir.add_user(new_user("m.muster", "damnatz")).await,
        Err(DirectoryError::Taken(_))
    ));
    assert!(matches!(
        dir.add_user(new_user("x", "nowhere")).await,
        Err(DirectoryError::Invalid(_))
    ));
    // A new password replaces the old one.
    let p = dir.new_password(&id).await.unwrap();
    let u = dir.user(&id).await.unwrap().unwrap();
    assert!(
        dir.verify_password(Some(&u), p.expose().to_owned()).await,
        "{db}"
    );
    assert!(
        !dir.verify_password(Some(&u), "Kennwort-2026!".into()).await,
        "{db}"
    );
    dir.set_disabled(&id, true).await.unwrap();
    assert!(!dir.user(&id).await.unwrap().unwrap().is_enabled(), "{db}");
    dir.set_profile(&id, Some("M. Muster"), Some("m@hitzacker.example"))
        .await
        .unwrap();
    let u = dir.user(&id).await.unwrap().unwrap();
    assert_eq!(u.email.as_deref(), Some("m@hitzacker.example"), "{db}");
    // Lists page by username within the tenants asked for.
    for n in ["a.anders", "b.bauer", "c.claus"] {
        dir.add_user(new_user(n, "damnatz")).await.unwrap();
    }
    let tenants = vec!["damnatz".to_owned()];
    let page = dir.users_in(&tenants, None, 2).await.unwrap();
    let names: Vec<_> = page.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["a.anders", "b.bauer"], "{db}");
    let rest = dir.users_in(&tenants, Some("b.bauer"), 2).await.unwrap();
    assert_eq!(rest.len(), 1, "{db}");
    assert!(dir.users_in(&[], None, 10).await.unwrap().is_empty());
    // A first login's account takes the first free name; a discarded one
    // is gone.
    let candidates = vec!["m.muster".to_owned(), "m.muster-1@idp".to_owned()];
    let p = dir
        .provision("hitzacker", &candidates, None, None)
        .await
        .unwrap()
        .expect(db);
    assert_eq!(p.username, "m.muster-1@idp", "{db}");
    assert!(p.password_hash.is_none(), "{db}");
    let none = dir
        .provision("hitzacker", &candidates[..1], None, None)
        .await
        .unwrap();
    assert!(none.is_none(), "{db}");
    dir.discard(&p.id).await.unwrap();
    assert!(dir.user(&p.id).await.unwrap().is_none(), "{db}");
}
conformance!(accounts_keep_their_contract, accounts);

fn client(id: &str) -> ClientSpec {
    ClientSpec {
        id: id.into(),
        tenant: "hitzacker".into(),
        name: "Einwohnermeldewesen".into(),
        redirect_uris: vec!["https://ewo.hitzacker.example/cb".into()],
        post_logout_redirect_uris: vec![],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["openid".into(), "profile".into()],
        auth_method: AuthMethod::ClientSecretBasic,
        secret: None,
        jwks: None,
        id_token_alg: Alg::RS256,
        backchannel_logout_uri: None,
        first_party: false,
        resource_server: false,
    }
}

async fn clients(dir: &Directory, db: &str) {
    let secret = dir.register_client(client("ewo")).await.unwrap().expect(db);
    let c = dir.client("ewo").await.unwrap().expect(db);
    assert!(c.secret_matches(dir, &secret), "{db}");
    assert!(!c.secret_matches(dir, "nicht-das-geheimnis"), "{db}");
    assert!(matches!(
        dir.register_client(client("ewo")).await,
        Err(DirectoryError::Taken(_))
    ));
    // A client id must never read as a person.
    dir.add_user(new_user("fv-person", "hitzacker"))
        .await
        .unwrap();
    assert!(matches!(
        dir.register_client(client("fv-person")).await,
        Err(DirectoryError::Invalid(_))
    ));
    let mut spec = client("ewo");
    spec.name = "EWO".into();
    spec.redirect_uris = vec!["https://ewo.hitzacker.example/neu".into()];
    dir.update_client(spec).await.unwrap();
    let c = dir.client("ewo").await.unwrap().unwrap();
    assert_eq!((c.name.as_str(), c.redirect_uris.len()), ("EWO", 1), "{db}");
    let renewed = dir.rotate_client_secret("ewo").await.unwrap();
    let c = dir.client("ewo").await.unwrap().unwrap();
    assert!(
        c.secret_matches(dir, &renewed) && !c.secret_matches(dir, &secret),
        "{db}"
    );
    let ids: Vec<_> = dir
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["ewo"], "{db}");
    assert!(dir.client("unbekannt").await.unwrap().is_none());
}
conformance!(clients_keep_their_contract, clients);

fn upstream(issuer: &str, secret: Option<&str>) -> UpstreamConfig {
    serde_json::from_value(serde_json::json!({
        "id": "idp-hitzacker", "tenant": "hitzacker", "name": "Stadt Hitzacker (Elbe)",
        "issuer": issuer, "client_id": "interkom", "client_secret": secret,
        "domains": ["hitzacker.example"], "default_loa": "low",
    }))
    .unwrap()
}

async fn upstreams(dir: &Directory, db: &str) {
    let a = "https://login.hitzacker.example";
    dir.put_upstream(upstream(a, Some("geheim-1")))
        .await
        .unwrap();
    let u = dir.upstream("idp-hitzacker").await.unwrap().expect(db);
    assert_eq!(
        u.secret.as_ref().map(|s| s.expose()),
        Some("geheim-1"),
        "{db}"
    );
    // Without a new secret the stored one stays — for the same issuer only.
    dir.put_upstream(upstream(a, None)).await.unwrap();
    assert!(dir.list_upstreams().await.unwrap()[0].1, "{db}");
    dir.put_upstream(upstream("https://idp.elbtalaue.example", None))
        .await
        .unwrap();
    assert!(!dir.list_upstreams().await.unwrap()[0].1, "{db}");
    // A domain names one upstream.
    let mut other = upstream("https://idp.damnatz.example", None);
    other.id = "idp-damnatz".into();
    assert!(matches!(
        dir.put_upstream(other).await,
        Err(DirectoryError::Invalid(_))
    ));
    // Links: once per identity, by the upstream's issuer.
    let uid = dir
        .add_user(new_user("s.schmidt", "hitzacker"))
        .await
        .unwrap();
    let idp = dir.upstream("idp-hitzacker").await.unwrap().unwrap();
    assert!(dir.linked_account(&idp, "sub-1").await.unwrap().is_none());
    assert!(dir.link(&idp, "sub-1", &uid).await.unwrap(), "{db}");
    assert!(!dir.link(&idp, "sub-1", &uid).await.unwrap(), "{db}");
    let linked = dir.linked_account(&idp, "sub-1").await.unwrap();
    assert_eq!(
        linked.flatten().map(|u| u.id.into_string()),
        Some(uid.clone()),
        "{db}"
    );
    assert_eq!(dir.linked_upstreams(&uid).await.unwrap().len(), 1, "{db}");
    assert!(dir.delete_upstream("idp-hitzacker").await.unwrap());
    assert!(!dir.delete_upstream("idp-hitzacker").await.unwrap());
    assert!(dir.linked_upstreams(&uid).await.unwrap().is_empty(), "{db}");
}
conformance!(upstreams_keep_their_contract, upstreams);

async fn factors(dir: &Directory, db: &str) {
    let uid = dir.add_user(new_user("t.totp", "hitzacker")).await.unwrap();
    assert!(!dir.has_second_factor(&uid).await.unwrap());
    dir.stage_totp(&uid, b"12345678901234567890").await.unwrap();
    assert!(
        !dir.has_totp(&uid).await.unwrap(),
        "{db}: staged is not enrolled"
    );
    let staged = dir.staged_totp(&uid).await.unwrap().expect(db);
    assert_eq!(staged.secret, b"12345678901234567890");
    // A second tab staged another secret: the first cannot be confirmed.
    dir.stage_totp(&uid, b"abcdefghijabcdefghij").await.unwrap();
    assert!(
        !dir.confirm_totp(&uid, &staged, 7, &[]).await.unwrap(),
        "{db}"
    );
    let staged = dir.staged_totp(&uid).await.unwrap().unwrap();
    let codes = vec!["AAAABBBBCCCCDDDD".to_owned()];
    assert!(
        dir.confirm_totp(&uid, &staged, 7, &codes).await.unwrap(),
        "{db}"
    );
    assert!(dir.has_totp(&uid).await.unwrap() && dir.staged_totp(&uid).await.unwrap().is_none());
    // Time steps only forward; a recovery code once.
    let (secret, last) = dir.totp_secret(&uid).await.unwrap().unwrap();
    assert_eq!(
        (secret.as_slice(), last),
        (&b"abcdefghijabcdefghij"[..], 7),
        "{db}"
    );
    assert!(!dir.use_totp_step(&uid, 7).await.unwrap(), "{db}");
    assert!(dir.use_totp_step(&uid, 8).await.unwrap(), "{db}");
    assert!(dir
        .use_recovery_code(&uid, "AAAABBBBCCCCDDDD")
        .await
        .unwrap());
    assert!(
        !dir.use_recovery_code(&uid, "AAAABBBBCCCCDDDD")
            .await
            .unwrap(),
        "{db}"
    );
    // Passkeys: a credential belongs to one account.
    assert!(dir.add_passkey(&uid, "cred-1", "{}", true).await.unwrap());
    let other = dir
        .add_user(new_user("o.other", "hitzacker"))
        .await
        .unwrap();
    assert!(
        !dir.add_passkey(&other, "cred-1", "{}", false)
            .await
            .unwrap(),
        "{db}"
    );
    dir.passkey_used("cred-1", "{\"n\":1}").await.unwrap();
    let p = dir.passkey(&uid, "cred-1").await.unwrap().unwrap();
    assert_eq!(
        (p.passkey.as_str(), p.device_bound),
        ("{\"n\":1}", true),
        "{db}"
    );
    assert!(
        dir.passkey(&other, "cred-1").await.unwrap().is_none(),
        "{db}"
    );
    assert_eq!(dir.passkeys(&uid).await.unwrap().len(), 1);
    // A reset removes everything, once.
    assert!(dir.remove_second_factors(&uid).await.unwrap(), "{db}");
    assert!(!dir.remove_second_factors(&uid).await.unwrap(), "{db}");
    assert!(!dir.has_second_factor(&uid).await.unwrap(), "{db}");
}
conformance!(second_factor_enrolments_keep_their_contract, factors);

async fn consents(dir: &Directory, db: &str) {
    let scopes = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let account = "acc-1";
    assert!(!dir
        .has_consented(account, "app", &scopes(&["openid"]))
        .await
        .unwrap());
    dir.grant_consent(account, "app", &scopes(&["openid", "profile"]))
        .await
        .unwrap();
    assert!(
        dir.has_consented(account, "app", &scopes(&["profile", "openid"]))
            .await
            .unwrap(),
        "{db}"
    );
    assert!(
        !dir.has_consented(account, "app", &scopes(&["openid", "email"]))
            .await
            .unwrap(),
        "{db}: more asks again"
    );
    assert!(
        !dir.has_consented("acc-2", "app", &scopes(&["openid"]))
            .await
            .unwrap(),
        "{db}: per account"
    );
    // A later consent adds to the earlier one.
    dir.grant_consent(account, "app", &scopes(&["email"]))
        .await
        .unwrap();
    let listed = dir.consents_of(account).await.unwrap();
    assert_eq!(listed.len(), 1, "{db}");
    assert_eq!(
        listed[0].scopes,
        scopes(&["email", "openid", "profile"]),
        "{db}"
    );
    assert!(dir.revoke_consent(&account.into(), "app").await.unwrap());
    assert!(
        !dir.revoke_consent(&account.into(), "app").await.unwrap(),
        "{db}"
    );
    assert!(dir.consents_of(account).await.unwrap().is_empty());
}

conformance!(
    consents_are_remembered_per_account_grow_and_are_withdrawn,
    consents
);
