//! The `saml_acs` scenario: a citizen's SAML login as interkom consumes it
//! — the Response posted to the ACS (signature verified, assertion
//! decrypted, checks, replay cache, the person linked), the login taken
//! up, the code redeemed for tokens. Before the clock starts, every login
//! is opened (the Leistung's page, the source chosen: interkom's signed
//! AuthnRequest) and its Response signed and encrypted here, so the
//! generator does no RSA work while measuring.

use std::sync::Mutex;

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{StatusCode, Uri};
use interkom_saml::dsig::{Certificate, SigningKey};
use interkom_saml::response::{self, Assertion, Attribute, Envelope, Protection, Status};
use sha2::{Digest, Sha256};

use crate::{contains, cookie_set, enc, quoted_after, random_b64, Conn, Failure, Target};

/// The Leistung logged in to (a demo client of the county; level low).
const CLIENT: &str = "hundesteuer-hitzacker";
const REDIRECT: &str = "http://localhost:9010/callback";
const SOURCE: &str = "bench-idp";
const ENTITY: &str = "https://bench-idp.example/idp";

/// One login, ready to be consumed.
pub(crate) struct Prepared {
    /// `interkom_browser=…`.
    cookie: HeaderValue,
    /// `SAMLResponse=…`, form-encoded.
    body: Bytes,
    verifier: String,
}

/// The logins of a run, taken one by one.
pub(crate) struct Pool {
    items: Mutex<Vec<Prepared>>,
    token: Uri,
    acs: Uri,
}

/// A login opened at interkom: its browser cookie, the AuthnRequest's id.
struct Opened {
    cookie: HeaderValue,
    request_id: String,
    verifier: String,
}

