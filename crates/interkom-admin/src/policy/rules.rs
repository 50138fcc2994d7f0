//! The rules of a change to the policy lines: where a line applies, who
//! may change it, what it would flip, and when a second administrator must
//! approve it (anything that touches a `sehr_hoch` resource).

use interkom_policy::{Flip, ProtectionNeed, ResourceSpec, RuleLine};
use serde::{Deserialize, Serialize};

use crate::api::{refuse, AdminChange};
use crate::auth::Caller;
use crate::proposals::store::Place;
use crate::scope::Scope;
use crate::scope::{may_change, resource_place};
use crate::{AdminError, AdminState};

/// Most lines in one change.
pub(crate) const MAX_LINES: usize = 100;

pub(crate) async fn resources(state: &AdminState) -> Result<Vec<ResourceSpec>, AdminError> {
    Ok(interkom_policy::records::resources(&state.0.pool).await?)
}

/// The place of a policy line: `p` lines by their object (a resource's
/// owner; a kind or `*` is everywhere, also when a resource's id happens
/// to equal a kind), `g` lines by their Samtgemeinde.
pub(crate) fn line_place(
    state: &AdminState,
    all: &[ResourceSpec],
    line: &RuleLine,
) -> Result<Place, AdminError> {
    let v = |i: usize| line.values.get(i).map(String::as_str).unwrap_or("");
    if line.ptype == "g" {
        return match state.0.tenants.get(v(0)) {
            Some(t) => Ok(Place::Tenant(t.id.clone())),
            None => Err(AdminError::bad_request(format!(
                "`{}`: unknown tenant `{}`",
                line.to_csv(),
                v(0)
            ))),
        };
    }
    if v(1) == "*" || all.iter().any(|r| r.kind == v(1)) {
        return Ok(Place::Everywhere);
    }
    Ok(match all.iter().find(|r| r.id == v(1)) {
        Some(ResourceSpec { owner: Some(o), .. }) => Place::Tenant(o.clone()),
        _ => Place::Everywhere,
    })
}

/// Whether a line or the flips of a change concern a `sehr_hoch` resource.
pub(crate) fn touches_sehr_hoch(all: &[ResourceSpec], lines: &[&RuleLine], flips: &[Flip]) -> bool {
    let sehr_hoch = |r: &&ResourceSpec| r.protection.overall() == ProtectionNeed::SehrHoch;
    let by_line = lines.iter().any(|l| {
        l.ptype == "p"
            && all
                .iter()
                .filter(sehr_hoch)
                .any(|r| l.values[1] == "*" || l.values[1] == r.id || l.values[1] == r.kind)
    });
    let by_flip = flips
        .iter()
        .any(|f| all.iter().filter(sehr_hoch).any(|r| r.id == f.resource));
    by_line || by_flip
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyChangeBody {
    /// Lines to add, as in `baseline.csv` (`p, role, object, action, reach, effect, condition`).
    #[serde(default)]
    pub(crate) add: Vec<String>,
    /// Lines to remove.
    #[serde(default)]
    pub(crate) remove: Vec<String>,
    /// Why (kept with the change).
    #[serde(default)]
    pub(crate) comment: Option<String>,
}

pub(crate) struct Lines {
    pub(crate) add: Vec<RuleLine>,
    pub(crate) remove: Vec<RuleLine>,
}

pub(crate) fn parse_lines(body: &PolicyChangeBody) -> Result<Lines, AdminError> {
    if body.add.is_empty() && body.remove.is_empty() {
        return Err(AdminError::bad_request("name lines to `add` or `remove`"));
    }
    if body.add.len() + body.remove.len() > MAX_LINES {
        return Err(AdminError::bad_request(format!(
            "at most {MAX_LINES} lines per change"
        )));
    }
    if body
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 500)
    {
        return Err(AdminError::bad_request("`comment`: at most 500 characters"));
    }
    let parse = |s: &String| {
        let line =
            RuleLine::parse(s).map_err(|e| AdminError::bad_request(format!("`{s}`: {e}")))?;
        // What is stored must read back as the same line.
        if RuleLine::parse(&line.to_csv()).as_ref() != Ok(&line) {
            return Err(AdminError::bad_request(format!(
                "`{s}` is not a policy line"
            )));
        }
        Ok(line)
    };
    Ok(Lines {
        add: body.add.iter().map(parse).collect::<Result<_, _>>()?,
        remove: body.remove.iter().map(parse).collect::<Result<_, _>>()?,
    })
}

