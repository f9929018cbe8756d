-- Leases on letters (see migrations/sqlite/0011_delivery_leases.sql): the holding instance's id
-- and a time until which no other instance takes the letter. NULL: nobody holds it.
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until TEXT;
