-- Brute-force protection: failed logins per account name and per source,
-- shared by every node. `key` is a keyed hash of the account name
-- (`a:…`, also for names that do not exist) or the pseudonymised source
-- (`s:…`); rows go once their window and lock have passed.
CREATE TABLE login_throttle (
    key          TEXT   PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
