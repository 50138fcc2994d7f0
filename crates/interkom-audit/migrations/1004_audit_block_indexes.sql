-- Secondary indexes that lead with the block of 2048 sequence numbers an
-- event belongs to. New events all land in the newest block, at the right
-- edge of every index, so a group commit dirties a handful of index pages
-- instead of one random page per event and key (an index on the actor
-- alone puts each new event somewhere in the middle). A query walks the
-- blocks newest first, a few seeks per block (see query.rs).
-- A time range needs no index: `ts` never decreases along `seq`, so the
-- range's sequence numbers are found by binary search on the primary key.
DROP INDEX audit_events_ts;
DROP INDEX audit_events_action;
DROP INDEX audit_events_actor;
DROP INDEX audit_events_client;
DROP INDEX audit_events_correlation;
DROP INDEX audit_events_kreis;
DROP INDEX audit_events_samtgemeinde;
DROP INDEX audit_events_gemeinde;
CREATE INDEX audit_events_b_actor ON audit_events ((seq / 2048), actor_subject, seq);
CREATE INDEX audit_events_b_action ON audit_events ((seq / 2048), action, seq);
CREATE INDEX audit_events_b_client ON audit_events ((seq / 2048), actor_client, seq);
CREATE INDEX audit_events_b_correlation ON audit_events ((seq / 2048), correlation_id, seq);
CREATE INDEX audit_events_b_tenant ON audit_events ((seq / 2048), path_kreis, path_samtgemeinde, path_gemeinde, seq);
