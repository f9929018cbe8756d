-- When the information in a resource was authored (the authoredOn of the referral that last wrote
-- it), so a referral that arrives late cannot overwrite newer details of a shared resource.
ALTER TABLE resources ADD COLUMN source_time TEXT NOT NULL DEFAULT '';
