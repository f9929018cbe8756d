-- The gateway's schema on PostgreSQL: the same tables, columns and meanings as the SQLite
-- migrations 0001-0010 reach (read those for the history of each), so one set of SQL serves both.
-- Times are fixed-width UTC text (`2026-12-01T12:00:00.000Z`), so text order is time order on
-- both backends; integers are BIGINT, which is what the gateway reads them as.

-- Current version of every stored FHIR resource, stamped with id and meta.
CREATE TABLE resources (
    resource_type   TEXT NOT NULL,
    id              TEXT NOT NULL,
    version_id      BIGINT NOT NULL,
    last_updated    TEXT NOT NULL,
    content         TEXT NOT NULL,              -- the resource as JSON, exactly as served
    -- When the information was authored, so a late referral cannot overwrite newer details.
    source_time     TEXT NOT NULL DEFAULT '',
    -- Who stated the current version (system|value of the submitting practice; '' for the gateway).
    source_practice TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_by_type_updated ON resources (resource_type, last_updated);

-- Earlier versions of resources that a later write replaced.
CREATE TABLE resource_history (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    BIGINT NOT NULL,
    last_updated  TEXT NOT NULL,
    content       TEXT NOT NULL,
    PRIMARY KEY (resource_type, id, version_id)
);

-- One resource per business identifier for shared resources (Patient by NHS number,
-- Organization by ODS code, Practitioner by registration).
CREATE TABLE identities (
    resource_type TEXT NOT NULL,
    system        TEXT NOT NULL,
    value         TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    PRIMARY KEY (resource_type, system, value)
);

-- Search index: token, reference and date parameters of each resource's current version.
CREATE TABLE search_tokens (
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    param         TEXT NOT NULL,
    system        TEXT NOT NULL,
    value         TEXT NOT NULL
);
CREATE INDEX search_tokens_by_value ON search_tokens (resource_type, param, value, system);
CREATE INDEX search_tokens_by_owner ON search_tokens (resource_type, resource_id);

-- Write-once submission keys: the primary key, not a search, is what makes concurrent resends
-- (on any instance) store one referral.
CREATE TABLE submissions (
    namespace     TEXT NOT NULL,
    key           TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    focus_type    TEXT NOT NULL,
    focus_id      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);

-- Who each referral is from, for and about, and the Patient version it came with.
CREATE TABLE referrals (
    service_request_id TEXT NOT NULL PRIMARY KEY,
    patient_id         TEXT NOT NULL,
    practice           TEXT NOT NULL,
    service            TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    patient_version    BIGINT
);
CREATE INDEX referrals_by_patient ON referrals (patient_id);
CREATE INDEX referrals_by_practice ON referrals (practice);
CREATE INDEX referrals_by_service ON referrals (service);

-- Every resource a referral brought in or was written to since.
CREATE TABLE referral_members (
    resource_type      TEXT NOT NULL,
    resource_id        TEXT NOT NULL,
    service_request_id TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, service_request_id)
);

-- Fit notes by person, with the practice that sent each.
CREATE TABLE fit_notes (
    observation_id  TEXT NOT NULL PRIMARY KEY,
    patient_id      TEXT NOT NULL,
    practice        TEXT NOT NULL,
    period_start    TEXT NOT NULL,   -- YYYY-MM-DD
    period_end      TEXT,            -- YYYY-MM-DD, inclusive; NULL for an indefinite statement
    issued          TEXT NOT NULL,   -- YYYY-MM-DD
    not_fit         BOOLEAN NOT NULL,
    created_at      TEXT NOT NULL,
    patient_version BIGINT
);
CREATE INDEX fit_notes_by_patient ON fit_notes (patient_id);

