//! The audit event of a decision, the same wherever it was asked (at login,
//! over AuthZEN): which action, outcome, reason, target and tenant.

use interkom_audit::{Action, AuditEvent, Outcome};
use serde_json::{Map, Value};

use crate::engine::{Decision, Effect, ResourceRef, Snapshot};
use crate::loa::ProtectionNeed;

impl Snapshot {
    /// The audit event for `d` about `resource`, or `None` if the decision
    /// need not be audited. `details` (an object) is extended with the
    /// reasons and the policy version; the caller adds who asked and how.
    pub fn decision_event(
        &self,
        d: &Decision,
        resource: &ResourceRef<'_>,
        details: Value,
    ) -> Option<AuditEvent> {
        if !d.audit {
            return None;
        }
        let (action, outcome) = match d.effect {
            Effect::Deny => (Action::DecisionDenied, Outcome::Denied),
            Effect::StepUp { .. } => (Action::DecisionStepUp, Outcome::Denied),
            Effect::Allow if d.need == Some(ProtectionNeed::SehrHoch) => {
                (Action::DecisionPermittedSehrHoch, Outcome::Success)
            }
            Effect::Allow => (Action::DecisionPermitted, Outcome::Success),
        };
        let reason = d
            .main_reason()
            .map(|r| self.describe(r))
            .and_then(|c| c.get("code").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let mut details = match details {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        details.insert(
            "reasons".into(),
            d.reasons.iter().map(|r| self.describe(r)).collect(),
        );
        details.insert("policy_version".into(), self.version.into());
        let mut ev = AuditEvent::new(action, outcome)
            .target(resource.id)
            .reason(reason)
            .details(Value::Object(details));
        if let Some(owner) = self.owner_of(resource) {
            let path = self.tenant_path(&owner).unwrap_or_default();
            ev = ev.tenant(owner, path);
        }
        Some(ev)
    }
}
