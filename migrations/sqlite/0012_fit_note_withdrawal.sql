-- When a fit note was entered in error (its Observation's status entered-in-error): it stays a
-- record of the practice that sent it (the tenancy relation reads this table), but the history
-- rules, the summary and eligibility no longer count it.
ALTER TABLE fit_notes ADD COLUMN withdrawn_at TEXT;
