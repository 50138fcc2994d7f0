-- The administrative tree and role assignments. Portable SQL.
CREATE TABLE tenants (
    id     TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    level  TEXT NOT NULL,
    parent TEXT REFERENCES tenants (id),
    -- "/kreis/samtgemeinde/gemeinde/": subtree queries are prefix matches.
    path   TEXT NOT NULL
);
CREATE INDEX tenants_parent ON tenants (parent);
CREATE INDEX tenants_path ON tenants (path);

-- A role held by a subject in a tenant (rule 2 of the levels).
CREATE TABLE role_assignments (
    subject TEXT NOT NULL,
    tenant  TEXT NOT NULL REFERENCES tenants (id),
    role    TEXT NOT NULL,
    PRIMARY KEY (subject, tenant, role)
);
