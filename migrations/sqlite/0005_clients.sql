-- Registered client systems (SMART Backend Services): who each acts for and may do, and the
-- public keys its signed client assertions are checked against. Revoked clients are kept.
CREATE TABLE clients (
    id           TEXT NOT NULL PRIMARY KEY,
    role         TEXT NOT NULL,      -- practice | service | information-governance
    organisation TEXT NOT NULL,      -- ODS code or service id
    scopes       TEXT NOT NULL,      -- space-separated
    jwks         TEXT,               -- a JWK Set (JSON), or
    jwks_url     TEXT,               -- where to fetch one
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
) WITHOUT ROWID;

-- Client assertions already used, until they expire: a `jti` is accepted once.
CREATE TABLE client_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,     -- Unix seconds
    PRIMARY KEY (client_id, jti)
) WITHOUT ROWID;
CREATE INDEX client_assertions_by_expiry ON client_assertions (expires_at);
