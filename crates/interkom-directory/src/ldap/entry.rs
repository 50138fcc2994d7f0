//! What a directory says about a person, read defensively: an entry that
//! is malformed, oversized or of the wrong types is an error, never a
//! panic; DNs are compared normalised; AD's account state is checked here,
//! since a server that is not AD (slapd) does not enforce it.

use std::collections::HashMap;

use ldap3::ResultEntry;

use super::conn::LdapFailure;

/// Limits on what one entry may bring (a hostile or broken server).
const MAX_VALUE: usize = 16 * 1024;
const MAX_VALUES: usize = 5_000;

/// One entry, with its attribute names lower-cased.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub dn: String,
    pub attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    /// Reads a search result entry; `Ok(None)` for a referral or an
    /// intermediate message (never followed).
    pub(crate) fn read(re: ResultEntry) -> Result<Option<Entry>, LdapFailure> {
        if re.is_ref() || re.is_intermediate() {
            return Ok(None);
        }
        let bad = |what: &str| LdapFailure::Protocol(format!("malformed entry ({what})"));
        let mut parts =
            re.0.match_id(4)
                .and_then(|t| t.expect_constructed())
                .ok_or_else(|| bad("not an entry"))?
                .into_iter();
        let dn = parts
            .next()
            .and_then(|t| t.expect_primitive())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("dn"))?;
        if dn.len() > 2048 {
            return Err(bad("dn too long"));
        }
        let mut attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let mut count = 0usize;
        let list = parts
            .next()
            .and_then(|t| t.expect_constructed())
            .ok_or_else(|| bad("attributes"))?;
        for pa in list {
            let mut pa = pa
                .expect_constructed()
                .ok_or_else(|| bad("attribute"))?
                .into_iter();
            let name = pa
                .next()
                .and_then(|t| t.expect_primitive())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| bad("attribute name"))?;
            let values = pa
                .next()
                .and_then(|t| t.expect_constructed())
                .ok_or_else(|| bad("values"))?;
            let slot = attrs.entry(name.to_ascii_lowercase()).or_default();
            for v in values {
                let v = v.expect_primitive().ok_or_else(|| bad("value"))?;
                if v.len() > MAX_VALUE {
                    return Err(bad(&format!(
                        "a value of `{name}` exceeds {MAX_VALUE} bytes"
                    )));
                }
                count += 1;
                if count > MAX_VALUES {
                    return Err(bad("too many values"));
                }
                slot.push(v);
            }
        }
        Ok(Some(Entry { dn, attrs }))
    }

    fn values(&self, name: &str) -> &[Vec<u8>] {
        self.attrs
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The first value as text.
    pub fn text(&self, name: &str) -> Option<String> {
        self.values(name)
            .first()
            .and_then(|v| String::from_utf8(v.clone()).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Every value as text (others are left out).
    pub fn texts(&self, name: &str) -> Vec<String> {
        self.values(name)
            .iter()
            .filter_map(|v| String::from_utf8(v.clone()).ok())
            .collect()
    }

    /// The immutable id: a GUID attribute (16 bytes, AD's `objectGUID`)
    /// as its usual text form, anything else as text.
    pub fn immutable_id(&self, name: &str) -> Result<String, LdapFailure> {
        let v = self.values(name).first().ok_or_else(|| {
            LdapFailure::Protocol(format!("the entry has no `{name}` (its immutable id)"))
        })?;
        if name.eq_ignore_ascii_case("objectGUID") {
            let b: &[u8; 16] = v
                .as_slice()
                .try_into()
                .map_err(|_| LdapFailure::Protocol("objectGUID is not 16 bytes".into()))?;
            return Ok(guid_text(b));
        }
        let s = std::str::from_utf8(v)
            .map_err(|_| LdapFailure::Protocol(format!("`{name}` is not text")))?
            .trim()
            .to_ascii_lowercase();
        if s.is_empty() || s.len() > 256 {
            return Err(LdapFailure::Protocol(format!(
                "`{name}` is empty or too long"
            )));
        }
        Ok(s)
    }

    /// Why the account may not log in, as far as the entry says: AD's
    /// `userAccountControl` (disabled, locked out), an `accountExpires` in
    /// the past, or a password-policy lock (`pwdAccountLockedTime`).
    pub fn refusal(&self, now_unix: i64) -> Option<&'static str> {
        if let Some(uac) = self.text("userAccountControl") {
            match uac.parse::<i64>() {
                Ok(v) if v & 0x2 != 0 => return Some("disabled"),
                Ok(v) if v & 0x10 != 0 => return Some("locked"),
                Ok(_) => {}
                Err(_) => return Some("disabled"),
            }
        }
        if let Some(exp) = self.text("accountExpires") {
            match exp.parse::<i64>() {
                // 0 and the largest value mean "never".
                Ok(0) | Ok(i64::MAX) => {}
                Ok(ft) if filetime_to_unix(ft) <= now_unix => return Some("expired"),
                Ok(_) => {}
                Err(_) => return Some("expired"),
            }
        }
        if self.text("pwdAccountLockedTime").is_some() {
            return Some("locked");
        }
        None
    }
}

/// Windows FILETIME (100 ns since 1601) as Unix seconds.
fn filetime_to_unix(ft: i64) -> i64 {
    ft / 10_000_000 - 11_644_473_600
}

/// A GUID in AD's byte order as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn guid_text(b: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]
    )
}

/// A DN as compared: attribute names and values lower-cased, spaces
/// around `=` and `,` removed (slapd answers `cn=…`, AD `CN=…`).
pub fn norm_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut escaped = false;
    for c in dn.trim().chars() {
        if escaped {
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                out.push(c);
                escaped = true;
            }
            ',' | '=' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
            }
            ' ' if out.ends_with(',') || out.ends_with('=') => {}
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> Entry {
        let mut e = Entry::default();
        for (k, v) in pairs {
            e.attrs
                .entry(k.to_ascii_lowercase())
                .or_default()
                .push(v.as_bytes().to_vec());
        }
        e
    }

    #[test]
    fn account_state_as_ad_keeps_it() {
        let now = 1_800_000_000;
        assert_eq!(entry(&[("userAccountControl", "512")]).refusal(now), None);
        assert_eq!(
            entry(&[("userAccountControl", "514")]).refusal(now),
            Some("disabled")
        );
        assert_eq!(
            entry(&[("userAccountControl", "x")]).refusal(now),
            Some("disabled")
        );
        assert_eq!(entry(&[("accountExpires", "0")]).refusal(now), None);
        assert_eq!(
            entry(&[("accountExpires", "9223372036854775807")]).refusal(now),
            None
        );
        // 2009 and 2200.
        assert_eq!(
            entry(&[("accountExpires", "129000000000000000")]).refusal(now),
            Some("expired")
        );
        assert_eq!(
            entry(&[("accountExpires", "170000000000000000")]).refusal(now),
            None
        );
        assert_eq!(
            entry(&[("pwdAccountLockedTime", "000001010000Z")]).refusal(now),
            Some("locked")
        );
    }

    #[test]
    fn dns_compare_as_the_directory_means_them() {
        assert_eq!(
            norm_dn("CN=Meldeamt, OU=Groups,DC=hitzacker, DC=example"),
            norm_dn("cn=meldeamt,ou=groups,dc=hitzacker,dc=example")
        );
        assert_ne!(norm_dn("cn=a\\,b,dc=x"), norm_dn("cn=a,b,dc=x"));
    }

    #[test]
    fn a_guid_reads_as_ad_prints_it() {
        let b = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(guid_text(&b), "00112233-4455-6677-8899-aabbccddeeff");
    }
}
