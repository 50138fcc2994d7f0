//! TLS with rustls: the certificate and key from files, reloaded when they
//! change (a renewed certificate needs no restart), and `interkom dev-cert`
//! for a self-signed pair on a developer's machine.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;

use crate::config::TlsConfig;

/// rustls with ring, the crypto library interkom signs with anyway.
pub fn install_crypto_provider() {
    // Already installed (a second node in one process) is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The server configuration from the files.
pub async fn load(tls: &TlsConfig) -> anyhow::Result<RustlsConfig> {
    install_crypto_provider();
    RustlsConfig::from_pem_file(&tls.cert_file, &tls.key_file)
        .await
        .with_context(|| {
            format!(
                "TLS certificate {} and key {}",
                tls.cert_file.display(),
                tls.key_file.display()
            )
        })
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Reloads the certificate and key whenever either file changes; a broken
/// pair keeps the current one (and says so).
pub fn spawn_reload(config: RustlsConfig, tls: TlsConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stamp = |t: &TlsConfig| (modified(&t.cert_file), modified(&t.key_file));
        let mut seen = stamp(&tls);
        let mut every = tokio::time::interval(tls.reload);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let now = stamp(&tls);
            if now == seen {
                continue;
            }
            match config
                .reload_from_pem_file(&tls.cert_file, &tls.key_file)
                .await
            {
                Ok(()) => {
                    seen = now;
                    tracing::info!(cert = %tls.cert_file.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; keeping the current one")
                }
            }
        }
    })
}

/// A self-signed certificate for `localhost`, 127.0.0.1 and ::1 (and any
/// further names), written as PEM; the key file readable by the owner only.
pub fn dev_cert(cert_file: &Path, key_file: &Path, extra_names: &[String]) -> anyhow::Result<()> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().cloned());
    let cert = rcgen::generate_simple_self_signed(names).context("generating the certificate")?;
    for p in [cert_file, key_file] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    // Written aside and renamed into place: a running node's reload never
    // sees half a file, and an existing pair is replaced.
    let aside = |p: &Path| {
        let mut name = p.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".new-{}", std::process::id()));
        p.with_file_name(name)
    };
    let (cert_new, key_new) = (aside(cert_file), aside(key_file));
    let _ = std::fs::remove_file(&key_new);
    crate::config::write_private(&key_new, &cert.key_pair.serialize_pem())
        .with_context(|| format!("writing {}", key_new.display()))?;
    std::fs::write(&cert_new, cert.cert.pem())
        .with_context(|| format!("writing {}", cert_new.display()))?;
    std::fs::rename(&key_new, key_file)
        .with_context(|| format!("writing {}", key_file.display()))?;
    std::fs::rename(&cert_new, cert_file)
        .with_context(|| format!("writing {}", cert_file.display()))?;
    Ok(())
}
