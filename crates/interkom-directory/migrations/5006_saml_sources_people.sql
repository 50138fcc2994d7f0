-- Citizens and businesses: accounts of their own populations, separate
-- from staff (no roles, never administrators, not subjects of the policy).
ALTER TABLE users ADD COLUMN population TEXT NOT NULL DEFAULT 'staff';

-- SAML identity providers interkom is a service provider of: the federal
-- accounts (BundID, Mein Unternehmenskonto) and a Kommune's ADFS. The
-- IdP's metadata is kept with the registration (fetched or given).
CREATE TABLE saml_sources (
    id         TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL REFERENCES tenants (id),
    entity_id  TEXT   NOT NULL UNIQUE,
    config     TEXT   NOT NULL,
    metadata   TEXT   NOT NULL,
    fetched_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A person of a population, linked on the pseudonym the source gives
-- (keyed hash; bPK2 for BundID), never on a transient NameID. What the
-- person's Leistungen needed of their data is kept sealed; last_login_at
-- drives the deletion after a time without login.
CREATE TABLE people (
    user_id       TEXT   PRIMARY KEY REFERENCES users (id),
    source        TEXT   NOT NULL,
    pseudonym     TEXT   NOT NULL,
    data_enc      TEXT,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX people_pseudonym ON people (source, pseudonym);
CREATE INDEX people_last_login ON people (last_login_at);
