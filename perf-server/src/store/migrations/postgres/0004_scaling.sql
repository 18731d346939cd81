CREATE TABLE scaling_events (
    id            UUID PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    from_replicas BIGINT NOT NULL,
    to_replicas   BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    metrics       JSONB NOT NULL
);
CREATE TABLE scaling_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
