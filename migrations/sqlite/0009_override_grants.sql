-- Overrides ("break glass") are requested by a practice or service and take effect only when an
-- information-governance client grants them; a review that finds one inappropriate ends it. The
-- state and who moved it there are columns, so the decision never depends on JSON. `content`
-- keeps what the request asked for (data classes, reason, justification).
CREATE TABLE consent_override_states (
    id                      TEXT NOT NULL PRIMARY KEY,
    patient_id              TEXT NOT NULL,
    -- Bumped on every change: a change based on an older version is refused.
    version                 INTEGER NOT NULL,
    state                   TEXT NOT NULL CHECK (state IN ('requested', 'granted', 'refused', 'ended')),
    recipient               TEXT NOT NULL,
    recipient_organisation  TEXT NOT NULL,   -- system|value: exactly one organisation
    hours                   INTEGER NOT NULL CHECK (hours > 0),
    requested_at            TEXT NOT NULL,
    requested_by            TEXT NOT NULL,   -- client id
    requester_organisation  TEXT NOT NULL,
    -- The grant or the refusal.
    decided_at              TEXT,
    decided_by              TEXT,
    decider_organisation    TEXT,
    decision_note           TEXT,
    expires_at              TEXT,            -- set by a grant: decided_at + hours
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
) WITHOUT ROWID;

-- Overrides recorded before grants existed were granted by their own requester. None of them has
-- an information-governance grant, so none stays in force unless a review already found it
-- appropriate: one reviewed inappropriate ends when it was reviewed; one still running and not
-- reviewed ends now (its requester asks again, and information governance decides); an expired
-- one stays as it was, for review. The self-grant is kept as it happened. An override that named
-- no organisation covered every one; it is kept with an empty organisation, which matches none.
INSERT INTO consent_override_states (
    id, patient_id, version, state, recipient, recipient_organisation, hours,
    requested_at, requested_by, requester_organisation,
    decided_at, decided_by, decider_organisation, decision_note, expires_at, ended_at,
    reviewed_at, reviewed_by, reviewer_organisation, review_outcome, review_note, content)
SELECT
    o.id, o.patient_id, 1,
    CASE
        WHEN o.content ->> '$.review.outcome' = 'inappropriate' THEN 'ended'
        WHEN o.content ->> '$.review.outcome' = 'appropriate' THEN 'granted'
        WHEN julianday(o.expires_at) <= julianday('now') THEN 'granted'
        ELSE 'ended'
    END,
    o.content ->> '$.recipient',
    COALESCE(o.content ->> '$.recipientOrganisation', ''),
    MAX(1, CAST(ROUND((julianday(o.expires_at) - julianday(o.granted_at)) * 24) AS INTEGER)),
    strftime('%Y-%m-%dT%H:%M:%fZ', o.granted_at),
    COALESCE(o.content ->> '$.grantedBy.client', ''),
    COALESCE(o.content ->> '$.grantedBy.organisation', ''),
    strftime('%Y-%m-%dT%H:%M:%fZ', o.granted_at),
    COALESCE(o.content ->> '$.grantedBy.client', ''),
    COALESCE(o.content ->> '$.grantedBy.organisation', ''),
    'granted by its own requester, before overrides needed an information-governance grant',
    strftime('%Y-%m-%dT%H:%M:%fZ', o.expires_at),
    CASE
        WHEN o.content ->> '$.review.outcome' = 'inappropriate'
            THEN strftime('%Y-%m-%dT%H:%M:%fZ', o.content ->> '$.review.reviewedAt')
        WHEN o.content ->> '$.review.outcome' = 'appropriate' THEN NULL
        WHEN julianday(o.expires_at) <= julianday('now') THEN NULL
        ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    END,
    CASE WHEN o.content ->> '$.review.outcome' IS NOT NULL
        THEN strftime('%Y-%m-%dT%H:%M:%fZ', o.content ->> '$.review.reviewedAt') END,
    o.content ->> '$.review.reviewedBy.client',
    o.content ->> '$.review.reviewedBy.organisation',
    o.content ->> '$.review.outcome',
    o.content ->> '$.review.note',
    json_object(
        'dataClasses', json(COALESCE(o.content ->> '$.dataClasses', '[]')),
        'reason', o.content ->> '$.reason',
        'justification', COALESCE(o.content ->> '$.justification', ''))
FROM consent_overrides o;

DROP TABLE consent_overrides;
ALTER TABLE consent_override_states RENAME TO consent_overrides;
CREATE INDEX consent_overrides_by_patient ON consent_overrides (patient_id);
CREATE INDEX consent_overrides_by_state ON consent_overrides (state, requested_at);