async fn open(conn: &mut Conn, t: &Target) -> Result<Opened, Failure> {
    let verifier = random_b64::<32>();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let uri: Uri = format!(
        "{}/authorize?response_type=code&client_id={CLIENT}&redirect_uri={}&scope=openid\
         &code_challenge_method=S256&code_challenge={challenge}",
        t.base,
        enc(REDIRECT)
    )
    .parse()
    .map_err(|e| Failure::io("authorize", e))?;
    let (parts, body) = conn.exchange("authorize", t.get(uri)).await?;
    if parts.status != StatusCode::OK || !contains(&body, SOURCE.as_bytes()) {
        return Err(Failure::answer("authorize", parts.status, &body));
    }
    let browser = cookie_set(&parts, "interkom_browser")
        .ok_or_else(|| Failure::note("authorize", parts.status, "no interkom_browser cookie"))?;
    let (Some(lr), Some(csrf)) = (
        quoted_after(&body, br#"name="login_request" value=""#),
        quoted_after(&body, br#"name="csrf_token" value=""#),
    ) else {
        return Err(Failure::note("authorize", parts.status, "no login form"));
    };
    let cookie = HeaderValue::from_str(&format!("interkom_browser={browser}"))
        .map_err(|e| Failure::io("authorize", e))?;
    let form = format!("login_request={lr}&csrf_token={csrf}&source={SOURCE}");
    let uri: Uri = format!("{}/login/saml", t.base)
        .parse()
        .map_err(|e| Failure::io("source", e))?;
    let mut req = t.post(&uri, None, Bytes::from(form));
    req.headers_mut().insert(header::COOKIE, cookie.clone());
    let (parts, body) = conn.exchange("source", req).await?;
    let request = quoted_after(&body, br#"name="SAMLRequest" value=""#)
        .filter(|_| parts.status == StatusCode::OK)
        .ok_or_else(|| Failure::answer("source", parts.status, &body))?;
    let xml = STANDARD
        .decode(
            request
                .replace("&#x2b;", "+")
                .replace("&#x2f;", "/")
                .replace("&#x3d;", "="),
        )
        .map_err(|e| Failure::io("source", e))?;
    let xml = String::from_utf8_lossy(&xml);
    let request_id = xml
        .split_once(" ID=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(id, _)| id.to_owned())
        .ok_or_else(|| Failure::note("source", parts.status, "an AuthnRequest without ID"))?;
    Ok(Opened {
        cookie,
        request_id,
        verifier,
    })
}

/// Reads the IdP's key and certificate (`PREFIX.key`, `PREFIX.crt`).
fn idp_key(prefix: &str) -> anyhow::Result<SigningKey> {
    let read = |ext: &str| -> anyhow::Result<Vec<u8>> {
        let text = std::fs::read_to_string(format!("{prefix}.{ext}"))
            .with_context(|| format!("reading {prefix}.{ext}"))?;
        Ok(STANDARD.decode(text.trim())?)
    };
    Ok(SigningKey::new(&read("key")?, Certificate(read("crt")?))?)
}

/// interkom's encryption certificate, from its SP metadata.
async fn our_certificate(t: &Target) -> anyhow::Result<Certificate> {
    let mut conn = Conn::new(t.addr);
    let uri: Uri = format!("{}/saml/sp/metadata", t.base).parse()?;
    let (parts, body) = conn
        .exchange("metadata", t.get(uri))
        .await
        .map_err(|f| anyhow!("{f}"))?;
    if parts.status != StatusCode::OK {
        bail!("the SP metadata: HTTP {}", parts.status);
    }
    let md = interkom_saml::metadata::SpMetadata::read(std::str::from_utf8(&body)?)?;
    md.encryption
        .into_iter()
        .next()
        .context("no encryption certificate in interkom's metadata")
}

/// Opens `n` logins on `connections` connections and signs and encrypts a
/// Response for each (on every core), all before the clock starts.
pub(crate) async fn prepare(
    t: &Target,
    idp_prefix: &str,
    issuer: &str,
    n: usize,
    connections: usize,
) -> anyhow::Result<Pool> {
    let key = idp_key(idp_prefix)?;
    let ours = our_certificate(t).await?;
    // The source is seen within the node's cache lifetime after it was
    // registered: wait for the Leistung's page to offer it.
    let mut conn = Conn::new(t.addr);
    let mut first = None;
    for _ in 0..60 {
        match open(&mut conn, t).await {
            Ok(o) => {
                first = Some(o);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
    let first = first.context("the Leistung's page never offered the bench source")?;
    let per = n.div_ceil(connections.max(1));
    let tasks: Vec<_> = (0..connections.max(1))
        .map(|i| {
            let addr = t.nodes[i % t.nodes.len()];
            let t = t.clone();
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let mut out = Vec::with_capacity(per);
                for _ in 0..per {
                    out.push(open(&mut conn, &t).await.map_err(|f| anyhow!("{f}"))?);
                }
                Ok::<_, anyhow::Error>(out)
            })
        })
        .collect();
    let mut opened = vec![first];
    for task in tasks {
        opened.extend(task.await??);
    }
    opened.truncate(n);
    let acs = format!("{}/saml/sp/acs", issuer.trim_end_matches('/'));
    let audience = format!("{}/saml/sp", issuer.trim_end_matches('/'));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    // RSA on every core, before the clock.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = opened.len().div_ceil(threads).max(1);
    let items = std::thread::scope(|s| {
        let handles: Vec<_> = opened
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                let (key, ours, acs, audience) = (&key, &ours, &acs, &audience);
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(j, o)| {
                            let pseudonym = format!("bench-{}", (c * chunk + j) % 1000);
                            let xml = response_for(o, key, ours, acs, audience, now, &pseudonym)?;
                            Ok(Prepared {
                                cookie: o.cookie.clone(),
                                body: Bytes::from(format!(
                                    "SAMLResponse={}",
                                    enc(&STANDARD.encode(xml))
                                )),
                                verifier: o.verifier.clone(),
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| anyhow!("a signing thread failed"))??);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    Ok(Pool {
        items: Mutex::new(items),
        token: format!("{}/token", t.base).parse()?,
        acs: format!("{}/saml/sp/acs", t.base).parse()?,
    })
}

#[allow(clippy::too_many_arguments)]
fn response_for(
    o: &Opened,
    key: &SigningKey,
    ours: &Certificate,
    acs: &str,
    audience: &str,
    now: i64,
    pseudonym: &str,
) -> anyhow::Result<String> {
    let attr = |name: &str, v: &str| Attribute {
        name: name.into(),
        friendly_name: None,
        values: vec![v.into()],
    };
    let a = Assertion {
        id: interkom_saml::new_id(),
        issuer: ENTITY.into(),
        issue_instant: now,
        name_id: interkom_saml::new_id(),
        name_id_format: response::NAMEID_TRANSIENT.into(),
        sp_name_qualifier: Some(audience.into()),
        recipient: acs.into(),
        in_response_to: Some(o.request_id.clone()),
        not_before: now - 5,
        not_on_or_after: now + 600,
        audience: audience.into(),
        authn_instant: now,
        session_index: interkom_saml::new_id(),
        class_ref: "STORK-QAA-Level-3".into(),
        attributes: vec![
            attr("urn:oid:1.3.6.1.4.1.25484.494450.3", pseudonym),
            attr("urn:oid:1.2.40.0.10.2.1.1.261.94", "STORK-QAA-Level-3"),
            attr("urn:oid:2.5.4.42", "Erika"),
            attr("urn:oid:2.5.4.4", "Mustermann"),
            attr("urn:oid:2.5.4.16", "Heidestraße 17"),
        ],
    };
    let env = Envelope {
        id: interkom_saml::new_id(),
        issuer: ENTITY.into(),
        issue_instant: now,
        destination: acs.into(),
        in_response_to: Some(o.request_id.clone()),
        status: Status::success(),
    };
    // As BundID: the assertion signed, then encrypted (AES-256-GCM with
    // RSA-OAEP-SHA256).
    let method = interkom_saml::enc::Method::parse("aes256-gcm", "rsa-oaep")
        .context("the encryption method")?;
    Ok(response::write(
        &env,
        Some(&a),
        key,
        &Protection {
            sign_assertion: true,
            sign_response: false,
            encrypt_to: Some((ours, method)),
        },
    )?)
}

impl Pool {
    pub(crate) fn len(&self) -> usize {
        self.items.lock().map_or(0, |i| i.len())
    }

    /// One login consumed: the Response at the ACS, the login taken up,
    /// the code redeemed.
    pub(crate) async fn iterate(&self, conn: &mut Conn, t: &Target) -> Result<(), Failure> {
        let Some(p) = self.items.lock().ok().and_then(|mut i| i.pop()) else {
            return Err(Failure::io("acs", "no prepared login left"));
        };
        let (parts, body) = conn
            .exchange("acs", t.post(&self.acs, None, p.body))
            .await?;
        let next = location(&parts)
            .filter(|_| parts.status == StatusCode::SEE_OTHER)
            .ok_or_else(|| Failure::answer("acs", parts.status, &body))?;
        let mut req = t.get(next.parse().map_err(|e| Failure::io("continue", e))?);
        req.headers_mut().insert(header::COOKIE, p.cookie);
        let (parts, body) = conn.exchange("continue", req).await?;
        let back = location(&parts)
            .filter(|l| parts.status == StatusCode::SEE_OTHER && l.starts_with(REDIRECT))
            .ok_or_else(|| Failure::answer("continue", parts.status, &body))?;
        let code = url::Url::parse(&back)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
            })
            .ok_or_else(|| Failure::note("continue", parts.status, "no code"))?;
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&client_id={CLIENT}&code_verifier={}",
            enc(&code),
            enc(REDIRECT),
            p.verifier
        );
        let (parts, body) = conn
            .exchange("token", t.post(&self.token, None, Bytes::from(form)))
            .await?;
        if parts.status == StatusCode::OK && contains(&body, br#""id_token":""#) {
            return Ok(());
        }
        Err(Failure::answer("token", parts.status, &body))
    }
}

/// The path and query of an answer's `Location`.
fn location(parts: &hyper::http::response::Parts) -> Option<String> {
    let l = parts.headers.get(header::LOCATION)?.to_str().ok()?;
    if l.starts_with('/') || l.starts_with(REDIRECT) {
        return Some(l.to_owned());
    }
    let u = url::Url::parse(l).ok()?;
    Some(format!("{}?{}", u.path(), u.query().unwrap_or("")))
}
