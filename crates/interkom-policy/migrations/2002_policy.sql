-- The live policy: lines, resources and grants, editable by the admin API.
-- Rows imported from the policy directory carry source = 'baseline' and are
-- replaced when its version changes; others survive.
CREATE TABLE policy_rules (
    id         TEXT PRIMARY KEY,
    ptype      TEXT NOT NULL,
    v0         TEXT NOT NULL DEFAULT '',
    v1         TEXT NOT NULL DEFAULT '',
    v2         TEXT NOT NULL DEFAULT '',
    v3         TEXT NOT NULL DEFAULT '',
    v4         TEXT NOT NULL DEFAULT '',
    v5         TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX policy_rules_line ON policy_rules (ptype, v0, v1, v2, v3, v4, v5);

CREATE TABLE resources (
    id              TEXT PRIMARY KEY,
    name            TEXT,
    kind            TEXT NOT NULL,
    owner           TEXT,
    client_id       TEXT,
    confidentiality TEXT NOT NULL,
    integrity       TEXT NOT NULL,
    availability    TEXT NOT NULL,
    source          TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX resources_client ON resources (client_id);

CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    grantee     TEXT NOT NULL,
    resource    TEXT NOT NULL,
    actions     TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    not_before  BIGINT,
    expires_at  BIGINT NOT NULL,
    grantor     TEXT NOT NULL,
    approver    TEXT,
    approved_at BIGINT,
    revoked_at  BIGINT,
    source      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- One row: the live policy's version (bumped by every change; nodes reload
-- when it moves) and the baseline imported last.
CREATE TABLE policy_state (
    id       BIGINT PRIMARY KEY,
    version  BIGINT NOT NULL,
    baseline TEXT NOT NULL
);
INSERT INTO policy_state (id, version, baseline) VALUES (1, 0, '');
