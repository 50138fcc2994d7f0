//! Calls interkom makes to addresses others registered (upstream issuers,
//! back-channel logout URIs): name resolution that yields only public
//! addresses, checked at connect time. A registration's check sees the
//! name once; a name that points inside — or is made to, later — reaches
//! nothing there, and no status of an internal port lands in the audit.

use std::sync::Arc;
use std::time::Duration;

use interkom_directory::upstreams::public_ip;

use crate::GatewayError;

/// Resolves names to their public addresses only (loopback when allowed,
/// for tests).
pub(crate) struct PublicResolver {
    pub(crate) allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let ok: Vec<std::net::SocketAddr> =
                found.filter(|a| public_ip(a.ip(), allow)).collect();
            if ok.is_empty() {
                return Err(format!("`{host}` resolves to no address interkom may call").into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An HTTP client for registered addresses: public ones only, no
/// redirects followed, bounded in time.
pub(crate) fn client(
    allow_loopback: bool,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<reqwest::Client, GatewayError> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PublicResolver { allow_loopback }))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| GatewayError::Config(format!("HTTP client: {e}")))
}
