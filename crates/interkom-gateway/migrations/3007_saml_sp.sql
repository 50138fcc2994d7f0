-- An AuthnRequest interkom (as service provider of a SAML identity
-- source) sent: the Response must answer it (InResponseTo), once. The
-- authentication it established waits here (`result`) until this
-- browser takes it up (the ACS is a cross-site POST without cookies).
CREATE TABLE saml_sp_requests (
    request_id    TEXT   PRIMARY KEY,
    login_request TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    asked         TEXT,
    browser_hash  TEXT   NOT NULL,
    result        TEXT,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX saml_sp_requests_expires ON saml_sp_requests (expires_at);

-- The ids of the assertions consumed, per source, until they expire: an
-- assertion posted twice is refused on every node.
CREATE TABLE saml_assertions (
    source       TEXT   NOT NULL,
    assertion_id TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (source, assertion_id)
);
CREATE INDEX saml_assertions_expires ON saml_assertions (expires_at);

-- How a SAML source names the login of a session (a keyed hash of its
-- NameID): the source's LogoutRequest finds the session by it.
ALTER TABLE sessions ADD COLUMN upstream_subject TEXT;
CREATE INDEX sessions_upstream_subject ON sessions (upstream_subject);
