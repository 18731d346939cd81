-- Which instance runs a test, when it last said so, and whether another
-- instance asked for it to be cancelled (a shared store).
ALTER TABLE load_tests ADD COLUMN owner TEXT;
ALTER TABLE load_tests ADD COLUMN heartbeat_ms INTEGER;
ALTER TABLE load_tests ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX load_tests_created ON load_tests (created_at_ms);
CREATE INDEX profiles_started ON profiles (started_at_ms);
CREATE INDEX metrics_snapshots_created ON metrics_snapshots (created_at_ms);
