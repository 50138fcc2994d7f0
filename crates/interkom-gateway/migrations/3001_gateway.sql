-- The OpenID Provider's state. Portable SQL (SQLite and PostgreSQL); times
-- are unix seconds; secrets and bearer handles are stored as keyed hashes.

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    private_enc TEXT NOT NULL,   -- AES-256-GCM under the key-encryption key
    public_jwk  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    sign_from   BIGINT NOT NULL,
    retire_at   BIGINT
);

CREATE TABLE clients (
    id                        TEXT PRIMARY KEY,
    tenant                    TEXT NOT NULL REFERENCES tenants (id),
    name                      TEXT NOT NULL,
    redirect_uris             TEXT NOT NULL,  -- JSON array, matched exactly
    post_logout_redirect_uris TEXT NOT NULL,  -- JSON array
    grant_types               TEXT NOT NULL,  -- JSON array
    scopes                    TEXT NOT NULL,  -- JSON array
    auth_method               TEXT NOT NULL,
    secret_hash               TEXT,
    jwks                      TEXT,
    id_token_alg              TEXT NOT NULL,
    first_party               BIGINT NOT NULL,
    created_at                BIGINT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL REFERENCES tenants (id),
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    name          TEXT,
    email         TEXT,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    handle_hash TEXT PRIMARY KEY,
    sid         TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL REFERENCES users (id),
    auth_time   BIGINT NOT NULL,
    acr         TEXT NOT NULL,
    amr         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- A pending authorization request waiting for the user to log in.
CREATE TABLE login_requests (
    id         TEXT PRIMARY KEY,
    csrf_hash  TEXT NOT NULL,
    params     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_requests_expires ON login_requests (expires_at);

CREATE TABLE auth_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    sid            TEXT NOT NULL,
    scope          TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      BIGINT NOT NULL,
    acr            TEXT NOT NULL,
    amr            TEXT NOT NULL,
    family_id      TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

-- Everything issued from one authorization code: revoked together on code
-- replay, refresh-token reuse, logout or revocation.
CREATE TABLE token_families (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    sid        TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX token_families_sid ON token_families (sid);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES token_families (id),
    client_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    sid        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    auth_time  BIGINT NOT NULL,
    acr        TEXT NOT NULL,
    amr        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Access tokens (JWTs) revoked before their expiry, by jti.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- jti values of private_key_jwt client assertions, kept until they expire,
-- so an assertion is accepted once.
CREATE TABLE client_assertions (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
