-- Operational alerts for the on-call staff (src/alerts): a dead or escalated letter, a failing
-- practice endpoint, the MESH mailbox. No personal data: ids, ODS codes and the gateway's words.
CREATE TABLE alerts (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    -- What it is about (a letter id, an ODS code, a mailbox): one open alert per kind and subject.
    subject          TEXT NOT NULL,
    service          TEXT,
    summary          TEXT NOT NULL,
    duty_contact     TEXT,
    raised_at        TEXT NOT NULL,
    -- The on-call routes: when they took it, how often they were tried, when to try again.
    notified_at      TEXT,
    notify_attempts  BIGINT NOT NULL DEFAULT 0,
    next_notify_at   TEXT NOT NULL,
    acknowledged_at  TEXT,
    acknowledged_by  TEXT
);
CREATE UNIQUE INDEX alerts_open_once ON alerts (kind, subject) WHERE acknowledged_at IS NULL;
CREATE INDEX alerts_to_notify ON alerts (next_notify_at) WHERE notified_at IS NULL;
CREATE INDEX alerts_by_raised ON alerts (raised_at);
