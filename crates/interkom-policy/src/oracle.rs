//! casbin's own enforcer over the same model and lines: the reference the
//! compiled engine is checked against (tests, `interkom policy explain`).

use casbin::rhai::Dynamic;
use casbin::{
    function_map::OperatorFunction, CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi,
};

use crate::engine::Snapshot;
use crate::PolicyError;

/// `cond(p.cond, r.attrs, p.eft)`: `true`, or `resource.<p> == subject.<a>`
/// over the request's `key=value` lines. A condition that cannot be decided
/// (an attribute missing) holds for a deny and not for an allow.
fn cond(c: Dynamic, attrs: Dynamic, eft: Dynamic) -> Dynamic {
    let c = c.into_string().unwrap_or_default();
    let attrs = attrs.into_string().unwrap_or_default();
    let deny = eft.into_string().unwrap_or_default() == "deny";
    if c == "true" {
        return true.into();
    }
    let Some((l, r)) = c.split_once("==") else {
        return deny.into();
    };
    let get = |k: &str| {
        attrs
            .lines()
            .find_map(|line| line.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    match (get(l.trim()), get(r.trim())) {
        (Some(a), Some(b)) => (a == b).into(),
        _ => deny.into(),
    }
}

/// Two enforcers: the model as written (allow and no deny in a request), and
/// the same with the effect `!some(where (p.eft == deny))`, so a deny in any
/// request overrides an allow in another, as in the engine.
pub struct CasbinOracle {
    full: Enforcer,
    no_deny: Enforcer,
}

fn err(e: casbin::Error) -> PolicyError {
    PolicyError::Invalid(format!("casbin: {e}"))
}

impl CasbinOracle {
    pub async fn new(model_text: &str, snap: &Snapshot) -> Result<CasbinOracle, PolicyError> {
        let p: Vec<Vec<String>> = snap
            .rule_lines()
            .filter(|l| l.ptype == "p")
            .map(|l| l.values.clone())
            .collect();
        let g: Vec<Vec<String>> = snap.task_lines().into_iter().map(|l| l.values).collect();
        let no_deny_text = model_text.replace(
            "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
            "!some(where (p.eft == deny))",
        );
        let mut out = Vec::new();
        for text in [model_text, no_deny_text.as_str()] {
            let model = DefaultModel::from_str(text).await.map_err(err)?;
            let mut e = Enforcer::new(model, MemoryAdapter::default())
                .await
                .map_err(err)?;
            e.add_function("cond", OperatorFunction::Arg3(cond));
            if !p.is_empty() {
                e.add_policies(p.clone()).await.map_err(err)?;
            }
            if !g.is_empty() {
                e.add_grouping_policies(g.clone()).await.map_err(err)?;
            }
            out.push(e);
        }
        let no_deny = out
            .pop()
            .ok_or_else(|| PolicyError::Invalid("casbin".into()))?;
        let full = out
            .pop()
            .ok_or_else(|| PolicyError::Invalid("casbin".into()))?;
        Ok(CasbinOracle { full, no_deny })
    }

    /// Whether casbin finds the lines permit, over the requests the engine
    /// derived ([`Snapshot::casbin_requests`]).
    pub fn lines_allow(&self, requests: &[[String; 7]]) -> Result<bool, PolicyError> {
        let mut allow = false;
        for r in requests {
            let v: Vec<String> = r.to_vec();
            if !self.no_deny.enforce(v.clone()).map_err(err)? {
                return Ok(false);
            }
            allow |= self.full.enforce(v).map_err(err)?;
        }
        Ok(allow)
    }
}