/// The what-if of a change of lines, and whether it needs four eyes.
pub(crate) async fn preview(
    state: &AdminState,
    all: &[ResourceSpec],
    lines: &Lines,
) -> Result<(Vec<Flip>, bool), AdminError> {
    let change = interkom_policy::Change {
        add: lines.add.clone(),
        remove: lines.remove.clone(),
        ..Default::default()
    };
    let now = state.0.gateway.clock().now();
    let preview = state
        .0
        .gateway
        .policy()
        .what_if(&change, now)
        .await
        .map_err(AdminError::from)?;
    // Compiled before it is accepted: a line the engine would drop is
    // refused with the reason, never stored.
    if !preview.errors.is_empty() {
        let reasons: Vec<String> = preview
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.subject, e.message))
            .collect();
        return Err(AdminError::bad_request(reasons.join("; ")));
    }
    let flips = preview.flips;
    let touched: Vec<&RuleLine> = lines.add.iter().chain(&lines.remove).collect();
    let four_eyes = touches_sehr_hoch(all, &touched, &flips);
    Ok((flips, four_eyes))
}

/// Checks that the caller may change every line; returns the change's
/// place (the common tenant, or everywhere).
pub(crate) async fn authorize_lines(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    all: &[ResourceSpec],
    lines: &Lines,
    c: &AdminChange<'_>,
) -> Result<Place, AdminError> {
    let mut places = Vec::new();
    for line in lines.add.iter().chain(&lines.remove) {
        let place = line_place(state, all, line)?;
        if !may_change(state, scope, &place) {
            let why = match &place {
                Place::Tenant(t) => format!("`{}` belongs to `{t}`, outside the caller's subtree", line.to_csv()),
                Place::Everywhere => format!(
                    "`{}` applies to every tenant: only an administrator of the whole Kreis may change it",
                    line.to_csv()
                ),
            };
            return Err(refuse(state, caller, c, &why).await);
        }
        places.push(place);
    }
    Ok(common_place(state, &places))
}

/// The smallest place holding all of `places`: their lowest common
/// ancestor, or everywhere.
pub(crate) fn common_place(state: &AdminState, places: &[Place]) -> Place {
    let mut common: Option<Vec<String>> = None;
    for p in places {
        let Place::Tenant(t) = p else {
            return Place::Everywhere;
        };
        let Some(path) = state.0.tenants.get(t).map(|t| t.path.clone()) else {
            return Place::Everywhere;
        };
        common = Some(match common {
            None => path,
            Some(c) => c
                .iter()
                .zip(&path)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a.clone())
                .collect(),
        });
    }
    match common.and_then(|c| c.last().cloned()) {
        Some(t) => Place::Tenant(t),
        None => Place::Everywhere,
    }
}

/// The decisions a change flips must all concern resources the caller
/// administers (a line can reach further than its object suggests).
pub(crate) async fn authorize_flips(
    state: &AdminState,
    caller: &Caller,
    scope: &Scope,
    all: &[ResourceSpec],
    flips: &[Flip],
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    for f in flips {
        let place = match all.iter().find(|r| r.id == f.resource) {
            Some(r) => resource_place(r),
            None => Place::Everywhere,
        };
        if !may_change(state, scope, &place) {
            let why = format!(
                "the change would alter access to `{}`, outside the caller's subtree",
                f.resource
            );
            return Err(refuse(state, caller, c, &why).await);
        }
    }
    Ok(())
}

