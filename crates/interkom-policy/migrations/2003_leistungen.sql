-- Leistungen: online services of a tenant for citizens and businesses,
-- each with the level of assurance its legal basis requires. Policy like
-- the rules: rows of the policy directory carry source = 'baseline'.
CREATE TABLE leistungen (
    id         TEXT   PRIMARY KEY,
    tenant     TEXT   NOT NULL,
    client_id  TEXT   NOT NULL UNIQUE,
    spec       TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
