use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use perf_core::Id;
use rusqlite::{Connection, OptionalExtension, params};

use super::migrations::{self, Migration};
use super::{
    LoadTestRecord, MetricsSnapshot, Page, PageRequest, ProfileData, ProfileRecord, Retained,
    ScalingEventRecord, Store, TestFilter, TestStatus, into_page,
};
use crate::{Error, Result};

const BACKEND: &str = "sqlite";

fn store_error(e: impl std::fmt::Display) -> Error {
    Error::Store {
        backend: BACKEND,
        message: e.to_string(),
    }
}

/// The embedded store: one SQLite file, WAL journal, `synchronous=FULL`.
///
/// Calls run on tokio's blocking pool; one connection serializes writers, which
/// is what SQLite does anyway.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates.
    pub async fn open(path: &Path) -> Result<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(store_error)?
    }

    fn open_blocking(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                store_error(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| store_error(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(store_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(store_error)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(store_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(store_error)?;
        migrate(&mut conn, migrations::SQLITE)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| store_error("connection lock poisoned by an earlier panic"))?;
            f(&mut guard)
        })
        .await
        .map_err(store_error)?
    }
}

fn migrate(conn: &mut Connection, list: &[Migration]) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY NOT NULL,
             name TEXT NOT NULL,
             applied_at_ms INTEGER NOT NULL
         )",
    )
    .map_err(store_error)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(store_error)?;
    let known = migrations::latest(list);
    if current > known {
        return Err(Error::SchemaTooNew {
            backend: BACKEND,
            found: current,
            known,
        });
    }
    for m in list.iter().filter(|m| m.version > current) {
        let tx = conn.transaction().map_err(store_error)?;
        tx.execute_batch(m.sql)
            .map_err(|e| store_error(format!("migration {} ({}): {e}", m.version, m.name)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_ms()],
        )
        .map_err(store_error)?;
        tx.commit().map_err(store_error)?;
        tracing::info!(
            backend = BACKEND,
            version = m.version,
            name = m.name,
            "migration applied"
        );
    }
    Ok(())
}

fn now_ms() -> i64 {
    i64::try_from(perf_core::unix_millis()).unwrap_or(i64::MAX)
}

fn row_to_snapshot(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, Option<String>, i64, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn decode(raw: (String, String, Option<String>, i64, String)) -> Result<MetricsSnapshot> {
    let (id, label, note, created_at_ms, sample) = raw;
    Ok(MetricsSnapshot {
        id: id.parse().map_err(store_error)?,
        label,
        note,
        created_at_ms: u64::try_from(created_at_ms).unwrap_or(0),
        sample: serde_json::from_str(&sample)
            .map_err(|e| store_error(format!("snapshot {id} holds unreadable JSON: {e}")))?,
    })
}

type ProfileRow = (String, String, i64, i64, Option<u32>, i64, i64);

fn profile_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ProfileRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn decode_profile(raw: ProfileRow) -> Result<ProfileRecord> {
    let (id, kind, started, duration, frequency_hz, pprof, svg) = raw;
    Ok(ProfileRecord {
        id: id.parse().map_err(store_error)?,
        kind,
        started_at_ms: u64::try_from(started).unwrap_or(0),
        duration_ms: u64::try_from(duration).unwrap_or(0),
        frequency_hz,
        pprof_bytes: u64::try_from(pprof).unwrap_or(0),
        flamegraph_svg_bytes: u64::try_from(svg).unwrap_or(0),
    })
}

const TEST_COLUMNS: &str = "id, scenario_name, targets, status, created_at_ms, started_at_ms, finished_at_ms, scenario, progress, report, error";

type TestRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn test_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TestRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
    ))
}

fn decode_test(raw: TestRow) -> Result<LoadTestRecord> {
    let (
        id,
        scenario_name,
        targets,
        status,
        created,
        started,
        finished,
        scenario,
        progress,
        report,
        error,
    ) = raw;
    let json = |what: &str, text: &str| -> Result<serde_json::Value> {
        serde_json::from_str(text)
            .map_err(|e| store_error(format!("load test {id}: unreadable {what}: {e}")))
    };
    let ms = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(LoadTestRecord {
        id: id.parse().map_err(store_error)?,
        scenario_name,
        targets: serde_json::from_value(json("targets", &targets)?).map_err(store_error)?,
        status: status.parse().map_err(store_error)?,
        created_at_ms: ms(created),
        started_at_ms: started.map(ms),
        finished_at_ms: finished.map(ms),
        scenario: json("scenario", &scenario)?,
        progress: progress
            .map(|p| {
                json("progress", &p).and_then(|v| serde_json::from_value(v).map_err(store_error))
            })
            .transpose()?,
        report: report
            .map(|r| {
                json("report", &r).and_then(|v| serde_json::from_value(v).map_err(store_error))
            })
            .transpose()?,
        error,
    })
}

