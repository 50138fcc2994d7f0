-- The directory's own migrations (5000 range). Its first tables (users,
-- clients, upstream_idps, upstream_links and the factor tables) were
-- created by the gateway's migrations 3001 and 3004, before the directory
-- was a context of its own; applied migrations are history and stay where
-- they ran. From here on the directory changes its tables itself.

-- A resource server may introspect the tokens of people of its tenant's
-- subtree, not only tokens issued to it (RFC 7662 §4).
ALTER TABLE clients ADD COLUMN resource_server BIGINT NOT NULL DEFAULT 0;
