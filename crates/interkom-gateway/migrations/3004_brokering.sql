-- Identity brokering and second factors.

-- Upstream OpenID Providers (a municipality's own IdP), one row each; the
-- configuration as JSON, the client secret sealed under the key-encryption
-- key.
CREATE TABLE upstream_idps (
    id         TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL REFERENCES tenants (id),
    config     TEXT   NOT NULL,
    secret_enc TEXT,
    updated_at BIGINT NOT NULL
);

-- Which interkom account an upstream subject is: valid only for the issuer
-- that asserted it (an upstream id reused for another IdP links nothing).
CREATE TABLE upstream_links (
    upstream   TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    issuer     TEXT   NOT NULL,
    user_id    TEXT   NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (upstream, issuer, subject)
);
-- One identity per upstream (and issuer) and account.
CREATE UNIQUE INDEX upstream_links_user ON upstream_links (upstream, issuer, user_id);

-- A login sent to an upstream and not yet back: single use (the state is
-- deleted when the answer arrives, so a replayed answer finds nothing).
CREATE TABLE upstream_logins (
    state_hash    TEXT   PRIMARY KEY,
    login_request TEXT   NOT NULL,
    upstream      TEXT   NOT NULL,
    browser_hash  TEXT   NOT NULL,
    secrets_enc   TEXT   NOT NULL,  -- nonce and PKCE verifier, sealed
    expires_at    BIGINT NOT NULL
);
CREATE INDEX upstream_logins_expires ON upstream_logins (expires_at);

-- A login in progress past its first factor (the user is known, a further
-- step is due): JSON, see `stepup::Pending`.
ALTER TABLE login_requests ADD COLUMN pending TEXT;

-- Which upstream a session came from, and its ID token sealed (the hint
-- for ending the upstream's session at logout).
ALTER TABLE sessions ADD COLUMN upstream TEXT;
ALTER TABLE sessions ADD COLUMN upstream_token TEXT;

-- TOTP (RFC 6238): the secret sealed; unconfirmed until the first code;
-- the last time step used, so a code counts once.
CREATE TABLE totp_credentials (
    user_id      TEXT   PRIMARY KEY REFERENCES users (id),
    secret_enc   TEXT   NOT NULL,
    confirmed_at BIGINT,
    last_step    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- One-time recovery codes (keyed hashes).
CREATE TABLE recovery_codes (
    user_id   TEXT   NOT NULL REFERENCES users (id),
    code_hash TEXT   NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Passkeys (WebAuthn): the credential as webauthn-rs keeps it (public key,
-- counter, backup flags); device_bound when it cannot leave its device.
CREATE TABLE webauthn_credentials (
    cred_id      TEXT   PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users (id),
    passkey      TEXT   NOT NULL,
    device_bound BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);

-- A passkey registration under way (single use).
CREATE TABLE webauthn_ceremonies (
    id         TEXT   PRIMARY KEY,
    user_id    TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
