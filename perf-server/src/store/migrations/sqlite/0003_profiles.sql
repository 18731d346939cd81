CREATE TABLE profiles (
    id             TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL,
    frequency_hz   INTEGER,
    pprof          BLOB NOT NULL,
    flamegraph_svg BLOB NOT NULL
);
