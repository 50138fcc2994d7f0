//! The client's address behind a TLS-terminating proxy: taken from
//! `X-Forwarded-For` only when the connection comes from a trusted proxy,
//! and then the rightmost address no trusted proxy added (anything left of
//! it was written by the client and proves nothing).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    /// Parses CIDR ranges or single addresses (`10.0.0.0/8`, `192.0.2.7`).
    pub fn parse(items: &[String]) -> Result<TrustedProxies, String> {
        items
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("tls.trusted_proxies: `{s}` is not an address or CIDR range")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| TrustedProxies(Arc::new(v)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` carrying these
    /// `X-Forwarded-For` values (`None`: keep the peer). Values are bytes:
    /// a hop that is not an address (or not even text) ends the walk, but
    /// does not hide the hops right of it.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl Iterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        if !self.trusts(peer) {
            return None;
        }
        let hops: Vec<&[u8]> = forwarded.flat_map(|v| v.split(|b| *b == b',')).collect();
        let mut client = None;
        for hop in hops.iter().rev() {
            // An unparsable hop ends the walk: what lies left of it is unknown.
            let Some(ip) = std::str::from_utf8(hop)
                .ok()
                .and_then(|h| parse_hop(h.trim()))
            else {
                break;
            };
            let ip = ip.to_canonical();
            client = Some(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]:443` or `192.0.2.1:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// Replaces the connection's address with the client's, for every handler
/// and audit event after it.
pub async fn client_address(
    State(proxies): State<TrustedProxies>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes());
        // IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d.
        let ip = proxies
            .client(peer.ip(), forwarded)
            .unwrap_or_else(|| peer.ip().to_canonical());
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, peer.port())));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_only_up_to_the_first_untrusted_hop() {
        let p = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        // Not from a proxy: the header is the client's own claim.
        assert_eq!(
            p.client(ip("198.51.100.1"), [&b"203.0.113.9"[..]].into_iter()),
            None
        );
        // From the proxy: its one hop.
        assert_eq!(
            p.client(ip("10.1.2.3"), [&b"203.0.113.9"[..]].into_iter()),
            Some(ip("203.0.113.9"))
        );
        // A spoofed entry left of the real client is ignored; trusted hops
        // right of it are skipped.
        assert_eq!(
            p.client(
                ip("10.1.2.3"),
                [&b"6.6.6.6, 203.0.113.9"[..], &b"192.0.2.7"[..]].into_iter()
            ),
            Some(ip("203.0.113.9"))
        );
        // Garbage ends the walk at the last good hop.
        assert_eq!(
            p.client(
                ip("10.1.2.3"),
                [&b"not-an-ip, 203.0.113.9:5000"[..]].into_iter()
            ),
            Some(ip("203.0.113.9"))
        );
        // Bytes that are not text left of the client do not hide it.
        assert_eq!(
            p.client(ip("10.1.2.3"), [&b"\xe9, 203.0.113.9"[..]].into_iter()),
            Some(ip("203.0.113.9"))
        );
        // No header: the peer stays.
        assert_eq!(p.client(ip("10.1.2.3"), std::iter::empty()), None);
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        assert!(p.trusts(ip("::ffff:10.0.0.1")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
    }
}
