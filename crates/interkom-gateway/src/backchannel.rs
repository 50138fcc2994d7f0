//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when a
//! session ends, every client that received tokens in it and registered a
//! `backchannel_logout_uri` is sent a signed logout token.
//!
//! The deliveries are written in the transaction that ends the session (an
//! outbox), so a node that dies before sending loses none; any node sends
//! them, signing each attempt afresh (a logout token lives two minutes),
//! retrying with growing pauses, and the delivery or the final failure is
//! audited.

use std::time::Duration;

use interkom_audit::{Action, AuditEvent, Outcome};
use serde_json::json;

use crate::store::Delivery;
use crate::{jws, Gateway, GatewayError};

/// The event a logout token carries.
pub(crate) const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Attempts before a delivery is given up (pauses 5 s, 10 s, 20 s … between).
const MAX_ATTEMPTS: i64 = 6;
/// One attempt's bound: the client's endpoint must answer within it.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a logout token is valid.
const TOKEN_TTL: i64 = 120;

/// How long a claimed attempt is this node's: longer than the attempt.
const LEASE: i64 = 60;

/// The pause before attempt `n + 1`: 5 s, 10 s, 20 s …
fn backoff(n: i64) -> i64 {
    5 << (n - 1).clamp(0, 10)
}

/// Sends what is due, eight at a time (a slow client delays no other for
/// long); returns how many were delivered.
pub(crate) async fn deliver_due(gw: &Gateway) -> Result<usize, GatewayError> {
    let due = gw
        .store
        .due_deliveries(MAX_ATTEMPTS, gw.clock.now())
        .await?;
    let mut delivered = 0;
    for batch in due.chunks(8) {
        for r in futures_util::future::join_all(batch.iter().map(|d| attempt(gw, d))).await {
            delivered += usize::from(r?);
        }
    }
    Ok(delivered)
}

/// One attempt at one delivery, if this node gets to claim it.
async fn attempt(gw: &Gateway, d: &Delivery) -> Result<bool, GatewayError> {
    let n = d.attempts + 1;
    if !gw.store.claim_delivery(d, gw.clock.now() + LEASE).await? {
        return Ok(false);
    }
    let result = send(gw, d).await;
    let now = gw.clock.now();
    // A client that rejects the token (4xx other than 408 and 429) will
    // not take it later either.
    let last = n >= MAX_ATTEMPTS
        || matches!(&result, Err((Some(s), _)) if (400..500).contains(s) && *s != 408 && *s != 429);
    let updated = match &result {
        Ok(()) => gw.store.delivered(&d.id, n, now).await?,
        Err((_, e)) => {
            let attempts = if last { MAX_ATTEMPTS } else { n };
            gw.store
                .delivery_failed(&d.id, n, e, now + backoff(n), attempts)
                .await?
        }
    };
    let ok = result.is_ok();
    if updated && (ok || last) {
        let mut ev = AuditEvent::new(
            Action::BackchannelLogout,
            if ok {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .client(&d.client_id)
        .details(json!({ "sid": d.sid, "attempts": n }));
        if let Some(u) = gw.dir.user(&d.sub).await? {
            ev = gw.about(ev, &u);
        }
        if let Err((_, e)) = &result {
            ev = ev.reason(format!("gave up: {e}"));
        }
        gw.audit.append(ev).await?;
    }
    Ok(ok && updated)
}

/// One attempt: a fresh logout token, POSTed as a form (§2.5); 200 or 204
/// is success (§2.8). The error carries the client's status, if it answered.
async fn send(gw: &Gateway, d: &Delivery) -> Result<(), (Option<u16>, String)> {
    let now = gw.clock.now();
    let fail = |e: String| (None, e);
    let client = gw
        .client(&d.client_id)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("the client is no longer registered".into()))?;
    // The registration decides where, now: a URI removed or changed since
    // the logout is not used.
    let uri = client.backchannel_logout_uri.clone().ok_or_else(|| {
        (
            Some(410),
            "the client no longer asks for back-channel logout".into(),
        )
    })?;
    let keys = gw.keys.fresh(now).await.map_err(|e| fail(e.to_string()))?;
    let key = keys
        .signing(client.id_token_alg, now)
        .ok_or_else(|| fail("no signing key".into()))?;
    let claims = json!({
        "iss": gw.cfg.issuer_str(),
        "sub": d.sub,
        "aud": d.client_id,
        "iat": now,
        "exp": now + TOKEN_TTL,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sid": d.sid,
        "events": { EVENT: {} },
    });
    let token = jws::sign(key, "logout+jwt", &claims).map_err(|e| fail(e.to_string()))?;
    let res = gw
        .http
        .post(&uri)
        .form(&[("logout_token", token)])
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| fail(format!("{}", e.without_url())))?;
    match res.status().as_u16() {
        200 | 204 => Ok(()),
        s => Err((Some(s), format!("the client answered {s}"))),
    }
}
