-- Forward authentication: the session cookie of one protected host,
-- set through a one-time code on that host's callback. It is worth
-- nothing once the single sign-on session `sid` has ended (every read
-- joins `sessions`).
CREATE TABLE forward_sessions (
    handle_hash TEXT   PRIMARY KEY,
    sid         TEXT   NOT NULL,
    origin      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX forward_sessions_sid ON forward_sessions (sid);
CREATE INDEX forward_sessions_expires ON forward_sessions (expires_at);
