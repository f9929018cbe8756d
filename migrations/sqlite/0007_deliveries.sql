-- The outbox: one row per letter to a practice, written in the transaction that stores the
-- letter, so a letter is never stored without being queued or queued without being stored.
CREATE TABLE deliveries (
    id              TEXT NOT NULL PRIMARY KEY,   -- the Communication's id
    document_id     TEXT NOT NULL,               -- the DocumentReference (the PDF)
    referral_id     TEXT NOT NULL,               -- the ServiceRequest
    patient_id      TEXT NOT NULL,
    service         TEXT NOT NULL,               -- system|value of the sending service
    practice        TEXT NOT NULL,               -- system|value (ODS) of the referring practice
    priority        INTEGER NOT NULL,            -- 0 urgent, 1 routine: urgent sorts first
    state           TEXT NOT NULL,               -- letter-delivery-state code
    attempts        INTEGER NOT NULL DEFAULT 0,
    message_id      TEXT NOT NULL,               -- the same on every attempt, so receivers de-duplicate
    correlation_id  TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    deadline_at     TEXT NOT NULL,               -- after this, a letter still not delivered is dead
    escalate_at     TEXT,                        -- urgent letters: escalated if not acknowledged by then
    escalated_at    TEXT,
    channel         TEXT,                        -- fhir | mesh, once a route was found
    transport_id    TEXT,                        -- the MESH message id of the last send
    last_error      TEXT,
    updated_at      TEXT NOT NULL
) WITHOUT ROWID;
-- What the worker looks for: letters still to (re)send, urgent first, oldest due first. A letter
-- sent over MESH is due again if its acknowledgements do not come in time.
CREATE INDEX deliveries_due ON deliveries (priority, next_attempt_at)
    WHERE state IN ('queued', 'escalated', 'sent', 'received');
CREATE INDEX deliveries_by_message ON deliveries (message_id);
CREATE INDEX deliveries_by_state ON deliveries (state);
CREATE INDEX deliveries_by_referral ON deliveries (referral_id);

-- Every attempt and acknowledgement, in order, for the status API and for people investigating
-- a failed delivery.
CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,                -- the attempt an acknowledgement answers
    at          TEXT NOT NULL,
    outcome     TEXT NOT NULL,                   -- delivered | sent | acknowledged | retry | permanent | cancelled | dead
    detail      TEXT,
    PRIMARY KEY (delivery_id, seq)
) WITHOUT ROWID;
