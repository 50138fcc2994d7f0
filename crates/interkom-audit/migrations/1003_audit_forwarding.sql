-- How far each forwarder (e.g. to a SIEM) has delivered the trail. The
-- forwarder reads the table, never the append path, so a SIEM that is down
-- never slows appends; it resumes from here.
CREATE TABLE audit_forward_cursor (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
