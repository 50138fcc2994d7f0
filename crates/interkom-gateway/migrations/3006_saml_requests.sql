-- The ids of the AuthnRequests interkom (as SAML identity provider)
-- accepted, per service provider, until they could no longer be fresh:
-- a request sent twice is refused on every node.
CREATE TABLE saml_requests (
    sp         TEXT   NOT NULL,
    request_id TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (sp, request_id)
);
CREATE INDEX saml_requests_expires ON saml_requests (expires_at);

-- Which service providers got an assertion in a single sign-on session,
-- with the NameID they know the person by: single logout tells each.
CREATE TABLE saml_sessions (
    sid        TEXT   NOT NULL,
    sp         TEXT   NOT NULL,
    name_id    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sid, sp)
);
