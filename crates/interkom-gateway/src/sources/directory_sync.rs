//! Provisioning from a directory: every person is imported (an account,
//! linked on the entry's immutable id, with the roles their groups map
//! to), so grants can be made before someone's first login; a person
//! removed or disabled there loses the mapped roles, their account is
//! locked and their sessions end (back-channel logout). One audit event
//! per change. Run by `interkom directory sync --source ID`, and on the
//! node that claims it every `sync_interval_seconds`.

use std::collections::HashMap;

use interkom_audit::{Action, AuditEvent, Outcome};
use interkom_directory::ldap::{DirectorySource, LdapFailure, Person};
use serde::Serialize;
use serde_json::json;

use super::directory::{account_for, bring_in_step, sync_roles};
use crate::{Gateway, GatewayError};

/// What a sync did.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct SyncReport {
    /// People the directory listed.
    pub people: usize,
    /// Accounts created or linked.
    pub linked: usize,
    /// Accounts locked (removed or disabled in the directory).
    pub deactivated: usize,
    /// Accounts unlocked (back in the directory).
    pub reactivated: usize,
    /// Entries that could not be read (no username, no id, …); while there
    /// are any, nobody is taken for removed.
    pub unreadable: usize,
}

/// Why a sync did not run.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no directory `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Directory(#[from] LdapFailure),
    #[error("the directory listed nobody while {0} accounts are linked: nothing was changed (check base_dn and users_filter)")]
    Empty(usize),
    #[error("{0} of {1} linked accounts would be locked: nothing was changed (check base_dn and users_filter, or sync with --force)")]
    TooMany(usize, usize),
    #[error(transparent)]
    Internal(#[from] GatewayError),
}

impl From<interkom_directory::DirectoryError> for SyncError {
    fn from(e: interkom_directory::DirectoryError) -> Self {
        SyncError::Internal(e.into())
    }
}

impl Gateway {
    /// Imports the people of directory `id` and brings their accounts in
    /// step (see the module). More than a tenth of the linked accounts
    /// (at least 3) to lock at once is refused unless `force`: a listing
    /// narrowed by a wrong filter is not the departure of the staff.
    pub async fn sync_directory(&self, id: &str, force: bool) -> Result<SyncReport, SyncError> {
        let source = self
            .dir
            .directory_source(id)
            .await?
            .ok_or_else(|| SyncError::Unknown(id.to_owned()))?;
        let listing = source.people().await?;
        let people = listing.people;
        let links = self.dir.directory_links(id).await?;
        // A directory that suddenly lists nobody is a configuration fault,
        // not the departure of every member of staff.
        if people.is_empty() && !links.is_empty() {
            return Err(SyncError::Empty(links.len()));
        }
        let mut report = SyncReport {
            people: people.len(),
            unreadable: listing.unreadable,
            ..SyncReport::default()
        };
        let by_id: HashMap<&str, &Person> = people.iter().map(|p| (p.id.as_str(), p)).collect();
        let linked: HashMap<&str, bool> = links.iter().map(|(e, _, d)| (e.as_str(), *d)).collect();
        for person in &people {
            if person.refusal.is_some() {
                continue;
            }
            let is_new = !linked.contains_key(person.id.as_str());
            let Some(user) = account_for(self, None, &source, person).await? else {
                continue;
            };
            if is_new {
                report.linked += 1;
            }
            if linked.get(person.id.as_str()) == Some(&true)
                && self.reactivate(&source, &person.id, &user.id).await?
            {
                report.reactivated += 1;
            }
            bring_in_step(self, None, &source, &user, person).await?;
        }
        let leaving: Vec<(&String, &String, &str)> = links
            .iter()
            .filter(|(_, _, deactivated)| !deactivated)
            .filter_map(|(entry, user_id, _)| {
                let why = match by_id.get(entry.as_str()) {
                    // Not listed: removed, unless some entries were unreadable.
                    None if listing.unreadable == 0 => "removed",
                    None => return None,
                    Some(p) => p.refusal?,
                };
                Some((entry, user_id, why))
            })
            .collect();
        if !force && leaving.len() > (links.len() / 10).max(3) {
            return Err(SyncError::TooMany(leaving.len(), links.len()));
        }
        for (entry, user_id, why) in leaving {
            if self.deactivate(&source, entry, user_id, why).await? {
                report.deactivated += 1;
            }
        }
        Ok(report)
    }

    /// Locks an account whose entry is gone or disabled: the mapped roles
    /// go, its sessions and tokens end (the clients are told).
    async fn deactivate(
        &self,
        d: &DirectorySource,
        entry: &str,
        user_id: &str,
        why: &str,
    ) -> Result<bool, GatewayError> {
        let Some(user) = self.dir.user(user_id).await? else {
            return Ok(false);
        };
        // A link from before the directory moved acts on nothing outside
        // its subtree now.
        if !super::directory::in_subtree(self, &user.tenant, &d.cfg.tenant)
            || !self
                .dir
                .set_directory_link_deactivated(&d.cfg.id, entry, true)
                .await?
        {
            return Ok(false);
        }
        sync_roles(self, None, d, &user, &[]).await?;
        self.set_disabled(user_id, true).await?;
        let ev = AuditEvent::new(Action::AccountDeactivated, Outcome::Success)
            .reason(why)
            .details(json!({ "directory": d.cfg.id, "username": user.username }));
        self.audit.append(self.about(ev, &user)).await?;
        Ok(true)
    }

    /// Lifts the lock a sync set, for a person back in the directory.
    pub(crate) async fn reactivate(
        &self,
        d: &DirectorySource,
        entry: &str,
        user_id: &str,
    ) -> Result<bool, GatewayError> {
        if !self
            .dir
            .set_directory_link_deactivated(&d.cfg.id, entry, false)
            .await?
        {
            return Ok(false);
        }
        self.set_disabled(user_id, false).await?;
        if let Some(user) = self.dir.user(user_id).await? {
            let ev = AuditEvent::new(Action::AccountReactivated, Outcome::Success)
                .details(json!({ "directory": d.cfg.id, "username": user.username }));
            self.audit.append(self.about(ev, &user)).await?;
        }
        Ok(true)
    }

    /// Runs each directory's periodic sync on the node that claims it
    /// (checked every 30 s).
    pub fn spawn_directory_sync(&self) -> tokio::task::JoinHandle<()> {
        let gw = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tick.tick().await;
                let Ok(sources) = gw.dir.directory_sources().await else {
                    continue;
                };
                for s in sources.iter() {
                    let Some(every) = s.cfg.sync_interval_seconds else {
                        continue;
                    };
                    match gw.dir.claim_directory_sync(&s.cfg.id, every as i64).await {
                        Ok(true) => match gw.sync_directory(&s.cfg.id, false).await {
                            Ok(r) => {
                                tracing::info!(directory = %s.cfg.id, people = r.people, linked = r.linked, deactivated = r.deactivated, reactivated = r.reactivated, "directory synced")
                            }
                            Err(e) => {
                                metrics::counter!("interkom_directory_failures_total", "directory" => s.cfg.id.clone(), "kind" => "sync")
                                    .increment(1);
                                tracing::warn!(directory = %s.cfg.id, error = %e, "directory sync failed");
                            }
                        },
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "claiming a directory sync failed"),
                    }
                }
            }
        })
    }
}
