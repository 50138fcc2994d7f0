//! The versioned policy files of a policy directory (`policies/` by default,
//! `INTERKOM_POLICY_DIR` to choose another).
//!
//! | file | holds |
//! | --- | --- |
//! | `model.conf` | the casbin model |
//! | `protection.toml` | protection need → level of assurance, age, second factor, audit |
//! | `roles.toml` | the known roles; which are supervisory |
//! | `baseline.csv` | the baseline policy lines (casbin CSV), with a `# version:` line |
//! | `resources.toml` | the baseline resources (optional) |
//! | `grants.toml` | the baseline grants (optional) |
//! | `subjects.toml` | subjects defined by the policy set itself (optional; e.g. interop scenarios) |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::loa::{Protection, ProtectionMapping};

/// A policy line as in casbin's CSV: a type (`p`, `g`) and its values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct RuleLine {
    pub ptype: String,
    pub values: Vec<String>,
}

impl RuleLine {
    pub fn new(ptype: &str, values: &[&str]) -> RuleLine {
        RuleLine {
            ptype: ptype.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    /// Parses one CSV line (`p, a, b, …`).
    pub fn parse(line: &str) -> Result<RuleLine, String> {
        let mut parts = line.split(',').map(str::trim);
        let ptype = parts.next().unwrap_or_default();
        if !matches!(ptype, "p" | "g") {
            return Err(format!("unknown line type `{ptype}` (p or g)"));
        }
        let values: Vec<String> = parts.map(str::to_owned).collect();
        let want = if ptype == "p" { 6 } else { 2 };
        if values.len() != want {
            return Err(format!(
                "a `{ptype}` line has {want} values, this one has {}",
                values.len()
            ));
        }
        if values.iter().any(|v| v.is_empty()) {
            return Err("empty value".into());
        }
        if values.iter().any(|v| v.chars().any(char::is_control)) {
            return Err("control characters (a line break?) in a value".into());
        }
        Ok(RuleLine {
            ptype: ptype.to_owned(),
            values,
        })
    }

    pub fn to_csv(&self) -> String {
        let mut s = self.ptype.clone();
        for v in &self.values {
            s.push_str(", ");
            s.push_str(v);
        }
        s
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub supervisory: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    version: String,
    #[serde(default)]
    roles: BTreeMap<String, RoleDef>,
}

/// A resource: a Fachverfahren or an object type inside one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub kind: String,
    /// The owning tenant; `None` for resources of no tenant.
    #[serde(default)]
    pub owner: Option<String>,
    /// The client (Fachverfahren) whose logins this resource governs.
    #[serde(default)]
    pub client: Option<String>,
    pub protection: Protection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesFile {
    #[allow(dead_code)]
    version: String,
    #[serde(default)]
    resources: Vec<ResourceSpec>,
}

/// A grant as written in `grants.toml` (times as RFC 3339).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantFileSpec {
    pub id: String,
    pub grantee: String,
    pub resource: String,
    pub actions: Vec<String>,
    pub purpose: String,
    #[serde(default)]
    pub not_before: Option<String>,
    pub expires: String,
    pub grantor: String,
    #[serde(default)]
    pub approver: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsFile {
    #[allow(dead_code)]
    version: String,
    #[serde(default)]
    grants: Vec<GrantFileSpec>,
}

/// A subject defined by the policy set (no account).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectSpec {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectsFile {
    #[allow(dead_code)]
    version: String,
    #[serde(default)]
    subjects: Vec<SubjectSpec>,
}

/// The files of a policy directory, parsed and checked for form.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub dir: PathBuf,
    pub model_text: String,
    pub protection: ProtectionMapping,
    pub roles: BTreeMap<String, RoleDef>,
    /// Identifies the baseline: the `# version:` of `baseline.csv` and the
    /// versions of the other files; a change re-imports the baseline.
    pub version: String,
    pub lines: Vec<RuleLine>,
    pub resources: Vec<ResourceSpec>,
    pub grants: Vec<GrantFileSpec>,
    pub subjects: Vec<SubjectSpec>,
    pub leistungen: Vec<crate::leistungen::LeistungSpec>,
}

/// An error in a policy file, naming the file and (where known) the line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct FileError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// The casbin tokens the engine compiles; `model.conf` must declare them.
pub(crate) const REQUEST_TOKENS: &str = "sub, obj, kind, act, reach, via, attrs";
pub(crate) const POLICY_TOKENS: &str = "sub, obj, act, reach, eft, cond";
/// The matcher the engine compiles; `model.conf` must say exactly this (the
/// casbin reference enforcer reads it from the file).
pub(crate) const MATCHER: &str = "r.sub == p.sub && (p.obj == r.obj || p.obj == r.kind || p.obj == \"*\") && (p.act == r.act || p.act == \"*\") && (p.reach == r.reach || (p.reach == \"*\" && (r.reach != \"none\" || p.eft == \"deny\"))) && (r.reach != \"members\" || g(r.via, r.kind)) && cond(p.cond, r.attrs, p.eft)";

/// Reads the files of one policy directory, gathering every error.
struct Reader<'a> {
    dir: &'a Path,
    errors: Vec<FileError>,
}

