//! What interkom asks a directory: find one person by the name typed
//! (search bind as the service account, filter values escaped per RFC
//! 4515), their groups (nested ones too), whether their password is right
//! (a bind as them), and every person (provisioning). Referrals are never
//! followed.

use std::collections::BTreeSet;

use interkom_types::Secret;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{ldap_escape, LdapResult, Scope, SearchOptions};

use super::config::{DirectorySourceConfig, GroupLookup, Resolved};
use super::conn::{classify, truncate, LdapFailure, Lease, Pool};
use super::entry::{norm_dn, Entry};

/// Groups followed at most (nesting depth, and in all).
const MAX_DEPTH: usize = 10;
const MAX_GROUPS: usize = 1_000;

/// A person as the directory knows them.
#[derive(Debug, Clone)]
pub struct Person {
    pub dn: String,
    /// The immutable id the account is linked on.
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub mail: Option<String>,
    /// Why they may not log in (`disabled`, `expired`, `locked`).
    pub refusal: Option<&'static str>,
    /// Their groups' DNs, normalised, nested ones included.
    pub groups: Vec<String>,
}

/// Every person of a directory, and how many entries could not be read.
#[derive(Debug)]
pub struct Listing {
    pub people: Vec<Person>,
    /// Entries skipped (no username, no id, …): while any are, nobody is
    /// taken for removed.
    pub unreadable: usize,
}

/// The answer to a person's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Valid,
    Invalid,
    /// The directory refused the account itself (AD's sub-codes: disabled,
    /// expired, locked, password expired or to be changed).
    Refused(&'static str),
}

/// A directory registration with its connections.
pub struct DirectorySource {
    pub cfg: DirectorySourceConfig,
    /// The service account's password, opened.
    pub secret: Option<Secret>,
    names: Resolved,
    search: Pool,
    binds: Pool,
}

impl std::fmt::Debug for DirectorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorySource")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The answer of a search: entries, or why not.
fn checked(res: LdapResult) -> Result<(), LdapFailure> {
    match res.rc {
        // 4: the size limit (a filter matching more than one person).
        0 | 4 => Ok(()),
        10 => Err(LdapFailure::Protocol(
            "the directory answered with a referral (not followed)".into(),
        )),
        32 => Err(LdapFailure::Protocol(format!(
            "the base DN does not exist ({})",
            truncate(&res.matched, 200)
        ))),
        _ => Err(classify(ldap3::LdapError::LdapResult { result: res })),
    }
}

impl DirectorySource {
    pub fn new(
        cfg: DirectorySourceConfig,
        secret: Option<Secret>,
    ) -> Result<DirectorySource, LdapFailure> {
        Ok(DirectorySource {
            names: cfg.resolved(),
            search: Pool::new(&cfg)?,
            binds: Pool::new(&cfg)?,
            cfg,
            secret,
        })
    }

