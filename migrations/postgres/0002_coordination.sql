-- Request allowances every instance shares (the rate limits), as GCRA: each key's theoretical
-- arrival time, in Unix seconds. UNLOGGED: not written to the WAL, so a request costs no fsync;
-- a crash empties it, which only ever admits more (every key starts again with a full burst).
CREATE UNLOGGED TABLE rate_allowances (
    key TEXT NOT NULL PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL
);
CREATE INDEX rate_allowances_by_tat ON rate_allowances (tat);
