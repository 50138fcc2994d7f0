//! The canonical encoding of an event and the hash chain over it.
//!
//! The canonical encoding is a JSON array of the event's fields in a fixed
//! order, with `details` as the exact stored text, so the hash does not
//! depend on how a JSON library orders object keys. The personal fields
//! enter through their own digest, so that retention can erase them and
//! keep the chain verifiable.

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

impl Canonical<'_> {
    /// `hex(SHA-256([actor_subject, target, reason, source, details]))`.
    pub fn personal_digest(&self) -> Result<String, serde_json::Error> {
        let enc = serde_json::to_vec(&(
            self.actor_subject,
            self.target,
            self.reason,
            self.source,
            self.details,
        ))?;
        Ok(hex::encode(Sha256::digest(enc)))
    }

    /// The encoding the chain hash covers, given the personal digest.
    pub fn encode(&self, personal_digest: &str) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&(
            self.seq,
            self.ts,
            self.tenant,
            self.tenant_path,
            self.actor_tenant,
            self.actor_client,
            self.action,
            self.outcome,
            self.correlation_id,
            personal_digest,
        ))
    }

    /// `hex(SHA-256(prev_hash || "\n" || encoding))`.
    pub fn chain_hash(
        &self,
        prev_hash: &str,
        personal_digest: &str,
    ) -> Result<String, serde_json::Error> {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(self.encode(personal_digest)?);
        Ok(hex::encode(h.finalize()))
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
