-- Current version of every stored FHIR resource, stamped with id and meta. A rowid table, not
-- WITHOUT ROWID: rows hold whole resources (about 1 KiB), too large for a clustered index.
CREATE TABLE resources (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    INTEGER NOT NULL,
    last_updated  TEXT NOT NULL,      -- fixed-width UTC, so text order is time order
    content       TEXT NOT NULL       -- the resource as JSON
);
CREATE UNIQUE INDEX resources_by_id ON resources (resource_type, id);
CREATE INDEX resources_by_type_updated ON resources (resource_type, last_updated);

-- Earlier versions of resources that a later submission updated (e.g. a Patient's demographics).
CREATE TABLE resource_history (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version_id    INTEGER NOT NULL,
    last_updated  TEXT NOT NULL,
    content       TEXT NOT NULL
);
CREATE UNIQUE INDEX resource_history_by_version ON resource_history (resource_type, id, version_id);

-- One resource per business identifier for shared resources (Patient by NHS number,
-- Organization by ODS code, Practitioner by registration): conditional updates resolve here.
CREATE TABLE identities (
    resource_type TEXT NOT NULL,
    system        TEXT NOT NULL,
    value         TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    PRIMARY KEY (resource_type, system, value)
) WITHOUT ROWID;

-- Search index: token and reference parameters of each resource's current version.
CREATE TABLE search_tokens (
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    param         TEXT NOT NULL,
    system        TEXT NOT NULL,
    value         TEXT NOT NULL
);
CREATE INDEX search_tokens_by_value ON search_tokens (resource_type, param, value, system);
CREATE INDEX search_tokens_by_owner ON search_tokens (resource_type, resource_id);

-- Write-once submission keys: a sender's own referral id, unique per sender namespace.
-- The primary key, not a search, is what makes concurrent resends store one referral.
CREATE TABLE submissions (
    namespace     TEXT NOT NULL,
    key           TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    focus_type    TEXT NOT NULL,
    focus_id      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
