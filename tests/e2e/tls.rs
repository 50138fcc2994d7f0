//! TLS with rustls: a `dev-cert` pair served with HSTS, and a renewed
//! certificate picked up without a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// GET over TLS trusting only `root`; the response and the server's
/// certificate.
async fn https_get(addr: &str, root: &Path, path: &str) -> Result<(String, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(root).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok((String::from_utf8_lossy(&out).into_owned(), peer))
}

fn first_cert(p: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(p)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn serves_tls_with_hsts_and_reloads_a_renewed_certificate() {
    let dir = std::env::temp_dir().join(format!("interkom-tls-{}", uuid::Uuid::new_v4()));
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    interkom::tls::dev_cert(&cert, &key, &[]).unwrap();
    let (c2, k2) = (cert.clone(), key.clone());
    let s = TestServer::start_with(move |fc| {
        fc.tls.cert_file = Some(c2);
        fc.tls.key_file = Some(k2);
        fc.tls.reload_seconds = Some(1);
    })
    .await;
    let addr = s.issuer.trim_start_matches("http://").to_owned();

    let (res, peer) = https_get(&addr, &cert, "/healthz").await.unwrap();
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(
        res.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{res}"
    );
    assert_eq!(peer, first_cert(&cert));
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = TestServer::http()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A renewed pair on disk is served within the reload interval; the old
    // certificate is no longer presented.
    let old = first_cert(&cert);
    let backup = dir.join("old.pem");
    std::fs::copy(&cert, &backup).unwrap();
    interkom::tls::dev_cert(&cert, &key, &["interkom.test".into()]).unwrap();
    let new = first_cert(&cert);
    assert_ne!(old, new);
    let mut served = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok((res, peer)) = https_get(&addr, &cert, "/healthz").await {
            assert!(res.starts_with("HTTP/1.1 200"));
            served = peer;
            break;
        }
    }
    assert_eq!(served, new, "the renewed certificate is served");
    assert!(
        https_get(&addr, &backup, "/healthz").await.is_err(),
        "the old one is gone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plain_http_only_on_loopback_or_behind_a_proxy() {
    let mut fc = base_config();
    fc.listen = "0.0.0.0:8080".into();
    fc.key_encryption_key = Some(interkom_directory::MasterKey::generate().to_base64().into());
    fc.audit.checkpoint_key = Some(checkpoint_key());
    fc.policy_dir = repo_root().join("policies");
    let err = format!("{:#}", fc.clone().validate().unwrap_err());
    assert!(err.contains("behind_proxy"), "{err}");
    fc.tls.behind_proxy = true;
    // Behind a proxy only with the proxy named: else every client is the proxy.
    let err = format!("{:#}", fc.clone().validate().unwrap_err());
    assert!(err.contains("trusted_proxies"), "{err}");
    fc.tls.trusted_proxies = vec!["10.0.0.5".into()];
    let config = fc.validate().unwrap();
    assert!(config.hsts && config.tls.is_none());
}

#[test]
fn dev_cert_replaces_a_pair_whatever_the_file_names() {
    let dir = std::env::temp_dir().join(format!("interkom-devcert-{}", uuid::Uuid::new_v4()));
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    for _ in 0..2 {
        interkom::tls::dev_cert(&cert, &key, &[]).unwrap();
        assert!(std::fs::read_to_string(&cert)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is the owner's alone");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The source an audit event recorded for a client-credentials grant sent
/// with this `X-Forwarded-For`.
async fn recorded_source(s: &TestServer, forwarded: &str) -> String {
    let res = TestServer::http()
        .post(s.url("/token"))
        .basic_auth(KFZ, Some(KFZ_SECRET))
        .header("x-forwarded-for", forwarded)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    s.audit("token_issued").await[0].source.clone().unwrap()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_audit_records_the_client_not_the_proxy() {
    // The test connects from 127.0.0.1: the proxy.
    let s = TestServer::start_with(|c| {
        c.tls.behind_proxy = true;
        c.tls.trusted_proxies = vec!["127.0.0.0/8".into(), "192.0.2.7".into()];
    })
    .await;
    // The client's own claim left of the real client address proves nothing;
    // the trusted second proxy right of it is skipped.
    assert_eq!(
        recorded_source(&s, "6.6.6.6, 203.0.113.9, 192.0.2.7").await,
        "203.0.113.0/24"
    );
    // Without trusted proxies the header is ignored: anyone can send it.
    let plain = TestServer::start().await;
    assert_eq!(recorded_source(&plain, "203.0.113.9").await, "127.0.0.0/24");
    // A bad range is a configuration error.
    let mut fc = base_config();
    fc.tls.trusted_proxies = vec!["10.0.0.0/40".into()];
    let err = format!("{:?}", fc.validate().unwrap_err());
    assert!(err.contains("trusted_proxies"), "{err}");
}