    /// The name for the filter: without the domain when it is one of this
    /// directory's (`m.mueller@hitzacker.example` → `m.mueller`).
    pub fn username_of<'a>(&self, typed: &'a str) -> &'a str {
        match typed.rsplit_once('@') {
            Some((name, domain)) if self.cfg.has_domain(domain) || domain == self.cfg.id => name,
            _ => typed,
        }
    }

    /// A connection bound as the service account.
    async fn searcher(&self) -> Result<Lease<'_>, LdapFailure> {
        let (mut lease, fresh) = self.search.lease().await?;
        if fresh {
            let secret = self.secret.as_ref().ok_or(LdapFailure::NoSecret)?;
            let t = self.search.op_timeout();
            let res = lease
                .ldap()
                .with_timeout(t)
                .simple_bind(&self.cfg.bind_dn, secret.expose())
                .await
                .map_err(classify)?;
            if res.rc != 0 {
                return Err(LdapFailure::ServiceBind(format!(
                    "result {}: {}",
                    res.rc,
                    truncate(&res.text, 200)
                )));
            }
        }
        Ok(lease)
    }

    /// One search as the service account; see [`Self::search_all`].
    async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        limit: i32,
    ) -> Result<Vec<Entry>, LdapFailure> {
        Ok(self.search_all(base, scope, filter, attrs, limit).await?.0)
    }

    /// One search as the service account, and whether the server cut it
    /// at the size limit; a pooled connection that has gone stale is
    /// replaced once.
    async fn search_all(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        limit: i32,
    ) -> Result<(Vec<Entry>, bool), LdapFailure> {
        let mut last = LdapFailure::Timeout;
        for _ in 0..2 {
            let mut lease = self.searcher().await?;
            let t = self.search.op_timeout();
            let r = lease
                .ldap()
                .with_timeout(t)
                .with_search_options(SearchOptions::new().sizelimit(limit))
                .search(base, scope, filter, attrs.to_vec())
                .await;
            match r {
                Ok(sr) => {
                    let cut = sr.1.rc == 4;
                    checked(sr.1)?;
                    lease.keep();
                    let mut out = Vec::with_capacity(sr.0.len());
                    for re in sr.0 {
                        if let Some(e) = Entry::read(re)? {
                            out.push(e);
                        }
                    }
                    return Ok((out, cut));
                }
                Err(e) => {
                    last = classify(e);
                    if last == LdapFailure::Timeout {
                        return Err(last);
                    }
                    self.search.clear();
                }
            }
        }
        Err(last)
    }

    fn person_attrs(&self) -> Vec<&str> {
        let n = &self.names;
        vec![
            n.id.as_str(),
            n.username.as_str(),
            n.name.as_str(),
            "cn",
            n.mail.as_str(),
            "memberOf",
            "userAccountControl",
            "accountExpires",
            "pwdAccountLockedTime",
        ]
    }

    /// The person the name typed names: `None` when nobody (or more than
    /// one) matches.
    pub async fn find(&self, typed: &str) -> Result<Option<Person>, LdapFailure> {
        let filter = self
            .names
            .user_filter
            .replace("{username}", &ldap_escape(self.username_of(typed)))
            .replace("{login}", &ldap_escape(typed));
        let attrs = self.person_attrs();
        let (found, cut) = self
            .search_all(&self.cfg.base_dn, Scope::Subtree, &filter, &attrs, 2)
            .await?;
        // More than one match (or a server that stopped at one with "size
        // limit exceeded"): nobody.
        if found.len() != 1 || cut {
            if found.len() > 1 {
                tracing::warn!(directory = %self.cfg.id, "the user filter matches more than one entry");
            }
            return Ok(None);
        }
        let Some(entry) = found.into_iter().next() else {
            return Ok(None);
        };
        self.person(entry).await.map(Some)
    }

    /// A person from their entry: id, names, state and groups.
    async fn person(&self, e: Entry) -> Result<Person, LdapFailure> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut refusal = e.refusal(now);
        if refusal.is_none() {
            if let Some(f) = &self.cfg.disabled_filter {
                if !self
                    .search(&e.dn, Scope::Base, f, &["1.1"], 1)
                    .await?
                    .is_empty()
                {
                    refusal = Some("disabled");
                }
            }
        }
        let groups = self.groups_of(&e).await?;
        let username = e.text(&self.names.username).ok_or_else(|| {
            LdapFailure::Protocol(format!("the entry has no `{}`", self.names.username))
        })?;
        if username.len() > 128 {
            return Err(LdapFailure::Protocol("the username is too long".into()));
        }
        Ok(Person {
            id: e.immutable_id(&self.names.id)?,
            username,
            name: e
                .text(&self.names.name)
                .or_else(|| e.text("cn"))
                .map(|n| truncate(&n, 200)),
            mail: e.text(&self.names.mail).map(|m| truncate(&m, 254)),
            refusal,
            groups,
            dn: e.dn,
        })
    }

    /// The person's groups, nested ones included (as the lookup allows).
    async fn groups_of(&self, e: &Entry) -> Result<Vec<String>, LdapFailure> {
        let base = self
            .cfg
            .group_base_dn
            .clone()
            .unwrap_or_else(|| self.cfg.base_dn.clone());
        let gf = self.names.group_filter;
        let mut found: BTreeSet<String> = BTreeSet::new();
        match self.names.groups {
            GroupLookup::MemberOf => {
                found.extend(e.texts("memberOf").iter().map(|d| norm_dn(d)));
            }
            GroupLookup::InChain => {
                let f = format!(
                    "(&{gf}(member:1.2.840.113556.1.4.1941:={}))",
                    ldap_escape(&e.dn)
                );
                for g in self
                    .search(&base, Scope::Subtree, &f, &["1.1"], MAX_GROUPS as i32)
                    .await?
                {
                    found.insert(norm_dn(&g.dn));
                }
            }
            GroupLookup::GroupSearch => {
                // Level by level; a group seen before is not followed again
                // (cycles end here).
                let mut frontier = vec![e.dn.clone()];
                for _ in 0..MAX_DEPTH {
                    if frontier.is_empty() || found.len() >= MAX_GROUPS {
                        break;
                    }
                    let any: String = frontier
                        .iter()
                        .map(|d| {
                            let v = ldap_escape(d);
                            format!("(member={v})(uniqueMember={v})")
                        })
                        .collect();
                    let f = format!("(&{gf}(|{any}))");
                    let groups = self
                        .search(&base, Scope::Subtree, &f, &["1.1"], MAX_GROUPS as i32)
                        .await?;
                    frontier = groups
                        .into_iter()
                        .map(|g| g.dn)
                        .filter(|d| found.insert(norm_dn(d)))
                        .collect();
                }
            }
        }
        Ok(found.into_iter().take(MAX_GROUPS).collect())
    }

    /// Checks a person's password by a bind as them. An empty password is
    /// refused without asking (to LDAP it is an unauthenticated bind,
    /// which many servers accept).
    pub async fn check_password(
        &self,
        dn: &str,
        password: &str,
    ) -> Result<PasswordCheck, LdapFailure> {
        if password.is_empty() || dn.is_empty() {
            return Ok(PasswordCheck::Invalid);
        }
        let (mut lease, _) = self.binds.lease().await?;
        let t = self.binds.op_timeout();
        let res = match lease.ldap().with_timeout(t).simple_bind(dn, password).await {
            Ok(r) => r,
            Err(e) => {
                self.binds.clear();
                return Err(classify(e));
            }
        };
        let answer = match res.rc {
            0 => PasswordCheck::Valid,
            49 => ad_subcode(&res.text),
            // unwillingToPerform, inappropriateAuthentication.
            53 | 48 => PasswordCheck::Invalid,
            _ => return Err(classify(ldap3::LdapError::LdapResult { result: res })),
        };
        lease.keep();
        Ok(answer)
    }

    /// Every person of the directory (paged), for provisioning.
    pub async fn people(&self) -> Result<Listing, LdapFailure> {
        let entries = {
            let mut lease = self.searcher().await?;
            let attrs: Vec<String> = self.person_attrs().iter().map(|s| s.to_string()).collect();
            let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
                Box::new(EntriesOnly::new()),
                Box::new(PagedResults::new(500)),
            ];
            let t = self.search.op_timeout();
            let mut stream = lease
                .ldap()
                .with_timeout(t)
                .streaming_search_with(
                    adapters,
                    &self.cfg.base_dn,
                    Scope::Subtree,
                    &self.names.users_filter,
                    attrs,
                )
                .await
                .map_err(classify)?;
            let mut entries = Vec::new();
            while let Some(re) = stream.next().await.map_err(classify)? {
                if let Some(e) = Entry::read(re)? {
                    entries.push(e);
                }
                if entries.len() > 200_000 {
                    return Err(LdapFailure::Protocol("more than 200,000 people".into()));
                }
            }
            // The whole listing or nothing: a listing cut short by a size
            // limit would read as everyone after the cut having left.
            let res = stream.finish().await;
            if res.rc != 0 {
                checked(res)?;
                return Err(LdapFailure::Protocol(
                    "the listing of people was cut short (size limit)".into(),
                ));
            }
            lease.keep();
            entries
        };
        let mut people = Vec::with_capacity(entries.len());
        let mut unreadable = 0;
        for e in entries {
            let dn = e.dn.clone();
            match self.person(e).await {
                Ok(p) => people.push(p),
                Err(f @ LdapFailure::Protocol(_)) => {
                    // One bad entry does not stop the others.
                    tracing::warn!(directory = %self.cfg.id, entry = %dn, failure = %f, "directory entry skipped");
                    unreadable += 1;
                }
                Err(f) => return Err(f),
            }
        }
        Ok(Listing { people, unreadable })
    }

    /// Whether the service account can bind and search the base (the
    /// console's connection test).
    pub async fn ping(&self) -> Result<(), LdapFailure> {
        self.search(
            &self.cfg.base_dn,
            Scope::Base,
            "(objectClass=*)",
            &["1.1"],
            1,
        )
        .await
        .map(|_| ())
    }
}

/// AD says why a bind failed in the diagnostic message (`data 52e`…).
fn ad_subcode(text: &str) -> PasswordCheck {
    let code = text
        .split_once("data ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .unwrap_or_default();
    match code.as_str() {
        "533" => PasswordCheck::Refused("disabled"),
        "701" => PasswordCheck::Refused("expired"),
        "775" => PasswordCheck::Refused("locked"),
        "532" | "773" => PasswordCheck::Refused("password_expired"),
        "530" | "531" => PasswordCheck::Refused("not_permitted"),
        _ => PasswordCheck::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_bind_sub_codes() {
        let t = "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 533, v3839";
        assert_eq!(ad_subcode(t), PasswordCheck::Refused("disabled"));
        assert_eq!(ad_subcode(&t.replace("533", "52e")), PasswordCheck::Invalid);
        assert_eq!(
            ad_subcode(&t.replace("533", "701")),
            PasswordCheck::Refused("expired")
        );
        assert_eq!(
            ad_subcode(&t.replace("533", "775")),
            PasswordCheck::Refused("locked")
        );
        assert_eq!(ad_subcode(""), PasswordCheck::Invalid);
    }
}
