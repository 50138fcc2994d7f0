//! Passkeys (WebAuthn) as the second factor, with a software authenticator
//! written here: ECDSA P-256 keys (ring), attestation `none`, CBOR
//! (ciborium), user presence and verification. The node runs on
//! `localhost`: WebAuthn needs a domain name as relying party.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciborium::Value as Cbor;
use interkom_policy::Loa;
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};

use crate::common::*;

/// A software authenticator holding one credential.
struct SoftKey {
    origin: String,
    rp_id: String,
    cred_id: Vec<u8>,
    pkcs8: Vec<u8>,
    /// Backup-eligible and backed up (a synced passkey), or device-bound.
    synced: bool,
    counter: u32,
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;

impl SoftKey {
    fn new(origin: &str, synced: bool) -> SoftKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let rp_id = url::Url::parse(origin)
            .unwrap()
            .host_str()
            .unwrap()
            .to_owned();
        SoftKey {
            origin: origin.to_owned(),
            rp_id,
            cred_id: uuid::Uuid::new_v4().as_bytes().to_vec(),
            pkcs8: pkcs8.as_ref().to_vec(),
            synced,
            counter: 0,
        }
    }

    fn pair(&self) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.pkcs8,
            &SystemRandom::new(),
        )
        .unwrap()
    }

    fn flags(&self) -> u8 {
        UP | UV | if self.synced { BE | BS } else { 0 }
    }

    fn client_data(&self, kind: &str, options: &Value) -> String {
        json!({
            "type": kind,
            "challenge": options["publicKey"]["challenge"],
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
    }

    /// The answer to `navigator.credentials.create`.
    fn register(&self, options: &Value) -> Value {
        let pair = self.pair();
        let pk = pair.public_key().as_ref();
        let int = |i: i64| Cbor::Integer(i.into());
        let cose = Cbor::Map(vec![
            (int(1), int(2)),
            (int(3), int(-7)),
            (int(-1), int(1)),
            (int(-2), Cbor::Bytes(pk[1..33].to_vec())),
            (int(-3), Cbor::Bytes(pk[33..65].to_vec())),
        ]);
        let mut auth_data = digest(&SHA256, self.rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(self.flags() | AT);
        auth_data.extend(self.counter.to_be_bytes());
        auth_data.extend([0u8; 16]);
        auth_data.extend((self.cred_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.cred_id);
        ciborium::into_writer(&cose, &mut auth_data).unwrap();
        let object = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]);
        let mut att = Vec::new();
        ciborium::into_writer(&object, &mut att).unwrap();
        let cdj = self.client_data("webauthn.create", options);
        json!({
            "id": URL_SAFE_NO_PAD.encode(&self.cred_id),
            "rawId": URL_SAFE_NO_PAD.encode(&self.cred_id),
            "type": "public-key",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(att),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(cdj),
            },
        })
    }

    /// The answer to `navigator.credentials.get`.
    fn assert(&mut self, options: &Value) -> Value {
        self.counter += 1;
        let mut auth_data = digest(&SHA256, self.rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(self.flags());
        auth_data.extend(self.counter.to_be_bytes());
        let cdj = self.client_data("webauthn.get", options);
        let mut signed = auth_data.clone();
        signed.extend(digest(&SHA256, cdj.as_bytes()).as_ref());
        let sig = self.pair().sign(&SystemRandom::new(), &signed).unwrap();
        json!({
            "id": URL_SAFE_NO_PAD.encode(&self.cred_id),
            "rawId": URL_SAFE_NO_PAD.encode(&self.cred_id),
            "type": "public-key",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(cdj),
                "signature": URL_SAFE_NO_PAD.encode(sig.as_ref()),
            },
        })
    }
}

