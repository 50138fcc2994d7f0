//! Forwarding the trail to a SIEM over TCP, as RFC 5424 syslog (octet
//! counting framing, RFC 6587) or as JSON lines.
//!
//! The forwarder follows the stored trail with its own cursor: appends never
//! wait for it, a SIEM that is down only makes it fall behind, and after a
//! reconnect it catches up from where delivery last succeeded (at least
//! once: an event may arrive twice after a broken connection, never not).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::{AuditError, StoredEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardFormat {
    /// RFC 5424 with octet-counting framing.
    Syslog,
    /// One JSON object per line.
    JsonLines,
}

#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// `host:port` of the SIEM's TCP input.
    pub target: String,
    pub format: ForwardFormat,
    /// The cursor's name (one per destination).
    pub name: String,
    /// HOSTNAME field of syslog messages.
    pub hostname: String,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// How often to look for new events when caught up.
    pub poll: Duration,
}

const PAGE: i64 = 500;

/// Starts the forwarder; it runs until the runtime ends.
pub fn start(pool: AnyPool, cfg: ForwardConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match run(&pool, &cfg).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, target = %cfg.target, "audit forwarding interrupted");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
            }
        }
    })
}

#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] AuditError),
    #[error("{0}")]
    Db(#[from] sqlx::Error),
}

/// How long one page may take to write to the SIEM.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection's life: connect, then deliver pages until an error.
async fn run(pool: &AnyPool, cfg: &ForwardConfig) -> Result<(), ForwardError> {
    sqlx::query(
        "INSERT INTO audit_forward_cursor (name, seq) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&cfg.name)
    .execute(pool)
    .await?;
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&cfg.target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    loop {
        let cursor: i64 =
            sqlx::query_scalar("SELECT seq FROM audit_forward_cursor WHERE name = $1")
                .bind(&cfg.name)
                .fetch_one(pool)
                .await?;
        let sql = format!(
            "SELECT {} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT {PAGE}",
            crate::event::COLUMNS
        );
        let page: Vec<StoredEvent> = sqlx::query_as(&sql).bind(cursor).fetch_all(pool).await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            tokio::time::sleep(cfg.poll).await;
            continue;
        };
        // A SIEM that closed the connection (restart) is noticed before the
        // write: TCP would accept one more write into the void.
        let mut probe = [0u8; 64];
        match stream.try_read(&mut probe) {
            Ok(0) => {
                return Err(
                    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "SIEM closed").into(),
                )
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        let mut buf = Vec::with_capacity(page.len() * 512);
        for e in &page {
            match cfg.format {
                ForwardFormat::Syslog => {
                    let msg = syslog_message(e, &cfg.hostname)?;
                    buf.extend_from_slice(format!("{} ", msg.len()).as_bytes());
                    buf.extend_from_slice(msg.as_bytes());
                }
                ForwardFormat::JsonLines => {
                    buf.extend_from_slice(&serde_json::to_vec(e).map_err(AuditError::from)?);
                    buf.push(b'\n');
                }
            }
        }
        // Bounded: a SIEM that stops reading must not stall the forwarder
        // for good; the connection is dropped and made again.
        tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&buf).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "SIEM write timed out"))??;
        // Delivered: move the cursor (only forward; another node may have
        // moved it further).
        sqlx::query("UPDATE audit_forward_cursor SET seq = $1 WHERE name = $2 AND seq < $1")
            .bind(last)
            .bind(&cfg.name)
            .execute(pool)
            .await?;
    }
}

/// Escapes an RFC 5424 SD-PARAM value.
fn sd_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// `<PRI>1 TIMESTAMP HOSTNAME interkom - MSGID [interkom@32473 …] MSG`;
/// facility 13 (log audit), severity notice for successes, warning else.
fn syslog_message(e: &StoredEvent, hostname: &str) -> Result<String, AuditError> {
    let severity = if e.outcome == "success" { 5 } else { 4 };
    let pri = 13 * 8 + severity;
    let mut sd = format!(
        "[interkom@32473 seq=\"{}\" action=\"{}\" outcome=\"{}\"",
        e.seq, e.action, e.outcome
    );
    for (k, v) in [
        ("tenant", &e.tenant),
        ("actor", &e.actor_subject),
        ("client", &e.actor_client),
        ("correlation", &e.correlation_id),
    ] {
        if let Some(v) = v {
            sd.push_str(&format!(" {k}=\"{}\"", sd_escape(v)));
        }
    }
    sd.push_str(&format!(" hash=\"{}\"]", e.hash));
    let host = if hostname.is_empty() { "-" } else { hostname };
    Ok(format!(
        "<{pri}>1 {} {host} interkom - {} {sd} {}",
        e.ts,
        e.action,
        serde_json::to_string(e)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> StoredEvent {
        StoredEvent {
            seq: 7,
            ts: "2026-11-29T12:00:00.000000Z".into(),
            tenant: Some("gorleben".into()),
            tenant_path: Some("/lk/sg-gartow/gorleben/".into()),
            path_kreis: Some("lk".into()),
            path_samtgemeinde: Some("sg-gartow".into()),
            path_gemeinde: Some("gorleben".into()),
            actor_subject: Some("u\"1]".into()),
            actor_tenant: None,
            actor_client: Some("kfz".into()),
            action: "login_failed".into(),
            target: None,
            outcome: "failure".into(),
            reason: None,
            correlation_id: None,
            source: None,
            details: "{}".into(),
            personal_digest: "d".into(),
            pruned_at: None,
            prev_hash: "p".into(),
            hash: "h".into(),
        }
    }

    #[test]
    fn syslog_lines_follow_rfc_5424() {
        let m = syslog_message(&ev(), "idp1").unwrap();
        assert!(m.starts_with("<108>1 2026-11-29T12:00:00.000000Z idp1 interkom - login_failed [interkom@32473 seq=\"7\""));
        assert!(m.contains("actor=\"u\\\"1\\]\""), "{m}");
        assert!(m.contains("] {\"seq\":7"));
    }
}
