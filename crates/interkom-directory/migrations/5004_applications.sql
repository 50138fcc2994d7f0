-- Protected applications: web applications behind a reverse proxy that
-- asks interkom before every request (forward authentication).
CREATE TABLE applications (
    id         TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL REFERENCES tenants (id),
    config     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Every origin and path prefix belongs to one application: a second
-- registration of the same place fails on this key.
CREATE TABLE application_routes (
    origin      TEXT NOT NULL,
    path        TEXT NOT NULL,
    application TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    PRIMARY KEY (origin, path)
);
CREATE INDEX application_routes_app ON application_routes (application);
