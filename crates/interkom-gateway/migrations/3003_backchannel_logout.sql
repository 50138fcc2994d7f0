-- Back-channel logout (OpenID Connect Back-Channel Logout 1.0).
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;

-- The outbox: one row per client to tell about an ended session, written in
-- the transaction that ends it; any node delivers, retrying.
CREATE TABLE logout_deliveries (
    id           TEXT   PRIMARY KEY,
    client_id    TEXT   NOT NULL,
    uri          TEXT   NOT NULL,
    sub          TEXT   NOT NULL,
    sid          TEXT   NOT NULL,
    attempts     BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error   TEXT
);
-- Only what is still to deliver: delivered rows stay a day, unread.
CREATE INDEX logout_deliveries_due ON logout_deliveries (next_at) WHERE delivered_at IS NULL;
