-- People's dashboard sessions ended before their time (signed out). A session is a sealed
-- cookie the gateway keeps no table of; its id is kept here from sign-out until the session
-- would have run out anyway, so a copy of the cookie taken before sign-out opens nothing.
CREATE TABLE ended_sessions (
    id TEXT PRIMARY KEY,
    -- Unix seconds: when the session would have ended; the row is forgotten after.
    until BIGINT NOT NULL
);
CREATE INDEX ended_sessions_by_until ON ended_sessions (until);