-- Referral prompts (Tasks) created by services' fit-note rules.
CREATE TABLE referral_prompts (
    task_id     TEXT NOT NULL PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    fit_note_id TEXT NOT NULL,
    service     TEXT NOT NULL,
    rule        TEXT NOT NULL,
    covers_from TEXT NOT NULL,
    covers_to   TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX referral_prompts_by_patient ON referral_prompts (patient_id);
CREATE INDEX referral_prompts_by_fit_note ON referral_prompts (fit_note_id);

-- Registered client systems (SMART Backend Services). Revoked clients are kept.
CREATE TABLE clients (
    id           TEXT NOT NULL PRIMARY KEY,
    role         TEXT NOT NULL,
    organisation TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    jwks         TEXT,
    jwks_url     TEXT,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    tenant       TEXT NOT NULL DEFAULT 'live'
);

-- Client assertions already used, until they expire: a `jti` is accepted once, on any instance.
CREATE TABLE client_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,     -- Unix seconds
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertions_by_expiry ON client_assertions (expires_at);

-- The outbox: one row per letter, written in the transaction that stores the letter.
CREATE TABLE deliveries (
    id              TEXT NOT NULL PRIMARY KEY,
    document_id     TEXT NOT NULL,
    referral_id     TEXT NOT NULL,
    patient_id      TEXT NOT NULL,
    service         TEXT NOT NULL,
    practice        TEXT NOT NULL,
    priority        BIGINT NOT NULL,            -- 0 urgent, 1 routine: urgent sorts first
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    message_id      TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    deadline_at     TEXT NOT NULL,
    escalate_at     TEXT,
    escalated_at    TEXT,
    channel         TEXT,
    transport_id    TEXT,
    last_error      TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (priority, next_attempt_at)
    WHERE state IN ('queued', 'escalated', 'sent', 'received');
CREATE INDEX deliveries_by_message ON deliveries (message_id);
CREATE INDEX deliveries_by_state ON deliveries (state);
CREATE INDEX deliveries_by_referral ON deliveries (referral_id);

CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    attempt     BIGINT NOT NULL,
    at          TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    PRIMARY KEY (delivery_id, seq)
);

-- Break-glass overrides: requested by a practice or service, in force only once information
-- governance grants them.
CREATE TABLE consent_overrides (
    id                      TEXT NOT NULL PRIMARY KEY,
    patient_id              TEXT NOT NULL,
    version                 BIGINT NOT NULL,
    state                   TEXT NOT NULL CHECK (state IN ('requested', 'granted', 'refused', 'ended')),
    recipient               TEXT NOT NULL,
    recipient_organisation  TEXT NOT NULL,
    hours                   BIGINT NOT NULL CHECK (hours > 0),
    requested_at            TEXT NOT NULL,
    requested_by            TEXT NOT NULL,
    requester_organisation  TEXT NOT NULL,
    decided_at              TEXT,
    decided_by              TEXT,
    decider_organisation    TEXT,
    decision_note           TEXT,
    expires_at              TEXT,
    ended_at                TEXT,
    reviewed_at             TEXT,
    reviewed_by             TEXT,
    reviewer_organisation   TEXT,
    review_outcome          TEXT CHECK (review_outcome IN ('appropriate', 'inappropriate')),
    review_note             TEXT,
    content                 TEXT NOT NULL,
    CHECK (state <> 'requested' OR (decided_at IS NULL AND expires_at IS NULL AND ended_at IS NULL)),
    CHECK (state NOT IN ('granted', 'ended') OR (decided_at IS NOT NULL AND decided_by IS NOT NULL AND expires_at IS NOT NULL)),
    CHECK (state <> 'refused' OR (decided_at IS NOT NULL AND decided_by IS NOT NULL AND expires_at IS NULL)),
    CHECK ((state = 'ended') = (ended_at IS NOT NULL)),
    CHECK ((review_outcome IS NULL) = (reviewed_at IS NULL))
);
CREATE INDEX consent_overrides_by_patient ON consent_overrides (patient_id);
CREATE INDEX consent_overrides_by_state ON consent_overrides (state, requested_at);

-- MESH messages that answer none of the gateway's letters, kept for review.
CREATE TABLE mesh_quarantine (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,   -- insertion order (SQLite's rowid)
    message_id   TEXT NOT NULL UNIQUE,
    sender       TEXT NOT NULL,
    workflow_id  TEXT NOT NULL,
    message_type TEXT NOT NULL,
    local_id     TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    size         BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    letter_id    TEXT,
    content      BYTEA
);
CREATE INDEX mesh_quarantine_by_time ON mesh_quarantine (received_at);

-- The one tenancy relation (see migrations/sqlite/0008_resource_parties.sql for its reasons).
CREATE VIEW resource_parties (resource_type, resource_id, record, patient_id, practice, service, patient_version) AS
    SELECT m.resource_type, m.resource_id, 'ServiceRequest/' || f.service_request_id,
           f.patient_id, f.practice, f.service, f.patient_version
    FROM referral_members m JOIN referrals f ON f.service_request_id = m.service_request_id
    UNION ALL
    SELECT 'Observation', n.observation_id, 'Observation/' || n.observation_id,
           n.patient_id, n.practice, NULL, n.patient_version
    FROM fit_notes n
    UNION ALL
    SELECT 'Observation', n.observation_id, 'ServiceRequest/' || f.service_request_id,
           n.patient_id, NULL, f.service, f.patient_version
    FROM fit_notes n JOIN referrals f ON f.patient_id = n.patient_id
    UNION ALL
    SELECT 'Task', p.task_id, 'Observation/' || n.observation_id, n.patient_id, n.practice, NULL,
           n.patient_version
    FROM referral_prompts p JOIN fit_notes n ON n.observation_id = p.fit_note_id
    UNION ALL
    SELECT 'Patient', f.patient_id, 'ServiceRequest/' || f.service_request_id,
           f.patient_id, f.practice, f.service, f.patient_version
    FROM referrals f
    UNION ALL
    SELECT 'Patient', n.patient_id, 'Observation/' || n.observation_id,
           n.patient_id, n.practice, NULL, n.patient_version
    FROM fit_notes n;
