-- SAML service providers: Fachverfahren that speak only SAML, logging in
-- through interkom as their identity provider. An entity id is one SP's.
CREATE TABLE service_providers (
    id         TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL REFERENCES tenants (id),
    entity_id  TEXT   NOT NULL UNIQUE,
    config     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
