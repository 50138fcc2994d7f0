-- Sessions of the admin console. The console logs in at interkom's own
-- gateway like any Fachverfahren (code flow with PKCE) and calls the admin
-- API with the administrator's access token, kept here encrypted under the
-- key-encryption key. The browser holds only a random handle (its keyed
-- hash is the key); a session lives as long as its refresh token.
CREATE TABLE console_sessions (
    handle_hash  TEXT PRIMARY KEY,
    state        TEXT NOT NULL,   -- the login's OAuth state, until the callback
    verifier     TEXT NOT NULL,   -- its PKCE code verifier (encrypted)
    access_token TEXT,            -- encrypted; NULL until logged in
    refresh_token TEXT,           -- encrypted; renews the access token
    csrf         TEXT NOT NULL,   -- the token every form carries
    expires_at   BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