/// Nobody hands out a permission they do not hold: an added allow line
/// needs the caller to be allowed the same action on every resource the
/// line's object covers (judged by the rules alone, strongest login).
pub(crate) async fn authorize_allows(
    state: &AdminState,
    caller: &Caller,
    all: &[ResourceSpec],
    lines: &Lines,
    c: &AdminChange<'_>,
) -> Result<(), AdminError> {
    let snap = state.0.gateway.policy().snapshot();
    let now = state.0.gateway.clock().now();
    let ctx = interkom_policy::engine::AuthContext {
        acr: Some(interkom_policy::Loa::High),
        auth_time: Some(now),
        second_factor: true,
        now,
    };
    for line in lines
        .add
        .iter()
        .filter(|l| l.ptype == "p" && l.values[4] == "allow")
    {
        let (obj, act) = (&line.values[1], &line.values[2]);
        for r in all
            .iter()
            .filter(|r| obj == "*" || r.id == *obj || r.kind == *obj)
        {
            let d = snap.decide(
                interkom_policy::engine::SubjectRef::User(&caller.subject),
                act,
                interkom_policy::engine::ResourceRef::id(&r.id),
                &ctx,
            );
            if !d.allowed() {
                let why = format!(
                    "`{}` would allow `{act}` on `{}`, which the caller may not do",
                    line.to_csv(),
                    r.id
                );
                return Err(refuse(state, caller, c, &why).await);
            }
        }
    }
    Ok(())
}

pub(crate) struct Applied {
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
}

pub(crate) async fn apply_lines(state: &AdminState, lines: &Lines) -> Result<Applied, AdminError> {
    let pool = &state.0.pool;
    let now = state.0.gateway.clock().now();
    let mut out = Applied {
        added: Vec::new(),
        removed: Vec::new(),
    };
    for l in &lines.remove {
        if interkom_policy::store::remove_rule(pool, l)
            .await
            .map_err(AdminError::from)?
        {
            out.removed.push(l.to_csv());
        }
    }
    for l in &lines.add {
        if interkom_policy::store::add_rule(pool, l, "admin", now)
            .await
            .map_err(|e| match e {
                interkom_policy::PolicyError::Invalid(m) => AdminError::bad_request(m),
                e => AdminError::from(e),
            })?
        {
            out.added.push(l.to_csv());
        }
    }
    state
        .0
        .gateway
        .policy()
        .reload()
        .await
        .map_err(AdminError::from)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The four-eyes rule without a node.

    use interkom_policy::{Protection, ProtectionNeed, ResourceSpec};

    use super::*;

    fn resource(id: &str, kind: &str, c: ProtectionNeed) -> ResourceSpec {
        ResourceSpec {
            id: id.into(),
            name: None,
            kind: kind.into(),
            owner: Some("hitzacker".into()),
            client: None,
            protection: Protection {
                c,
                ..Protection::NORMAL
            },
        }
    }

    #[test]
    fn whatever_touches_a_sehr_hoch_resource_needs_a_second_administrator() {
        let all = [
            resource("meldedaten", "meldewesen", ProtectionNeed::SehrHoch),
            resource("haushalt", "finanzen", ProtectionNeed::Hoch),
        ];
        let p = |obj: &str| {
            RuleLine::new(
                "p",
                &["sachbearbeitung", obj, "read", "tenant", "allow", "true"],
            )
        };
        let g = RuleLine::new("g", &["hitzacker", "sg-elbtalaue"]);
        // By id, by kind, by `*`.
        for obj in ["meldedaten", "meldewesen", "*"] {
            assert!(touches_sehr_hoch(&all, &[&p(obj)], &[]), "{obj}");
        }
        assert!(!touches_sehr_hoch(&all, &[&p("haushalt")], &[]));
        // A `g` line names no object; what it flips decides.
        assert!(!touches_sehr_hoch(&all, &[&g], &[]));
        let flip = |resource: &str| Flip {
            subject: "u".into(),
            action: "read".into(),
            resource: resource.into(),
            before: false,
            after: true,
        };
        assert!(touches_sehr_hoch(&all, &[&g], &[flip("meldedaten")]));
        assert!(!touches_sehr_hoch(&all, &[&g], &[flip("haushalt")]));
    }
}
