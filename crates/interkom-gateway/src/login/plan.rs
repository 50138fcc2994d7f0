//! The step-up planner: after every authentication within a login
//! (password, second factor, upstream) the policy is asked again what the
//! client needs, and the login goes on with a method that reaches it — a
//! local second factor, an upstream trusted for the level (asked with
//! `acr_values`), the same kind of login again when only its age fell
//! short — or ends with `unmet_authentication_requirements` when no
//! method can. A pure function of what the policy demands, what the login
//! achieved and what this account can still use: tested as a table.

use interkom_types::{has_second_factor, Loa};

use super::state::{upstream_key, Login};
pub(crate) use crate::access::{Need, Verdict};

/// What the login must reach: the policy's verdict, raised by the client's
/// own `acr_values`; `None` when the policy denies.
pub(crate) fn target(verdict: Verdict, have: Loa, client_min: Option<Loa>) -> Option<Need> {
    let mut need = match verdict {
        Verdict::Deny => return None,
        Verdict::Allow => Need {
            loa: have,
            second_factor: false,
            fresh: false,
        },
        Verdict::StepUp(n) => n,
    };
    if let Some(r) = client_min {
        need.loa = need.loa.max(r);
    }
    if need.second_factor {
        need.loa = need.loa.max(Loa::Substantial);
    }
    Some(need)
}

/// Whether the login reaches the level (its age aside).
pub(crate) fn level_ok(need: &Need, login: &Login) -> bool {
    need.loa <= login.loa() && (!need.second_factor || has_second_factor(&login.amr))
}

/// What this account can still use; gathered only when the target is not
/// met.
#[derive(Debug, Clone, Default)]
pub(crate) struct Available {
    /// Local second factors enrolled, with the level each reaches.
    pub(crate) factors: Vec<(&'static str, Loa)>,
    /// The upstream the login came from is still configured.
    pub(crate) origin_exists: bool,
    /// Upstreams linked to the account with the highest level each can
    /// assert, the one the login came from first.
    pub(crate) linked: Vec<(String, Option<Loa>)>,
}

/// What comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Issue,
    Deny,
    /// A fresh password login (only the authentication's age fell short).
    Password,
    /// A local second factor: the methods that reach the level.
    SecondFactor(Vec<&'static str>),
    /// An upstream, asked for a level.
    Upstream {
        id: String,
        /// The level asked for (each upstream is asked once per level).
        asked: Loa,
        fresh: bool,
    },
    Unmet,
}

/// The next step for a login that has not met `need` (or is too old).
pub(crate) fn next(need: Option<Need>, login: &Login, available: &Available) -> Step {
    let Some(need) = need else {
        return Step::Deny;
    };
    let have = login.loa();
    let level_ok = level_ok(&need, login);
    if level_ok && !need.fresh {
        return Step::Issue;
    }
    // Too old: the same kind of login again, fresh.
    if need.fresh {
        if let Some(id) = &login.upstream {
            if !login.tried(&upstream_key(id, Some(have))) && available.origin_exists {
                return Step::Upstream {
                    id: id.clone(),
                    asked: have,
                    fresh: true,
                };
            }
        } else if !login.tried("password") {
            return Step::Password;
        }
        if level_ok {
            return Step::Unmet;
        }
    }
    // A local second factor, only for a login with the local password:
    // staff who come through their Kommune's IdP step up there, so a
    // low-trust IdP cannot climb by a factor enrolled here. A factor adds
    // nothing to a login that has one already, unless it reaches higher.
    if login.upstream.is_none() {
        let with_factor = has_second_factor(&login.amr);
        let offer: Vec<&'static str> = available
            .factors
            .iter()
            .filter(|(kind, reaches)| {
                *reaches >= need.loa && !login.tried(kind) && !(with_factor && *reaches <= have)
            })
            .map(|(kind, _)| *kind)
            .collect();
        if !offer.is_empty() {
            return Step::SecondFactor(offer);
        }
    }
    // An upstream of this account trusted for the level.
    for (id, max) in &available.linked {
        if login.tried(&upstream_key(id, Some(need.loa))) || max.is_none_or(|m| m < need.loa) {
            continue;
        }
        return Step::Upstream {
            id: id.clone(),
            asked: need.loa,
            fresh: need.fresh,
        };
    }
    Step::Unmet
}

#[cfg(test)]
mod tests {
    use super::*;
    use Loa::{High, Low, Substantial};

    fn login(acr: Loa, amr: &[&str], upstream: Option<&str>, tried: &[&str]) -> Login {
        Login {
            user_id: "u".into(),
            acr: acr.acr().into(),
            amr: amr.iter().map(|s| s.to_string()).collect(),
            auth_time: 0,
            sid: None,
            upstream: upstream.map(str::to_owned),
            tried: tried.iter().map(|s| s.to_string()).collect(),
            otp_failures: 0,
            offer: vec![],
            passkey_state: None,
            upstream_token: None,
            consented: false,
            upstream_subject: None,
        }
    }

