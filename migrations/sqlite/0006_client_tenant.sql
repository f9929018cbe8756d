-- Which tenant a registered client works in: 'live', or 'test' for integrators, who act only for
-- the configured test organisations and send only synthetic (999-range) NHS numbers.
ALTER TABLE clients ADD COLUMN tenant TEXT NOT NULL DEFAULT 'live';
