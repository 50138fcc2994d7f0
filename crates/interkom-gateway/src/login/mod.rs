//! The one login flow, as an explicit state machine.
//!
//! A pending request (today from the authorization endpoint) becomes a
//! login request; what the login has established so far is a
//! [`state::Login`] kept with it. After every authentication — by an
//! identity source (`crate::sources`) or a second factor
//! (`crate::factors`) — [`flow::advance`] asks the pure planner
//! ([`plan::next`]) for the next [`plan::Step`] and carries it out: issue,
//! ask for a second factor, go to a source, or end with the client's error.
//!
//! - `state`: the pending request, the login's state, the binding of its
//!   forms to the browser.
//! - `plan`: the planner, a pure function tested as a table.
//! - `pages`: the login form, the second-factor and the consent page.
//! - `consent`: whether the person is asked before the client gets data.
//! - `leistung`: a Leistung's page and the sources that reach its level.
//! - `flow`: carrying a step out; the one place a login ends.

pub(crate) mod consent;
pub(crate) mod flow;
pub(crate) mod leistung;
pub(crate) mod pages;
pub(crate) mod plan;
pub(crate) mod state;
