CREATE TABLE load_tests (
    id             TEXT PRIMARY KEY NOT NULL,
    scenario_name  TEXT NOT NULL,
    targets        TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    started_at_ms  INTEGER,
    finished_at_ms INTEGER,
    scenario       TEXT NOT NULL,
    progress       TEXT,
    report         TEXT,
    error          TEXT
);
CREATE INDEX load_tests_status ON load_tests (status);
