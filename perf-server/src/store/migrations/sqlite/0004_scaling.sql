CREATE TABLE scaling_events (
    id            TEXT PRIMARY KEY NOT NULL,
    at_ms         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    from_replicas INTEGER NOT NULL,
    to_replicas   INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    metrics       TEXT NOT NULL
);
CREATE TABLE scaling_state (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
