CREATE TABLE metrics_snapshots (
    id            UUID PRIMARY KEY,
    label         TEXT NOT NULL,
    note          TEXT,
    created_at_ms BIGINT NOT NULL,
    sample        JSONB NOT NULL
);
