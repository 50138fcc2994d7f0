//! Second factors: what adds to a login interkom verified itself (the local
//! password). Each implements [`SecondFactor`] and knows nothing of the
//! others or of the identity sources; its check returns the login with the
//! level, methods and time it added (`Checked::Passed`).
//!
//! - `totp`: TOTP (RFC 6238) with recovery codes, and its enrolment page.
//! - `passkey`: passkeys (WebAuthn), their ceremonies and enrolment.
//! - `enrol`: who may enrol a factor.

pub(crate) mod enrol;
pub(crate) mod passkey;
pub(crate) mod totp;

use futures_util::future::BoxFuture;
use interkom_types::Loa;

use crate::{Gateway, GatewayError};

/// A second factor the planner can offer.
pub(crate) trait SecondFactor: Sync {
    /// How the login offers and records it (`totp`, `passkey`).
    fn kind(&self) -> &'static str;
    /// The level it brings this account to (`None`: nothing enrolled).
    fn reaches<'a>(
        &'a self,
        gw: &'a Gateway,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Loa>, GatewayError>>;
}

/// Every second factor, in the order the page offers them.
pub(crate) const ALL: [&dyn SecondFactor; 2] = [&totp::Totp, &passkey::PasskeyFactor];