    fn need(loa: Loa, second_factor: bool, fresh: bool) -> Option<Need> {
        Some(Need {
            loa,
            second_factor,
            fresh,
        })
    }

    fn up(id: &str, asked: Loa, fresh: bool) -> Step {
        Step::Upstream {
            id: id.into(),
            asked,
            fresh,
        }
    }

    #[test]
    fn target_takes_the_policy_and_the_clients_acr_values() {
        let step_up = |loa, second_factor| {
            Verdict::StepUp(Need {
                loa,
                second_factor,
                fresh: false,
            })
        };
        assert_eq!(target(Verdict::Deny, High, None), None);
        assert_eq!(target(Verdict::Allow, Low, None), need(Low, false, false));
        assert_eq!(
            target(Verdict::Allow, Low, Some(Substantial)),
            need(Substantial, false, false)
        );
        // A second factor means at least `substantial`.
        assert_eq!(
            target(step_up(Low, true), Low, None),
            need(Substantial, true, false)
        );
        assert_eq!(
            target(step_up(High, false), Low, Some(Substantial)),
            need(High, false, false)
        );
    }

    #[test]
    fn the_next_step_as_a_table() {
        let totp = ("totp", Substantial);
        let synced = ("passkey", Substantial);
        let bound = ("passkey", High);
        let none = Available::default();
        let factors = |f: &[(&'static str, Loa)]| Available {
            factors: f.to_vec(),
            ..Available::default()
        };
        let linked = |l: &[(&str, Option<Loa>)], origin_exists| Available {
            factors: vec![totp],
            origin_exists,
            linked: l.iter().map(|(i, m)| (i.to_string(), *m)).collect(),
        };
        let pwd = login(Low, &["pwd"], None, &["password"]);
        let pwd_otp = login(
            Substantial,
            &["pwd", "otp", "mfa"],
            None,
            &["password", "totp"],
        );
        let fed = login(Low, &["fed"], Some("idp-a"), &["upstream:idp-a:any"]);
        let fed_subst = login(
            Substantial,
            &["pwd", "mfa"],
            Some("idp-a"),
            &["upstream:idp-a:any"],
        );
        let sso = login(Low, &["pwd"], None, &[]);
        let asked_high = login(
            Substantial,
            &["mfa"],
            Some("idp-b"),
            &["upstream:idp-b:urn:interkom:loa:high"],
        );
        #[rustfmt::skip]
        let table: Vec<(&str, Option<Need>, &Login, Available, Step)> = vec![
            ("denied", None, &pwd, none.clone(), Step::Deny),
            ("enough", need(Low, false, false), &pwd, none.clone(), Step::Issue),
            ("a factor reaches it", need(Substantial, false, false), &pwd, factors(&[totp, synced]),
                Step::SecondFactor(vec!["totp", "passkey"])),
            ("only the device-bound passkey reaches high", need(High, false, false), &pwd,
                factors(&[totp, bound]), Step::SecondFactor(vec!["passkey"])),
            ("a factor used once is not offered again", need(High, false, false), &pwd_otp,
                factors(&[totp, synced]), Step::Unmet),
            ("a second factor demanded, none enrolled", need(Substantial, true, false), &pwd, none.clone(),
                Step::Unmet),
            ("too old, local: the password again", need(Low, false, true), &sso, none.clone(), Step::Password),
            ("too old after a fresh password: unmet", need(Low, false, true), &pwd, none.clone(), Step::Unmet),
            ("too old, federated: the upstream again, fresh", need(Low, false, true), &fed,
                linked(&[], true), up("idp-a", Low, true)),
            ("too old, upstream gone", need(Low, false, true), &fed, linked(&[], false), Step::Unmet),
            ("federated logins take no local factor", need(Substantial, false, false), &fed,
                linked(&[("idp-a", Some(Substantial))], true), up("idp-a", Substantial, false)),
            ("an upstream trusted too little is skipped", need(High, false, false), &fed_subst,
                linked(&[("idp-a", Some(Substantial)), ("idp-b", Some(High))], true),
                up("idp-b", High, false)),
            ("each upstream asked once per level", need(High, false, false),
                &asked_high,
                linked(&[("idp-b", Some(High))], true), Step::Unmet),
            ("a local login may step up at a linked upstream", need(High, false, false), &pwd,
                linked(&[("idp-a", Some(High))], true), up("idp-a", High, false)),
        ];
        for (name, n, l, a, want) in table {
            assert_eq!(next(n, l, &a), want, "{name}");
        }
    }
}
