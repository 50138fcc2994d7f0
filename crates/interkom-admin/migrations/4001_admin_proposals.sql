-- Changes that need a second administrator (four-eyes): anything touching a
-- `sehr_hoch` resource (its protection need, its policy lines). A proposal
-- takes effect only when another administrator approves it. Portable SQL.
CREATE TABLE admin_proposals (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,   -- policy_change | resource
    payload     TEXT NOT NULL,   -- JSON: the change as requested
    tenant      TEXT,            -- whose subtree it belongs to (NULL: every tenant)
    proposer    TEXT NOT NULL,
    what_if     TEXT NOT NULL,   -- JSON: the decisions it flips, at proposal time
    status      TEXT NOT NULL,   -- pending | applied | rejected
    decided_by  TEXT,
    created_at  BIGINT NOT NULL,
    decided_at  BIGINT
);
CREATE INDEX admin_proposals_status ON admin_proposals (status, created_at);
