-- Signed checkpoints of the audit chain: every N events or T seconds the
-- writer signs (Ed25519) the sequence number and hash of the newest event.
-- Kept elsewhere as well (`interkom audit checkpoint export`), they make a
-- rewritten or truncated chain detectable even to someone who recomputes
-- every hash.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    ts        TEXT   NOT NULL,
    hash      TEXT   NOT NULL,
    key_id    TEXT   NOT NULL,
    signature TEXT   NOT NULL
);
