-- The audit trail: insert-only, hash-chained. Portable SQL (SQLite and PostgreSQL).
-- `seq` is assigned by the writer under the lock on audit_head, so it is gap-free;
-- `ts` never decreases along `seq` (the writer takes the later of its clock and
-- the head's time), so a time range is a range of sequence numbers.
-- The chain hash covers `personal_digest`, the SHA-256 of the personal fields
-- (actor_subject, target, reason, source, details), not the fields
-- themselves: retention may erase them (`pruned_at`) and the chain still
-- verifies.
CREATE TABLE audit_events (
    seq            BIGINT PRIMARY KEY,
    ts             TEXT   NOT NULL,
    tenant         TEXT,
    tenant_path    TEXT,
    -- The tenant path split by level (derived from tenant_path, checked by
    -- verify): a subtree query is an equality on one of them, so an index
    -- on (level column, seq) answers "the newest events below T" directly.
    path_kreis        TEXT,
    path_samtgemeinde TEXT,
    path_gemeinde     TEXT,
    actor_subject  TEXT,
    actor_tenant   TEXT,
    actor_client   TEXT,
    action         TEXT   NOT NULL,
    target         TEXT,
    outcome        TEXT   NOT NULL,
    reason         TEXT,
    correlation_id TEXT,
    source         TEXT,
    details        TEXT   NOT NULL,
    personal_digest TEXT  NOT NULL,
    pruned_at      TEXT,
    prev_hash      TEXT   NOT NULL,
    hash           TEXT   NOT NULL
);
CREATE INDEX audit_events_ts ON audit_events (ts, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_actor ON audit_events (actor_subject, seq);
CREATE INDEX audit_events_client ON audit_events (actor_client, seq);
CREATE INDEX audit_events_correlation ON audit_events (correlation_id);
CREATE INDEX audit_events_kreis ON audit_events (path_kreis, seq);
CREATE INDEX audit_events_samtgemeinde ON audit_events (path_samtgemeinde, seq);
CREATE INDEX audit_events_gemeinde ON audit_events (path_gemeinde, seq);

-- One row: the head of the chain. Writers lock it (UPDATE) before appending,
-- which serialises appends from several nodes on one PostgreSQL.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT   NOT NULL,
    ts   TEXT   NOT NULL
);
INSERT INTO audit_head (id, seq, hash, ts)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', '');
