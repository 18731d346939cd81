CREATE TABLE load_tests (
    id             UUID PRIMARY KEY,
    scenario_name  TEXT NOT NULL,
    targets        TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    started_at_ms  BIGINT,
    finished_at_ms BIGINT,
    scenario       JSONB NOT NULL,
    progress       JSONB,
    report         JSONB,
    error          TEXT
);
CREATE INDEX load_tests_status ON load_tests (status);