impl Reader<'_> {
    fn err(&mut self, name: &str, line: Option<usize>, message: String) {
        self.errors.push(FileError {
            file: self.dir.join(name).display().to_string(),
            line,
            message,
        });
    }

    /// A file's text; `None` if it cannot be read (an error) or, when not
    /// `required`, does not exist (no error).
    fn read(&mut self, name: &str, required: bool) -> Option<String> {
        match std::fs::read_to_string(self.dir.join(name)) {
            Ok(s) => Some(s),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                self.err(name, None, format!("cannot read: {e}"));
                None
            }
        }
    }

    /// A TOML file parsed as `T`.
    fn toml<T: serde::de::DeserializeOwned>(&mut self, name: &str, required: bool) -> Option<T> {
        let text = self.read(name, required)?;
        toml::from_str::<T>(&text)
            .map_err(|e| self.err(name, None, e.message().to_owned()))
            .ok()
    }

    /// `model.conf`, which must be the shape the engine compiles.
    fn model(&mut self) -> String {
        let model_text = self.read("model.conf", true).unwrap_or_default();
        if !model_text.is_empty() {
            if let Err(m) = check_model_shape(&model_text) {
                self.err("model.conf", None, m);
            }
        }
        model_text
    }

    /// `protection.toml`, parsed and validated.
    fn protection(&mut self) -> Option<ProtectionMapping> {
        let p = self.toml::<ProtectionMapping>("protection.toml", true)?;
        match p.validate() {
            Ok(()) => Some(p),
            Err(m) => {
                self.err("protection.toml", None, m);
                None
            }
        }
    }

    /// `baseline.csv`: its `# version:` and its lines.
    fn baseline(&mut self) -> (Option<String>, Vec<RuleLine>) {
        let mut version = None;
        let mut lines = Vec::new();
        let Some(csv) = self.read("baseline.csv", true) else {
            return (version, lines);
        };
        for (i, raw) in csv.lines().enumerate() {
            let l = raw.trim();
            if let Some(v) = l.strip_prefix("# version:") {
                version = Some(v.trim().to_owned());
                continue;
            }
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            match RuleLine::parse(l) {
                Ok(r) => lines.push(r),
                Err(m) => self.err("baseline.csv", Some(i + 1), m),
            }
        }
        if version.is_none() {
            self.err("baseline.csv", None, "missing `# version: …` line".into());
        }
        (version, lines)
    }
}

