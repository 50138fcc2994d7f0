//! Policy lines and the answers of a change as the admin API shows them.

use interkom_policy::Flip;
use serde::Serialize;
use utoipa::ToSchema;

/// A line of the live policy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LineView {
    /// As in `baseline.csv`: `p, role, object, action, reach, effect,
    /// condition` or `g, tenant, tenant`.
    pub(crate) line: String,
    /// Where it came from: `baseline`, `admin`, `cli`, …
    pub(crate) source: String,
}

/// One page of the live policy's lines, in the order of their text.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LinesPage {
    /// The live policy's version.
    pub(crate) version: i64,
    pub(crate) lines: Vec<LineView>,
    /// The `cursor` of the next page; none on the last.
    pub(crate) next_cursor: Option<String>,
}

/// The what-if of a change of lines.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct WhatIf {
    /// The decisions the change would flip.
    #[schema(value_type = Vec<crate::docs::FlipDoc>)]
    pub(crate) flips: Vec<Flip>,
    /// Whether it would need a second administrator (it touches
    /// `sehr_hoch`).
    pub(crate) requires_approval: bool,
}

/// A change of lines, applied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LinesChanged {
    /// Always true.
    pub(crate) applied: bool,
    /// The lines added (those present already are left out).
    pub(crate) added: Vec<String>,
    /// The lines removed (those absent already are left out).
    pub(crate) removed: Vec<String>,
    /// The decisions it flipped.
    #[schema(value_type = Vec<crate::docs::FlipDoc>)]
    pub(crate) flips: Vec<Flip>,
}
