-- See migrations/sqlite/0012_fit_note_withdrawal.sql.
ALTER TABLE fit_notes ADD COLUMN withdrawn_at TEXT;
ALTER TABLE referral_prompts ADD COLUMN withdrawn_at TEXT;
