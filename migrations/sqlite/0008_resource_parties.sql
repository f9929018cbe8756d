-- The one tenancy relation: for every stored resource about a person, each record (a referral
-- or a fit note) it belongs to, with the parties to that record. Read-by-id, every search, its
-- counts and pages, and every operation decide who may see a resource from these rows alone,
-- so a search can never return what a read refuses. A party is the practice that sent a record
-- or the service a referral is addressed to: filing one document about a person makes a
-- practice party to that document, never to what others sent about them.
-- The version of the person's Patient each record came with: what its sender stated about the
-- person, which is what the parties to that record are shown (never another sender's details).
-- NULL for records stored before this migration: they are shown the current version.
ALTER TABLE referrals ADD COLUMN patient_version INTEGER;
ALTER TABLE fit_notes ADD COLUMN patient_version INTEGER;
-- Records stored before this migration are pinned to the Patient version current when they
-- were stored (their submission wrote it, in the same transaction, at the same instant).
UPDATE referrals SET patient_version = (
    SELECT MAX(v.version_id) FROM (
        SELECT version_id, last_updated FROM resources
        WHERE resource_type = 'Patient' AND id = referrals.patient_id
        UNION ALL
        SELECT version_id, last_updated FROM resource_history
        WHERE resource_type = 'Patient' AND id = referrals.patient_id
    ) v WHERE v.last_updated <= referrals.created_at);
UPDATE fit_notes SET patient_version = (
    SELECT MAX(v.version_id) FROM (
        SELECT version_id, last_updated FROM resources
        WHERE resource_type = 'Patient' AND id = fit_notes.patient_id
        UNION ALL
        SELECT version_id, last_updated FROM resource_history
        WHERE resource_type = 'Patient' AND id = fit_notes.patient_id
    ) v WHERE v.last_updated <= fit_notes.created_at);
-- Who stated each resource's current version (the submitting practice's system|value; empty
-- for what the gateway wrote itself), so one sender's details never replace another's.
ALTER TABLE resources ADD COLUMN source_practice TEXT NOT NULL DEFAULT '';

CREATE VIEW resource_parties (resource_type, resource_id, record, patient_id, practice, service, patient_version) AS
    -- What came in with a referral, or was written to it since (workflow, letters, consents):
    -- a Consent is seen by the parties of the referral it came with or was recorded on (the
    -- recording party's referral with the party it names), never by every party of the person.
    SELECT m.resource_type, m.resource_id, 'ServiceRequest/' || f.service_request_id,
           f.patient_id, f.practice, f.service, f.patient_version
    FROM referral_members m JOIN referrals f ON f.service_request_id = m.service_request_id
    UNION ALL
    -- A fit note belongs to the practice that sent it,
    SELECT 'Observation', n.observation_id, 'Observation/' || n.observation_id,
           n.patient_id, n.practice, NULL, n.patient_version
    FROM fit_notes n
    UNION ALL
    -- and, for the services the person is referred to, to each referral (consent decides what
    -- a service sees of it); never to another practice.
    SELECT 'Observation', n.observation_id, 'ServiceRequest/' || f.service_request_id,
           n.patient_id, NULL, f.service, f.patient_version
    FROM fit_notes n JOIN referrals f ON f.patient_id = n.patient_id
    UNION ALL
    -- A referral prompt is the practice's own to-do, about the fit note that fired it.
    SELECT 'Task', p.task_id, 'Observation/' || n.observation_id, n.patient_id, n.practice, NULL,
           n.patient_version
    FROM referral_prompts p JOIN fit_notes n ON n.observation_id = p.fit_note_id
    UNION ALL
    -- The person, to each party of each of their records.
    SELECT 'Patient', f.patient_id, 'ServiceRequest/' || f.service_request_id,
           f.patient_id, f.practice, f.service, f.patient_version
    FROM referrals f
    UNION ALL
    SELECT 'Patient', n.patient_id, 'Observation/' || n.observation_id,
           n.patient_id, n.practice, NULL, n.patient_version
    FROM fit_notes n;
