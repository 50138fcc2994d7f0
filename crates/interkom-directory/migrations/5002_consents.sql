-- What a person agreed a client may receive: the scopes, per account and
-- client. A client that is not the county's own asks before its first
-- login and whenever it asks for more.
CREATE TABLE consents (
    account_id TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    scopes     TEXT   NOT NULL,  -- space-separated, sorted
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, client_id)
);
