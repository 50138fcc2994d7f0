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
use sqlx::AnyConnection;

use crate::{jws, Gateway, GatewayError};

/// The event a logout token carries.
pub(crate) const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Attempts before a delivery is given up (pauses 5 s, 10 s, 20 s … between).
const MAX_ATTEMPTS: i64 = 6;
/// One attempt's bound: the client's endpoint must answer within it.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a logout token is valid.
const TOKEN_TTL: i64 = 120;

/// Queues the logout of session `sid` of `sub` for every client that got
/// tokens in it and wants to hear, on the caller's transaction.
pub(crate) async fn queue(
    gw: &Gateway,
    conn: &mut AnyConnection,
    sub: &str,
    sid: &str,
) -> Result<(), GatewayError> {
    let clients: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT client_id FROM token_families WHERE sid = $1")
            .bind(sid)
            .fetch_all(&mut *conn)
            .await?;
    let now = gw.clock.now();
    for id in clients {
        let Some(client) = gw.client(&id).await? else {
            continue;
        };
        let Some(uri) = &client.backchannel_logout_uri else {
            continue;
        };
        sqlx::query(
            "INSERT INTO logout_deliveries (id, client_id, uri, sub, sid, attempts, next_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&client.id)
        .bind(uri)
        .bind(sub)
        .bind(sid)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Due {
    id: String,
    client_id: String,
    uri: String,
    sub: String,
    sid: String,
    attempts: i64,
}

/// Sends what is due; returns how many were delivered.
pub(crate) async fn deliver_due(gw: &Gateway) -> Result<usize, GatewayError> {
    let now = gw.clock.now();
    let due: Vec<Due> = sqlx::query_as(
        "SELECT id, client_id, uri, sub, sid, attempts FROM logout_deliveries \
         WHERE delivered_at IS NULL AND attempts < $1 AND next_at <= $2 ORDER BY next_at LIMIT 50",
    )
    .bind(MAX_ATTEMPTS)
    .bind(now)
    .fetch_all(&gw.pool)
    .await?;
    let mut delivered = 0;
    for d in due {
        // Claim the attempt: another node may have taken it meanwhile.
        let attempt = d.attempts + 1;
        let claimed = sqlx::query(
            "UPDATE logout_deliveries SET attempts = $1, next_at = $2 WHERE id = $3 AND attempts = $4",
        )
        .bind(attempt)
        .bind(now + (5 << (attempt - 1).min(10)))
        .bind(&d.id)
        .bind(d.attempts)
        .execute(&gw.pool)
        .await?
        .rows_affected();
        if claimed == 0 {
            continue;
        }
        let result = send(gw, &d, now).await;
        let ok = result.is_ok();
        sqlx::query(
            "UPDATE logout_deliveries SET delivered_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(ok.then_some(now))
        .bind(result.as_ref().err())
        .bind(&d.id)
        .execute(&gw.pool)
        .await?;
        if ok || attempt >= MAX_ATTEMPTS {
            let mut ev = AuditEvent::new(
                Action::BackchannelLogout,
                if ok {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
            )
            .client(&d.client_id)
            .details(json!({ "sid": d.sid, "attempts": attempt }));
            if let Err(e) = &result {
                ev = ev.reason(format!("gave up: {e}"));
            }
            gw.audit.append(ev).await?;
        }
        delivered += usize::from(ok);
    }
    Ok(delivered)
}

/// One attempt: a fresh logout token, POSTed as a form (§2.5); 200 or 204
/// is success (§2.8).
async fn send(gw: &Gateway, d: &Due, now: i64) -> Result<(), String> {
    let client = gw
        .client(&d.client_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the client is no longer registered")?;
    let keys = gw.keys.fresh(now).await.map_err(|e| e.to_string())?;
    let key = keys
        .signing(client.id_token_alg, now)
        .ok_or("no signing key")?;
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
    let token = jws::sign(key, "logout+jwt", &claims).map_err(|e| e.to_string())?;
    let res = gw
        .http
        .post(&d.uri)
        .form(&[("logout_token", token)])
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{}", e.without_url()))?;
    match res.status().as_u16() {
        200 | 204 => Ok(()),
        s => Err(format!("the client answered {s}")),
    }
}
