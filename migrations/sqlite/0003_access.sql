-- Who each referral is from, for and about: the tenancy that reads and searches are checked
-- against (a practice sees what it sent, a service what is addressed to it).
CREATE TABLE referrals (
    service_request_id TEXT NOT NULL PRIMARY KEY,
    patient_id         TEXT NOT NULL,
    practice           TEXT NOT NULL,   -- system|value of the sending practice
    service            TEXT NOT NULL,   -- system|value of the receiving service
    created_at         TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX referrals_by_patient ON referrals (patient_id);
CREATE INDEX referrals_by_practice ON referrals (practice);
CREATE INDEX referrals_by_service ON referrals (service);

-- Every resource a referral brought in (shared ones belong to several referrals).
CREATE TABLE referral_members (
    resource_type      TEXT NOT NULL,
    resource_id        TEXT NOT NULL,
    service_request_id TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, service_request_id)
) WITHOUT ROWID;

-- Authorised overrides of a consent decision ("break glass"). Never deleted; reviews are recorded
-- on the row.
CREATE TABLE consent_overrides (
    id          TEXT NOT NULL PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    granted_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    reviewed_at TEXT,
    content     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX consent_overrides_by_patient ON consent_overrides (patient_id);
CREATE INDEX consent_overrides_unreviewed ON consent_overrides (reviewed_at, granted_at);
