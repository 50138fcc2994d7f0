//! The canonical encoding of an event and the hash chain over it.
//!
//! The canonical encoding feeds the event's fields in a fixed order into
//! SHA-256, each as a presence byte, a length and its bytes (`details` as
//! the exact stored text), so the hash depends on no serialiser's choices.
//! The personal fields enter through their own digest, so that retention can
//! erase them and keep the chain verifiable.

use sha2::{Digest, Sha256};

/// The hash that precedes the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Fields of an event as they enter the hash.
#[derive(Debug, Clone, Copy)]
pub struct Canonical<'a> {
    pub seq: i64,
    pub ts: &'a str,
    pub tenant: Option<&'a str>,
    pub tenant_path: Option<&'a str>,
    pub actor_subject: Option<&'a str>,
    pub actor_tenant: Option<&'a str>,
    pub actor_client: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub source: Option<&'a str>,
    pub details: &'a str,
}

/// Feeds one field into the hash: a presence byte, a big-endian length and
/// the bytes. Unambiguous (no field can run into the next), allocation-free.
fn field(h: &mut Sha256, v: Option<&str>) {
    match v {
        None => h.update([0u8]),
        Some(v) => {
            h.update([1u8]);
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
    }
}

/// Lower-case hex of a SHA-256 digest, without the per-character
/// iteration of a general encoder (verification runs this twice per event).
fn hex32(d: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in d.iter().take(32).enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 0x0f) as usize];
    }
    out
}

impl Canonical<'_> {
    fn personal_raw(&self) -> [u8; 64] {
        let mut h = Sha256::new();
        h.update(b"interkom-audit/personal/v1");
        for v in [
            self.actor_subject,
            self.target,
            self.reason,
            self.source,
            Some(self.details),
        ] {
            field(&mut h, v);
        }
        hex32(&h.finalize())
    }

    /// `hex(SHA-256(actor_subject, target, reason, source, details))`.
    pub fn personal_digest(&self) -> String {
        String::from_utf8_lossy(&self.personal_raw()).into_owned()
    }

    /// Whether `stored` is this event's personal digest (no allocation).
    pub fn personal_digest_is(&self, stored: &str) -> bool {
        self.personal_raw().as_slice() == stored.as_bytes()
    }

    /// Whether `stored` is this event's chain hash (no allocation).
    pub fn chain_hash_is(&self, prev_hash: &str, personal_digest: &str, stored: &str) -> bool {
        self.chain_raw(prev_hash, personal_digest).as_slice() == stored.as_bytes()
    }

    /// `hex(SHA-256(prev_hash, seq, ts, tenant, tenant_path, actor_tenant,
    /// actor_client, action, outcome, correlation_id, personal_digest))`.
    pub fn chain_hash(&self, prev_hash: &str, personal_digest: &str) -> String {
        String::from_utf8_lossy(&self.chain_raw(prev_hash, personal_digest)).into_owned()
    }

    fn chain_raw(&self, prev_hash: &str, personal_digest: &str) -> [u8; 64] {
        let mut h = Sha256::new();
        h.update(b"interkom-audit/event/v1");
        field(&mut h, Some(prev_hash));
        h.update(self.seq.to_be_bytes());
        for v in [
            Some(self.ts),
            self.tenant,
            self.tenant_path,
            self.actor_tenant,
            self.actor_client,
            Some(self.action),
            Some(self.outcome),
            self.correlation_id,
            Some(personal_digest),
        ] {
            field(&mut h, v);
        }
        hex32(&h.finalize())
    }
}

impl<'a> From<&'a crate::StoredEvent> for Canonical<'a> {
    fn from(e: &'a crate::StoredEvent) -> Self {
        Canonical {
            seq: e.seq,
            ts: &e.ts,
            tenant: e.tenant.as_deref(),
            tenant_path: e.tenant_path.as_deref(),
            actor_subject: e.actor_subject.as_deref(),
            actor_tenant: e.actor_tenant.as_deref(),
            actor_client: e.actor_client.as_deref(),
            action: &e.action,
            target: e.target.as_deref(),
            outcome: &e.outcome,
            reason: e.reason.as_deref(),
            correlation_id: e.correlation_id.as_deref(),
            source: e.source.as_deref(),
            details: &e.details,
        }
    }
}
