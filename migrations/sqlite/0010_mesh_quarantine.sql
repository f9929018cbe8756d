-- Messages in the gateway's MESH inbox that answer none of its letters: junk, an acknowledgement
-- from a mailbox the letter was not sent to, a message too large to read. Each is acknowledged to
-- MESH (so that they cannot fill the inbox and hide real acknowledgements: MESH lists 500 at a
-- time) and kept here, with an AuditEvent written in the same transaction, for information
-- governance to review.
CREATE TABLE mesh_quarantine (
    message_id   TEXT NOT NULL UNIQUE,       -- MESH's message id
    sender       TEXT NOT NULL,              -- mex-from: the mailbox that sent it, as MESH states it
    workflow_id  TEXT NOT NULL,              -- mex-workflowid
    message_type TEXT NOT NULL,              -- DATA, or REPORT (MESH's own)
    local_id     TEXT NOT NULL,              -- the sender's mex-localid
    received_at  TEXT NOT NULL,
    size         INTEGER NOT NULL,           -- bytes; at least this many when too large to read
    reason       TEXT NOT NULL,              -- mesh-quarantine-reason code
    letter_id    TEXT,                       -- the letter (Communication id) an acknowledgement named
    content      BLOB                        -- as received, up to the configured maximum; NULL when too large
);
CREATE INDEX mesh_quarantine_by_time ON mesh_quarantine (received_at);