impl PolicySet {
    /// Reads and parses every file; returns all problems found, not just the
    /// first.
    pub fn load(dir: &Path) -> Result<PolicySet, Vec<FileError>> {
        let mut r = Reader {
            dir,
            errors: Vec::new(),
        };
        let model_text = r.model();
        let protection = r.protection();
        let roles = r.toml::<RolesFile>("roles.toml", true);
        let (version, lines) = r.baseline();
        let resources = r
            .toml::<ResourcesFile>("resources.toml", false)
            .map(|f| f.resources)
            .unwrap_or_default();
        let grants = r
            .toml::<GrantsFile>("grants.toml", false)
            .map(|f| f.grants)
            .unwrap_or_default();
        let subjects = r
            .toml::<SubjectsFile>("subjects.toml", false)
            .map(|f| f.subjects)
            .unwrap_or_default();
        let leistungen = r
            .toml::<crate::leistungen::LeistungenFile>("leistungen.toml", false)
            .map(|f| f.leistungen)
            .unwrap_or_default();
        for l in &leistungen {
            if let Err(m) = l.check() {
                r.err("leistungen.toml", None, m);
            }
        }
        match (protection, roles, version) {
            (Some(protection), Some(roles), Some(version)) if r.errors.is_empty() => {
                // Every file's version is part of the baseline's identity.
                let version = format!(
                    "{version}+{}+{}+{}",
                    protection.version,
                    roles.version,
                    content_digest(&lines, &resources, &grants, &leistungen)
                );
                Ok(PolicySet {
                    dir: dir.to_owned(),
                    model_text,
                    protection,
                    roles: roles.roles,
                    version,
                    lines,
                    resources,
                    grants,
                    subjects,
                    leistungen,
                })
            }
            _ => Err(r.errors),
        }
    }
}

/// A short digest of the baseline lines, resources and grants: editing them
/// re-imports the baseline even if nobody bumped a version line.
fn content_digest(
    lines: &[RuleLine],
    resources: &[ResourceSpec],
    grants: &[GrantFileSpec],
    leistungen: &[crate::leistungen::LeistungSpec],
) -> String {
    // FNV-1a, 64 bits: stable across releases (std's hasher is not); a
    // collision, which would skip a re-import, is negligibly unlikely.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |s: &str| {
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
    };
    for l in lines {
        feed(&l.to_csv());
    }
    for r in resources {
        feed(&r.id);
        feed(&r.kind);
        feed(r.owner.as_deref().unwrap_or(""));
        feed(r.client.as_deref().unwrap_or(""));
        feed(r.protection.c.as_str());
        feed(r.protection.i.as_str());
        feed(r.protection.a.as_str());
    }
    for g in grants {
        for s in [
            &g.id,
            &g.grantee,
            &g.resource,
            &g.purpose,
            &g.expires,
            &g.grantor,
        ] {
            feed(s);
        }
        feed(g.approver.as_deref().unwrap_or(""));
        feed(g.not_before.as_deref().unwrap_or(""));
        for a in &g.actions {
            feed(a);
        }
    }
    for l in leistungen {
        feed(&serde_json::to_string(l).unwrap_or_default());
    }
    format!("{h:016x}")
}

/// The engine compiles exactly the model interkom defines; a model.conf
/// declaring other tokens would be silently misread, so it is refused.
fn check_model_shape(text: &str) -> Result<(), String> {
    let mut section = String::new();
    let mut r = None;
    let mut p = None;
    let mut e = None;
    let mut m = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if l.starts_with('[') {
            section = l.to_owned();
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match (section.as_str(), k) {
            ("[request_definition]", "r") => r = Some(v.to_owned()),
            ("[policy_definition]", "p") => p = Some(v.to_owned()),
            ("[policy_effect]", "e") => e = Some(v.to_owned()),
            ("[matchers]", "m") => m = Some(v.to_owned()),
            _ => {}
        }
    }
    if r.as_deref() != Some(REQUEST_TOKENS) {
        return Err(format!("request_definition must be `r = {REQUEST_TOKENS}`"));
    }
    if p.as_deref() != Some(POLICY_TOKENS) {
        return Err(format!("policy_definition must be `p = {POLICY_TOKENS}`"));
    }
    if m.as_deref() != Some(MATCHER) {
        return Err(format!(
            "the matcher must be `m = {MATCHER}`: the engine implements exactly this one"
        ));
    }
    if e.as_deref() != Some("some(where (p.eft == allow)) && !some(where (p.eft == deny))") {
        return Err("policy_effect must be deny-overrides: `some(where (p.eft == allow)) && !some(where (p.eft == deny))`".into());
    }
    Ok(())
}
