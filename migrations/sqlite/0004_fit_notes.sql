-- Fit notes by person: the history that referral prompts, eligibility and the summary read, and
-- each fit note's tenancy (the practice that sent it). Written in the transaction that stores the
-- fit note, so the next submission in the same batch sees it.
CREATE TABLE fit_notes (
    observation_id TEXT NOT NULL PRIMARY KEY,
    patient_id     TEXT NOT NULL,
    practice       TEXT NOT NULL,   -- system|value of the sending practice
    period_start   TEXT NOT NULL,   -- YYYY-MM-DD
    period_end     TEXT,            -- YYYY-MM-DD, inclusive; NULL for an indefinite statement
    issued         TEXT NOT NULL,   -- YYYY-MM-DD
    not_fit        INTEGER NOT NULL,
    created_at     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX fit_notes_by_patient ON fit_notes (patient_id);

-- Referral prompts (Tasks) created by services' fit-note rules, with the span of statements that
-- fired each, so a rule never fires twice for the same statements.
CREATE TABLE referral_prompts (
    task_id     TEXT NOT NULL PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    fit_note_id TEXT NOT NULL,      -- the Observation whose arrival fired it
    service     TEXT NOT NULL,      -- service id
    rule        TEXT NOT NULL,
    covers_from TEXT NOT NULL,
    covers_to   TEXT,               -- NULL when a statement was indefinite
    created_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX referral_prompts_by_patient ON referral_prompts (patient_id);
CREATE INDEX referral_prompts_by_fit_note ON referral_prompts (fit_note_id);