fn opt_ms(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(store_error)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<()> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(store_error))
            .await
    }

    async fn schema_version(&self) -> Result<i64> {
        self.with(|c| {
            c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(store_error)
        })
        .await
    }

    async fn insert_snapshot(&self, snapshot: &MetricsSnapshot) -> Result<()> {
        let sample = serde_json::to_string(&snapshot.sample).map_err(store_error)?;
        let snapshot = snapshot.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO metrics_snapshots (id, label, note, created_at_ms, sample) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    snapshot.id.to_string(),
                    snapshot.label,
                    snapshot.note,
                    i64::try_from(snapshot.created_at_ms).unwrap_or(i64::MAX),
                    sample
                ],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn get_snapshot(&self, id: Id) -> Result<Option<MetricsSnapshot>> {
        let raw = self
            .with(move |c| {
                c.query_row(
                    "SELECT id, label, note, created_at_ms, sample FROM metrics_snapshots WHERE id = ?1",
                    params![id.to_string()],
                    row_to_snapshot,
                )
                .optional()
                .map_err(store_error)
            })
            .await?;
        raw.map(decode).transpose()
    }

    async fn list_snapshots(&self, page: PageRequest) -> Result<Page<MetricsSnapshot>> {
        let rows = self
            .with(move |c| {
                // Ids are UUID v7 in lowercase hex: text order is creation order.
                let before = page
                    .before
                    .map_or_else(|| "g".to_owned(), |id| id.to_string());
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, label, note, created_at_ms, sample FROM metrics_snapshots
                         WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                    )
                    .map_err(store_error)?;
                let rows = stmt
                    .query_map(params![before, i64::from(page.limit) + 1], row_to_snapshot)
                    .map_err(store_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(store_error)?;
                Ok(rows)
            })
            .await?;
        let items = rows.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, |s| s.id))
    }

    async fn delete_snapshot(&self, id: Id) -> Result<bool> {
        self.with(move |c| {
            c.execute(
                "DELETE FROM metrics_snapshots WHERE id = ?1",
                params![id.to_string()],
            )
            .map(|n| n > 0)
            .map_err(store_error)
        })
        .await
    }

    async fn insert_load_test(&self, test: &LoadTestRecord, owner: &str) -> Result<()> {
        let owner = owner.to_owned();
        let values = (
            test.id.to_string(),
            test.scenario_name.clone(),
            to_json(&test.targets)?,
            test.status.as_str(),
            i64::try_from(test.created_at_ms).unwrap_or(i64::MAX),
            opt_ms(test.started_at_ms),
            opt_ms(test.finished_at_ms),
            to_json(&test.scenario)?,
            test.progress.as_ref().map(to_json).transpose()?,
            test.report.as_ref().map(to_json).transpose()?,
            test.error.clone(),
        );
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO load_tests ({TEST_COLUMNS}, owner, heartbeat_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                params![values.0, values.1, values.2, values.3, values.4, values.5, values.6, values.7, values.8, values.9, values.10, owner, now_ms()],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn save_load_test(&self, test: &LoadTestRecord) -> Result<()> {
        let id = test.id.to_string();
        let status = test.status.as_str();
        let (started, finished) = (opt_ms(test.started_at_ms), opt_ms(test.finished_at_ms));
        let progress = test.progress.as_ref().map(to_json).transpose()?;
        let report = test.report.as_ref().map(to_json).transpose()?;
        let error = test.error.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE load_tests SET status = ?2, started_at_ms = ?3, finished_at_ms = ?4, progress = ?5, report = ?6, error = ?7 WHERE id = ?1",
                params![id, status, started, finished, progress, report, error],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn get_load_test(&self, id: Id) -> Result<Option<LoadTestRecord>> {
        let raw = self
            .with(move |c| {
                c.query_row(
                    &format!("SELECT {TEST_COLUMNS} FROM load_tests WHERE id = ?1"),
                    params![id.to_string()],
                    test_row,
                )
                .optional()
                .map_err(store_error)
            })
            .await?;
        raw.map(decode_test).transpose()
    }

    async fn list_load_tests(
        &self,
        filter: &TestFilter,
        page: PageRequest,
    ) -> Result<Page<LoadTestRecord>> {
        let filter = filter.clone();
        let rows = self
            .with(move |c| {
                let before = page.before.map_or_else(|| "g".to_owned(), |id| id.to_string());
                let target = filter.target.map(|t| format!("%{}%", serde_json::to_string(&t).unwrap_or_default()));
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, scenario_name, targets, status, created_at_ms, started_at_ms, finished_at_ms, scenario, progress, NULL, error
                         FROM load_tests
                         WHERE id < ?1 AND (?2 IS NULL OR scenario_name = ?2) AND (?3 IS NULL OR targets LIKE ?3) AND (?4 IS NULL OR status = ?4)
                         ORDER BY id DESC LIMIT ?5",
                    )
                    .map_err(store_error)?;
                let rows = stmt
                    .query_map(
                        params![before, filter.scenario, target, filter.status.map(TestStatus::as_str), i64::from(page.limit) + 1],
                        test_row,
                    )
                    .map_err(store_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(store_error)?;
                Ok(rows)
            })
            .await?;
        let items = rows
            .into_iter()
            .map(decode_test)
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, |t| t.id))
    }

    async fn interrupt_unfinished(&self, owner: Option<&str>, stale_after_ms: u64) -> Result<u64> {
        // One file, one host: the local clock is the store's clock.
        let owner = owner.map(str::to_owned);
        let stale = now_ms().saturating_sub(i64::try_from(stale_after_ms).unwrap_or(i64::MAX));
        self.with(move |c| {
            c.execute(
                "UPDATE load_tests SET status = 'interrupted', finished_at_ms = ?1
                 WHERE status IN ('queued', 'running')
                   AND (owner IS NULL OR owner = ?2 OR COALESCE(heartbeat_ms, 0) < ?3)",
                params![now_ms(), owner, stale],
            )
            .map(|n| n as u64)
            .map_err(store_error)
        })
        .await
    }

    async fn heartbeat(&self, owner: &str, ids: &[Id]) -> Result<Vec<Id>> {
        let owner = owner.to_owned();
        let ids: Vec<String> = ids.iter().map(Id::to_string).collect();
        let cancel: Vec<String> = self
            .with(move |c| {
                let now = now_ms();
                let mut cancel = Vec::new();
                let mut update = c
                    .prepare_cached(
                        "UPDATE load_tests SET heartbeat_ms = ?1
                         WHERE owner = ?2 AND id = ?3 AND status IN ('queued', 'running')
                         RETURNING cancel_requested",
                    )
                    .map_err(store_error)?;
                for id in ids {
                    let requested: Option<i64> = update
                        .query_row(params![now, owner, id], |r| r.get(0))
                        .optional()
                        .map_err(store_error)?;
                    if requested.unwrap_or(0) != 0 {
                        cancel.push(id);
                    }
                }
                Ok(cancel)
            })
            .await?;
        cancel
            .iter()
            .map(|id| id.parse().map_err(store_error))
            .collect()
    }

    async fn request_cancel(&self, id: Id) -> Result<bool> {
        self.with(move |c| {
            c.execute(
                "UPDATE load_tests SET cancel_requested = 1 WHERE id = ?1 AND status IN ('queued', 'running')",
                params![id.to_string()],
            )
            .map(|n| n > 0)
            .map_err(store_error)
        })
        .await
    }

    async fn prune(&self, kind: Retained, keep: u64, older_than_ms: u64) -> Result<u64> {
        let (table, at, finished) = kind.table();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let before = i64::try_from(older_than_ms).unwrap_or(i64::MAX);
        let sql = format!(
            "DELETE FROM {table} WHERE {finished} AND ({at} < ?1 OR id IN
               (SELECT id FROM {table} WHERE {finished} ORDER BY id DESC LIMIT -1 OFFSET ?2))"
        );
        self.with(move |c| {
            c.execute(&sql, params![before, keep])
                .map(|n| n as u64)
                .map_err(store_error)
        })
        .await
    }

    async fn delete_profile(&self, id: Id) -> Result<bool> {
        self.with(move |c| {
            c.execute(
                "DELETE FROM profiles WHERE id = ?1",
                params![id.to_string()],
            )
            .map(|n| n > 0)
            .map_err(store_error)
        })
        .await
    }

    async fn insert_profile(&self, profile: &ProfileData) -> Result<()> {
        let p = profile.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO profiles (id, kind, started_at_ms, duration_ms, frequency_hz, pprof, flamegraph_svg)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    p.record.id.to_string(),
                    p.record.kind,
                    i64::try_from(p.record.started_at_ms).unwrap_or(i64::MAX),
                    i64::try_from(p.record.duration_ms).unwrap_or(i64::MAX),
                    p.record.frequency_hz,
                    p.pprof,
                    p.flamegraph_svg
                ],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn list_profiles(&self, page: PageRequest) -> Result<Page<ProfileRecord>> {
        let rows = self
            .with(move |c| {
                let before = page
                    .before
                    .map_or_else(|| "g".to_owned(), |id| id.to_string());
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, kind, started_at_ms, duration_ms, frequency_hz, length(pprof), length(flamegraph_svg)
                         FROM profiles WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                    )
                    .map_err(store_error)?;
                let rows = stmt
                    .query_map(params![before, i64::from(page.limit) + 1], profile_row)
                    .map_err(store_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(store_error)?;
                Ok(rows)
            })
            .await?;
        let items = rows
            .into_iter()
            .map(decode_profile)
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, |p| p.id))
    }

    async fn get_profile(&self, id: Id) -> Result<Option<ProfileData>> {
        let found = self
            .with(move |c| {
                c.query_row(
                    "SELECT id, kind, started_at_ms, duration_ms, frequency_hz, length(pprof), length(flamegraph_svg), pprof, flamegraph_svg
                     FROM profiles WHERE id = ?1",
                    params![id.to_string()],
                    |row| {
                        Ok((
                            profile_row(row)?,
                            row.get::<_, Vec<u8>>(7)?,
                            row.get::<_, Vec<u8>>(8)?,
                        ))
                    },
                )
                .optional()
                .map_err(store_error)
            })
            .await?;
        found
            .map(|(raw, pprof, flamegraph_svg)| {
                Ok(ProfileData {
                    record: decode_profile(raw)?,
                    pprof,
                    flamegraph_svg,
                })
            })
            .transpose()
    }

    async fn insert_scaling_event(&self, e: &ScalingEventRecord) -> Result<()> {
        let metrics = serde_json::to_string(&e.event.metrics).map_err(store_error)?;
        let e = e.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO scaling_events (id, at_ms, kind, from_replicas, to_replicas, reason, metrics)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.id.to_string(),
                    i64::try_from(e.event.at_ms).unwrap_or(i64::MAX),
                    e.event.kind,
                    e.event.from,
                    e.event.to,
                    e.event.reason,
                    metrics
                ],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn list_scaling_events(&self, page: PageRequest) -> Result<Page<ScalingEventRecord>> {
        type Row = (String, i64, String, u32, u32, String, String);
        let rows: Vec<Row> = self
            .with(move |c| {
                let before = page
                    .before
                    .map_or_else(|| "g".to_owned(), |id| id.to_string());
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, at_ms, kind, from_replicas, to_replicas, reason, metrics
                         FROM scaling_events WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                    )
                    .map_err(store_error)?;
                let rows = stmt
                    .query_map(params![before, i64::from(page.limit) + 1], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    })
                    .map_err(store_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(store_error)?;
                Ok(rows)
            })
            .await?;
        let items = rows
            .into_iter()
            .map(|(id, at, kind, from, to, reason, metrics)| {
                Ok(ScalingEventRecord {
                    id: id.parse().map_err(store_error)?,
                    event: perf_scaling::ScalingEvent {
                        at_ms: u64::try_from(at).unwrap_or(0),
                        kind,
                        from,
                        to,
                        reason,
                        metrics: serde_json::from_str(&metrics).map_err(store_error)?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, |e| e.id))
    }

    async fn put_scaling_state(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO scaling_state (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn get_scaling_state(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT value FROM scaling_state WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(store_error)
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        self.with(|c| {
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .map_err(store_error)
        })
        .await
    }
}
