//! The audit event and its closed vocabulary.

use serde::{Deserialize, Serialize};

/// What happened. The set is closed so that security staff can filter on it;
/// the string form is what is stored and hashed and must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Login,
    LoginFailed,
    LoginLocked,
    TokenIssued,
    TokenRefreshed,
    RefreshReuseDetected,
    CodeReplayDetected,
    TokenRevoked,
    Logout,
    BackchannelLogout,
    DecisionDenied,
    DecisionPermittedSehrHoch,
    DecisionStepUp,
    DecisionPermitted,
    AdminChange,
    AuditRead,
    AuditExport,
    KeyRotated,
    /// An upstream identity was linked to an existing account.
    AccountLinked,
    /// An account was created at a first upstream login.
    AccountProvisioned,
    SecondFactorEnrolled,
    /// An identity source gave or took a role at a login (by its
    /// mapping); changes by an administrator are `admin_change`.
    RoleChanged,
    /// The audited decisions of one PDP batch, summarised.
    DecisionBatch,
    /// Retention erased the personal fields of events before a cutoff.
    AuditPruned,
    /// A person agreed that a client receives their data.
    ConsentGiven,
    /// A person declined it on the consent page.
    ConsentDeclined,
    /// A person withdrew a consent.
    ConsentWithdrawn,
    /// A directory sync found the person removed or disabled there: the
    /// account is locked and its sessions end.
    AccountDeactivated,
    /// The person is back in the directory: the sync's lock is lifted.
    AccountReactivated,
    /// A citizen's or business's account was deleted after the time
    /// without login (DSGVO); its subject is pseudonymous.
    AccountDeleted,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::Login,
        Action::LoginFailed,
        Action::LoginLocked,
        Action::TokenIssued,
        Action::TokenRefreshed,
        Action::RefreshReuseDetected,
        Action::CodeReplayDetected,
        Action::TokenRevoked,
        Action::Logout,
        Action::BackchannelLogout,
        Action::DecisionDenied,
        Action::DecisionPermittedSehrHoch,
        Action::DecisionStepUp,
        Action::DecisionPermitted,
        Action::AdminChange,
        Action::AuditRead,
        Action::AuditExport,
        Action::KeyRotated,
        Action::AccountLinked,
        Action::AccountProvisioned,
        Action::SecondFactorEnrolled,
        Action::RoleChanged,
        Action::DecisionBatch,
        Action::AuditPruned,
        Action::ConsentGiven,
        Action::ConsentDeclined,
        Action::ConsentWithdrawn,
        Action::AccountDeactivated,
        Action::AccountReactivated,
        Action::AccountDeleted,
    ];

    /// Whether a signed checkpoint must follow soon: changes to who may do
    /// what, signs of an attack, and changes to the trail itself.
    pub fn is_security(self) -> bool {
        matches!(
            self,
            Action::AdminChange
                | Action::RoleChanged
                | Action::CodeReplayDetected
                | Action::RefreshReuseDetected
                | Action::LoginLocked
                | Action::KeyRotated
                | Action::AuditExport
                | Action::AuditPruned
                | Action::SecondFactorEnrolled
                | Action::AccountLinked
                | Action::AccountDeactivated
                | Action::AccountReactivated
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::LoginLocked => "login_locked",
            Action::TokenIssued => "token_issued",
            Action::TokenRefreshed => "token_refreshed",
            Action::RefreshReuseDetected => "refresh_reuse_detected",
            Action::CodeReplayDetected => "code_replay_detected",
            Action::TokenRevoked => "token_revoked",
            Action::Logout => "logout",
            Action::BackchannelLogout => "backchannel_logout",
            Action::DecisionDenied => "decision_denied",
            Action::DecisionPermittedSehrHoch => "decision_permitted_sehr_hoch",
            Action::DecisionStepUp => "decision_step_up",
            Action::DecisionPermitted => "decision_permitted",
            Action::AdminChange => "admin_change",
            Action::AuditRead => "audit_read",
            Action::AuditExport => "audit_export",
            Action::KeyRotated => "key_rotated",
            Action::AccountLinked => "account_linked",
            Action::AccountProvisioned => "account_provisioned",
            Action::SecondFactorEnrolled => "second_factor_enrolled",
            Action::RoleChanged => "role_changed",
            Action::DecisionBatch => "decision_batch",
            Action::AuditPruned => "audit_pruned",
            Action::ConsentGiven => "consent_given",
            Action::ConsentDeclined => "consent_declined",
            Action::ConsentWithdrawn => "consent_withdrawn",
            Action::AccountDeactivated => "account_deactivated",
            Action::AccountReactivated => "account_reactivated",
            Action::AccountDeleted => "account_deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// An event as a caller hands it to [`crate::AuditLog::append`]. Sequence
/// number, timestamp and hashes are assigned by the store.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub tenant: Option<String>,
    pub tenant_path: Option<String>,
    pub actor_subject: Option<String>,
    pub actor_tenant: Option<String>,
    pub actor_client: Option<String>,
    pub action: Action,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub correlation_id: Option<String>,
    pub source: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(action: Action, outcome: Outcome) -> Self {
        AuditEvent {
            tenant: None,
            tenant_path: None,
            actor_subject: None,
            actor_tenant: None,
            actor_client: None,
            action,
            target: None,
            outcome,
            reason: None,
            correlation_id: None,
            source: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }
    pub fn tenant(mut self, id: impl Into<String>, path: impl Into<String>) -> Self {
        self.tenant = Some(id.into());
        self.tenant_path = Some(path.into());
        self
    }
    pub fn subject(mut self, subject: impl Into<String>, home_tenant: Option<String>) -> Self {
        self.actor_subject = Some(subject.into());
        self.actor_tenant = home_tenant;
        self
    }
    pub fn client(mut self, client: impl Into<String>) -> Self {
        self.actor_client = Some(client.into());
        self
    }
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    pub fn correlation(mut self, id: Option<String>) -> Self {
        self.correlation_id = id;
        self
    }
    pub fn source(mut self, source: Option<String>) -> Self {
        self.source = source;
        self
    }
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// An event as stored: with sequence number, timestamp and chain hashes.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct StoredEvent {
    pub seq: i64,
    pub ts: String,
    pub tenant: Option<String>,
    pub tenant_path: Option<String>,
    /// `tenant_path` split by level (derived; see [`split_path`]).
    pub path_kreis: Option<String>,
    pub path_samtgemeinde: Option<String>,
    pub path_gemeinde: Option<String>,
    pub actor_subject: Option<String>,
    pub actor_tenant: Option<String>,
    pub actor_client: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub correlation_id: Option<String>,
    pub source: Option<String>,
    /// The details object, exactly as hashed (JSON text).
    pub details: String,
    /// SHA-256 over the personal fields; what the chain hash covers of them.
    pub personal_digest: String,
    /// When retention erased the personal fields.
    pub pruned_at: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

pub(crate) const COLUMNS: &str = "seq, ts, tenant, tenant_path, path_kreis, path_samtgemeinde, \
     path_gemeinde, actor_subject, actor_tenant, actor_client, action, target, outcome, reason, \
     correlation_id, source, details, personal_digest, pruned_at, prev_hash, hash";

/// Number of columns in [`COLUMNS`].
pub(crate) const COLUMN_COUNT: usize = 21;

/// Splits a stored tenant path (`/kreis/samtgemeinde/gemeinde/`) into its
/// levels.
pub fn split_path(path: Option<&str>) -> [Option<String>; 3] {
    let mut out: [Option<String>; 3] = [None, None, None];
    if let Some(p) = path {
        for (i, part) in p.split('/').filter(|s| !s.is_empty()).take(3).enumerate() {
            out[i] = Some(part.to_owned());
        }
    }
    out
}
