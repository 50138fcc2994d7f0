//! What an upstream's answer established, or what went wrong there (for
//! the page, the audit trail and the metrics), and how its claims read.

use interkom_types::Loa;
use serde_json::Value;

use crate::i18n::{Lang, LangTexts};
use crate::GatewayError;

/// What went wrong at an upstream, for the page, the audit trail and the
/// metrics.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Not reachable, or no answer in time.
    Unreachable(String),
    /// The upstream said no (an `error` in the answer or at its token
    /// endpoint).
    Rejected(String),
    /// The ID token failed validation (signature, issuer, audience, expiry).
    InvalidToken(String),
    /// The nonce is not the one sent.
    Nonce,
    /// An `acr` the configuration does not map.
    UnknownAcr(String),
    /// The answer names another issuer (RFC 9207 mix-up).
    Mixup,
    /// No account may be used for this upstream identity.
    NoAccount(&'static str),
    /// A step-up at the upstream came back as somebody else.
    WrongAccount,
    /// An answer to a login that is no longer waiting (too late, another
    /// browser, the login request gone).
    Expired,
    /// An answer seen before, or to a login never sent.
    Replayed,
    Internal(GatewayError),
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Internal(e)
    }
}

impl Failure {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "upstream_unreachable",
            Failure::Rejected(_) => "upstream_rejected",
            Failure::InvalidToken(_) => "upstream_invalid_token",
            Failure::Nonce => "upstream_wrong_nonce",
            Failure::UnknownAcr(_) => "upstream_unknown_acr",
            Failure::Mixup => "upstream_issuer_mismatch",
            Failure::NoAccount(_) => "upstream_no_account",
            Failure::WrongAccount => "upstream_wrong_account",
            Failure::Expired => "upstream_login_expired",
            Failure::Replayed => "upstream_response_unknown_or_replayed",
            Failure::Internal(_) => "internal",
        }
    }

    pub(crate) fn detail(&self) -> String {
        match self {
            Failure::Unreachable(d) | Failure::Rejected(d) | Failure::InvalidToken(d) => {
                d.chars().take(300).collect()
            }
            Failure::UnknownAcr(a) => a.chars().take(200).collect(),
            Failure::NoAccount(d) => (*d).to_owned(),
            Failure::Nonce
            | Failure::Mixup
            | Failure::WrongAccount
            | Failure::Expired
            | Failure::Replayed
            | Failure::Internal(_) => String::new(),
        }
    }

    pub(crate) fn message(&self, lang: Lang) -> &'static str {
        let t = lang.texts();
        match self {
            Failure::Unreachable(_) => t.upstream_unreachable,
            Failure::Rejected(_) => t.upstream_rejected,
            Failure::InvalidToken(_) | Failure::Nonce | Failure::Mixup => t.upstream_invalid,
            Failure::UnknownAcr(_) => t.upstream_unknown_acr,
            Failure::NoAccount(_) | Failure::WrongAccount => t.upstream_no_account,
            Failure::Expired | Failure::Replayed => t.upstream_expired,
            Failure::Internal(_) => t.unavailable,
        }
    }
}

/// What a valid answer of the upstream established.
pub(crate) struct Asserted {
    /// The upstream's ID token (its `id_token_hint` at logout).
    pub(crate) id_token: String,
    pub(crate) subject: String,
    pub(crate) claims: Value,
    pub(crate) loa: Loa,
    pub(crate) amr: Vec<String>,
    pub(crate) auth_time: i64,
}

pub(crate) fn claim_str(claims: &Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn claim_list(claims: &Value, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}