/// Registers `key` for the browser's signed-in user; the server's answer.
async fn register(s: &TestServer, browser: &Browser, key: &SoftKey) -> (u16, Value) {
    let page = browser
        .get(&s.url("/account/passkey"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = attr(&page, "data-csrf");
    let begin: Value = browser
        .http
        .post(s.url("/account/passkey/begin"))
        .form(&[("csrf_token", &csrf)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credential = key.register(&begin["options"]);
    let res = browser
        .http
        .post(s.url("/account/passkey/finish"))
        .json(
            &json!({ "ceremony": begin["ceremony"], "csrf_token": csrf, "credential": credential }),
        )
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn portal(s: &TestServer, acr: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        s,
        &[
            ("response_type", "code"),
            ("client_id", PORTAL),
            ("redirect_uri", PORTAL_REDIRECT),
            ("scope", "openid"),
            ("state", "p1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("acr_values", acr),
        ],
    );
    (url, verifier)
}

/// Answers the second-factor page with `key` (a signature that `tamper`
/// may spoil).
async fn use_passkey(
    s: &TestServer,
    browser: &Browser,
    page: &str,
    key: &mut SoftKey,
    tamper: bool,
) -> reqwest::Response {
    let begin: Value = post_step(browser, s, "/login/passkey/begin", page, &[])
        .await
        .json()
        .await
        .unwrap();
    let mut answer = key.assert(&begin["options"]);
    if tamper {
        answer["response"]["clientDataJSON"] = json!(URL_SAFE_NO_PAD
            .encode(key.client_data("webauthn.get", &json!({"publicKey": {"challenge": "AAAA"}}))));
    }
    let credential = answer.to_string();
    post_step(
        browser,
        s,
        "/login/passkey",
        page,
        &[("credential", &credential)],
    )
    .await
}

#[tokio::test]
async fn passkeys_step_up_to_the_level_their_kind_is_trusted_for() {
    let s = TestServer::start_with(|fc| {
        fc.issuer = fc.issuer.replace("127.0.0.1", "localhost");
        // This county trusts passkeys bound to their device as `high`.
        fc.passkeys.device_bound_loa = Loa::High;
    })
    .await;
    let anna = Browser::new();
    let (url, _) = portal(&s, "urn:interkom:loa:low");
    anna.login(&s, &url, "anna.schulz", "Elbtalaue-Demo-2026!")
        .await;
    let mut hardware = SoftKey::new(&s.issuer, false);
    let (status, v) = register(&s, &anna, &hardware).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["device_bound"].clone(), v["level"].clone()),
        (json!(true), json!("high"))
    );
    let enrolled = s.audit("second_factor_enrolled").await;
    assert_eq!(
        serde_json::from_str::<Value>(&enrolled[0].details).unwrap()["method"],
        "passkey"
    );

    // The Einwohnermeldewesen (sehr_hoch) needs `high`: the passkey page.
    let (url, verifier) = ewo_authorize_url(&s, "e1");
    let res = anna.get(&url).await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("passkey-login") && !page.contains("/login/otp"));
    // A signature over another challenge is refused and audited.
    let res = use_passkey(&s, &anna, &page, &mut hardware, true).await;
    assert_eq!(res.status(), 401);
    let failed = s.audit("login_failed").await;
    assert_eq!(failed[0].reason.as_deref(), Some("invalid_second_factor"));
    let res = use_passkey(&s, &anna, &page, &mut hardware, false).await;
    assert_eq!(res.status(), 303);
    let q = redirect_params(&res);
    assert_eq!(q["state"], "e1");
    let id = ewo_id_token(&s, &q["code"], &verifier).await;
    assert_eq!(id["acr"], "urn:interkom:loa:high");
    assert_eq!(id["amr"], json!(["pwd", "hwk", "mfa"]));

    // A phished password adds no passkey to an account that has one.
    let phished = Browser::new();
    let (url, _) = portal(&s, "urn:interkom:loa:low");
    phished
        .login(&s, &url, "anna.schulz", "Elbtalaue-Demo-2026!")
        .await;
    assert_eq!(phished.get(&s.url("/account/passkey")).await.status(), 401);

    // A synced passkey is `substantial`, whatever the setting.
    let jan = Browser::new();
    let (url, _) = portal(&s, "urn:interkom:loa:low");
    jan.login(&s, &url, CLERK_USER, CLERK_PASSWORD).await;
    let mut synced = SoftKey::new(&s.issuer, true);
    let (status, v) = register(&s, &jan, &synced).await;
    assert_eq!((status, v["level"].clone()), (201, json!("substantial")));
    let (url, _) = portal(&s, "urn:interkom:loa:high");
    let res = jan.get(&url).await;
    assert_eq!(
        redirect_params(&res)["error"],
        "unmet_authentication_requirements"
    );
    let (url, verifier) = portal(&s, "urn:interkom:loa:substantial");
    let page = jan.get(&url).await.text().await.unwrap();
    let res = use_passkey(&s, &jan, &page, &mut synced, false).await;
    assert_eq!(res.status(), 303);
    let res = exchange_code(
        &s,
        (PORTAL, PORTAL_SECRET),
        &redirect_params(&res)["code"],
        &verifier,
    )
    .await;
    let v: Value = res.json().await.unwrap();
    let id = jwt_payload(v["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "urn:interkom:loa:substantial");
    assert_eq!(id["amr"], json!(["pwd", "swk", "mfa"]));

    // One credential, one account; without a session, nothing to register.
    let (status, _) = register(&s, &jan, &hardware).await;
    assert_eq!(status, 409);
    let res = Browser::new()
        .http
        .post(s.url("/account/passkey/begin"))
        .form(&[("csrf_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A reset takes passkeys too.
    let anna_id = s
        .app
        .directory
        .find_user("anna.schulz")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(s.app.directory.has_second_factor(&anna_id).await.unwrap());
    assert!(s.app.gateway.reset_second_factors(&anna_id).await.unwrap());
    assert!(!s.app.directory.has_second_factor(&anna_id).await.unwrap());
}

#[tokio::test]
async fn an_address_as_issuer_offers_no_passkeys() {
    let s = TestServer::start().await;
    let browser = Browser::new();
    let (url, _) = portal(&s, "urn:interkom:loa:low");
    browser
        .login(&s, &url, "anna.schulz", "Elbtalaue-Demo-2026!")
        .await;
    let page = browser
        .get(&s.url("/account/passkey"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Domainnamen"));
}
