-- The Kommunen's directories (Active Directory, OpenLDAP) as identity
-- sources. The service account's password is sealed, bound to the source
-- and its bind DN.
CREATE TABLE directory_sources (
    id         TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL REFERENCES tenants (id),
    config     TEXT   NOT NULL,
    secret_enc TEXT,
    updated_at BIGINT NOT NULL,
    -- The last provisioning sync began (one node runs each).
    synced_at  BIGINT
);

-- Which interkom account a directory entry is, by the directory's
-- immutable id (objectGUID, entryUUID): a renamed or moved entry stays
-- the same account.
CREATE TABLE directory_links (
    source     TEXT   NOT NULL,
    entry_id   TEXT   NOT NULL,
    user_id    TEXT   NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    -- Set while a sync found the entry removed or disabled (the account
    -- locked by the sync, so unlocked by it when the entry is back).
    deactivated_at BIGINT,
    PRIMARY KEY (source, entry_id)
);
CREATE UNIQUE INDEX directory_links_user ON directory_links (source, user_id);
