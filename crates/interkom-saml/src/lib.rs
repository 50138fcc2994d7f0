//! SAML 2.0 for interkom, in both directions: as identity provider for
//! Fachverfahren that speak only SAML, and as service provider of the
//! federal identity services (BundID-style) and of Kommunen's ADFS.
//!
//! XML signatures, encryption and canonicalisation are `bergshamra`'s
//! (pure Rust, RustCrypto), never written here; what is here is small and
//! typed: the messages interkom reads and writes, the two bindings and the
//! metadata. One rule against signature wrapping holds everywhere: a
//! signed element is read only if it is the very node the verified
//! signature covered.
//!
//! # Layout
//! Arrows point down.
//! - Messages: [`authn`] (AuthnRequest), [`response`] (Response and
//!   Assertion, written), [`logout`] (LogoutRequest, LogoutResponse),
//!   [`metadata`] (the IdP's, an SP's).
//! - [`binding`]: HTTP-Redirect (DEFLATE, the signed query) and HTTP-POST.
//! - [`dsig`]: enveloped signatures (sign, verify, the node covered);
//!   [`enc`]: encrypted assertions.
//! - [`xml`]: refusing DTDs and oversized input before parsing, reading
//!   the tree, escaping; [`instant`]: SAML's timestamps; [`error`].

pub mod authn;
pub mod binding;
pub mod dsig;
pub mod enc;
pub mod error;
pub mod instant;
pub mod logout;
pub mod metadata;
pub mod response;
pub mod xml;

pub use error::SamlError;

/// A new message or assertion id: `_` and 160 random bits in hex (an
/// NCName, as the schema wants).
pub fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut b);
    let mut s = String::with_capacity(41);
    s.push('_');
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}
