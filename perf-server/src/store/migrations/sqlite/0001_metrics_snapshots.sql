CREATE TABLE metrics_snapshots (
    id            TEXT PRIMARY KEY NOT NULL,
    label         TEXT NOT NULL,
    note          TEXT,
    created_at_ms INTEGER NOT NULL,
    sample        TEXT NOT NULL
);
