//! Connections to a directory: TLS by rustls against the Kommune's CA (or
//! the system's roots), failover to the next server on a connection
//! failure, a connect and an operation timeout, and a small pool per
//! source and node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::{parse_ca, DirectorySourceConfig};

/// Why the directory could not be used (as opposed to: the person's
/// password or account was refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdapFailure {
    #[error("no server of the directory could be reached ({0})")]
    Unreachable(String),
    #[error("the directory did not answer in time")]
    Timeout,
    #[error("TLS with the directory failed ({0})")]
    Tls(String),
    #[error("the directory refused the service account's bind ({0})")]
    ServiceBind(String),
    #[error("the service account has no password configured")]
    NoSecret,
    #[error("the directory's answer cannot be used ({0})")]
    Protocol(String),
}

impl LdapFailure {
    /// A short name (metrics, audit, the console).
    pub fn kind(&self) -> &'static str {
        match self {
            LdapFailure::Unreachable(_) => "unreachable",
            LdapFailure::Timeout => "timeout",
            LdapFailure::Tls(_) => "tls",
            LdapFailure::ServiceBind(_) => "service_bind",
            LdapFailure::NoSecret => "no_secret",
            LdapFailure::Protocol(_) => "protocol",
        }
    }
}

/// Sorts an error of the LDAP library into what went wrong.
pub(crate) fn classify(e: LdapError) -> LdapFailure {
    match e {
        LdapError::Timeout { .. } => LdapFailure::Timeout,
        LdapError::Rustls { source } => LdapFailure::Tls(source.to_string()),
        LdapError::Io { source } => {
            let tls = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map(|t| t.to_string());
            match tls {
                Some(t) => LdapFailure::Tls(t),
                None => LdapFailure::Unreachable(source.kind().to_string()),
            }
        }
        LdapError::LdapResult { result } => LdapFailure::Protocol(format!(
            "result {}{}",
            result.rc,
            if result.text.is_empty() {
                String::new()
            } else {
                format!(": {}", truncate(&result.text, 200))
            }
        )),
        other => LdapFailure::Protocol(truncate(&other.to_string(), 200)),
    }
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn tls_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, LdapFailure> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for c in parse_ca(pem).map_err(|_| LdapFailure::Tls("no CA certificate".into()))? {
                roots
                    .add(c)
                    .map_err(|e| LdapFailure::Tls(format!("CA certificate: {e}")))?;
            }
        }
        None => {
            for c in system_roots() {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapFailure::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The system's trusted roots: the PEM bundle Debian and most
/// distributions keep them in.
fn system_roots() -> Vec<CertificateDer<'static>> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .find_map(|pem| parse_ca(&pem).ok())
    .unwrap_or_default()
}

/// Connections to one directory, as one node keeps them.
pub(crate) struct Pool {
    servers: Vec<String>,
    starttls: bool,
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    op_timeout: Duration,
    idle: Mutex<Vec<Ldap>>,
    slots: Arc<Semaphore>,
}

/// A connection taken from the pool; it goes back only when [`Lease::keep`]
/// says it is in a known state.
pub(crate) struct Lease<'p> {
    pool: &'p Pool,
    ldap: Ldap,
    keep: bool,
    _slot: OwnedSemaphorePermit,
}

impl Lease<'_> {
    pub(crate) fn ldap(&mut self) -> &mut Ldap {
        &mut self.ldap
    }

    /// The connection may serve the next caller.
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // A handle shares its connection: the pool keeps a copy.
        if self.keep && !self.ldap.is_closed() {
            if let Ok(mut idle) = self.pool.idle.lock() {
                idle.push(self.ldap.clone());
            }
        }
    }
}

impl Pool {
    pub(crate) fn new(cfg: &DirectorySourceConfig) -> Result<Pool, LdapFailure> {
        Ok(Pool {
            servers: cfg.servers.clone(),
            starttls: !cfg.allow_plain,
            tls: tls_config(cfg.ca_pem.as_deref())?,
            connect_timeout: cfg.connect_timeout(),
            op_timeout: cfg.op_timeout(),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(cfg.pool_size)),
        })
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// A connection: an idle one, or a new one to the first server that
    /// answers. `fresh`: a new connection was made (it is not bound yet).
    pub(crate) async fn lease(&self) -> Result<(Lease<'_>, bool), LdapFailure> {
        let slot = tokio::time::timeout(self.op_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| LdapFailure::Timeout)?
            .map_err(|_| LdapFailure::Unreachable("pool closed".into()))?;
        // A connection the server closed meanwhile (idle timeout) is dropped.
        let idle = self.idle.lock().ok().and_then(|mut v| {
            while let Some(mut l) = v.pop() {
                if !l.is_closed() {
                    return Some(l);
                }
            }
            None
        });
        let (ldap, fresh) = match idle {
            Some(l) => (l, false),
            None => (self.connect().await?, true),
        };
        Ok((
            Lease {
                pool: self,
                ldap,
                keep: false,
                _slot: slot,
            },
            fresh,
        ))
    }

    /// Drops idle connections (after a failure that may concern them all).
    pub(crate) fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Connects to the first server that answers, in order.
    async fn connect(&self) -> Result<Ldap, LdapFailure> {
        let mut last = LdapFailure::Unreachable("no server configured".into());
        for server in &self.servers {
            // TLS decided from the URL as parsed (and validated), never
            // from its text.
            let ldap = url::Url::parse(server).is_ok_and(|u| u.scheme() == "ldap");
            let settings = LdapConnSettings::new()
                .set_conn_timeout(self.connect_timeout)
                .set_config(self.tls.clone())
                .set_starttls(ldap && self.starttls);
            match LdapConnAsync::with_settings(settings, server).await {
                Ok((conn, ldap)) => {
                    tokio::spawn(async move {
                        if let Err(e) = conn.drive().await {
                            tracing::debug!(error = %e, "directory connection ended");
                        }
                    });
                    return Ok(ldap);
                }
                Err(e) => {
                    let f = classify(e);
                    tracing::warn!(server = %server, failure = %f, "directory server not usable, trying the next");
                    // A TLS failure is the server's certificate: the next
                    // server of the same Kommune is worth a try too.
                    last = f;
                }
            }
        }
        Err(last)
    }
}
