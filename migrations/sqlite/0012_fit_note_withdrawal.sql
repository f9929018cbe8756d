-- When a fit note was entered in error (its Observation's status entered-in-error): it stays a
-- record of the practice that sent it (the tenancy relation reads this table), but the history
-- rules, the summary and eligibility no longer count it.
ALTER TABLE fit_notes ADD COLUMN withdrawn_at TEXT;
-- A referral prompt cancelled because a fit note it rests on was entered in error: no longer
-- counted when the rules decide whether a prompt has fired before.
ALTER TABLE referral_prompts ADD COLUMN withdrawn_at TEXT;
