//! Ids of the vocabulary: a tenant, an account, a client, a resource. Each
//! is its own type, so one cannot be passed where another is meant; each
//! reads as the string it is (`Deref<Target = str>`), is stored as text and
//! serialised as a plain string.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> $name {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }
    };
}

id!(
    /// A tenant of the tree (its slug).
    TenantId
);
id!(
    /// An account: the subject of its tokens.
    AccountId
);
id!(
    /// A registered client (Fachverfahren).
    ClientId
);
id!(
    /// A resource a policy protects.
    ResourceId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_their_strings_and_stay_apart() {
        let t = TenantId::new("hitzacker");
        assert_eq!(t, "hitzacker");
        assert_eq!(&*t, "hitzacker");
        assert_eq!(format!("{t}"), "hitzacker");
        assert_eq!(format!("{t:?}"), "\"hitzacker\"");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"hitzacker\"");
        let back: TenantId = serde_json::from_str("\"damnatz\"").unwrap();
        assert_eq!(back.as_str(), "damnatz");
        let mut set = std::collections::HashSet::new();
        set.insert(AccountId::new("u-1"));
        assert!(set.contains("u-1"));
    }
}
