-- Leases on letters. Whatever changes a delivery (an attempt, an escalation, a MESH
-- acknowledgement, a resend by hand) first takes its lease: the instance's id and a time until
-- which no other holder takes the letter. So several gateway instances on one database never work
-- on the same letter at once, and the letters of an instance killed mid-attempt are taken over
-- once its leases run out. Recording the change lets the lease go. NULL: nobody holds it.
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;   -- the holding instance's id
ALTER TABLE deliveries ADD COLUMN lease_until TEXT;   -- fixed-width UTC, like the other times
