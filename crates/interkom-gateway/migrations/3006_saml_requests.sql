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
