CREATE TABLE profiles (
    id             UUID PRIMARY KEY,
    kind           TEXT NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    frequency_hz   INTEGER,
    pprof          BYTEA NOT NULL,
    flamegraph_svg BYTEA NOT NULL
);
