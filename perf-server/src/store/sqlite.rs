use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use perf_core::Id;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{
    self, PROFILE_COLUMNS, ProfileRow, SCALING_EVENT_COLUMNS, SNAPSHOT_COLUMNS, ScalingEventRow,
    SnapshotRow, TEST_COLUMNS, TestRow,
};
use super::migrations::{self, Migration, Schema};
use super::{
    LoadTestRecord, MetricsSnapshot, Page, PageRequest, ProfileData, ProfileRecord, Retained,
    ScalingEventRecord, Store, TestFilter, TestStatus, into_page,
};
use crate::{Error, Result};

const BACKEND: &str = "sqlite";

fn store_error(e: impl std::fmt::Display) -> Error {
    codec::store_error(BACKEND, e)
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
        let store = tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(store_error)??;
        migrations::run(BACKEND, &mut SqliteSchema(&store), migrations::SQLITE).await?;
        Ok(store)
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
        let conn = Connection::open(path)
            .map_err(|e| store_error(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(store_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(store_error)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(store_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(store_error)?;
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

    /// Reads the row of `sql` (which takes the id as `?1`), if there is one.
    async fn by_id<R: Send + 'static>(
        &self,
        sql: String,
        id: Id,
        read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<R>,
    ) -> Result<Option<R>> {
        self.with(move |c| {
            c.query_row(&sql, params![id.to_string()], read)
                .optional()
                .map_err(store_error)
        })
        .await
    }

    /// Deletes row `id` of `table`; whether there was one.
    async fn delete_by_id(&self, table: &'static str, id: Id) -> Result<bool> {
        self.with(move |c| {
            c.execute(
                &format!("DELETE FROM {table} WHERE id = ?1"),
                params![id.to_string()],
            )
            .map(|n| n > 0)
            .map_err(store_error)
        })
        .await
    }

    /// Reads the rows of `sql` (whose last two parameters are the page's
    /// cursor and size) into a page, newest first.
    async fn page<T, R>(
        &self,
        sql: String,
        filters: Vec<rusqlite::types::Value>,
        page: PageRequest,
        read: fn(&rusqlite::Row<'_>) -> rusqlite::Result<R>,
        decode: fn(R) -> Result<T>,
        id: fn(&T) -> Id,
    ) -> Result<Page<T>>
    where
        R: Send + 'static,
    {
        let rows = self
            .with(move |c| {
                // Ids are UUID v7 in lowercase hex: text order is creation
                // order, and "g" sorts after every one of them.
                let before = page
                    .before
                    .map_or_else(|| "g".to_owned(), |id| id.to_string());
                let mut values = filters;
                values.push(before.into());
                values.push((i64::from(page.limit) + 1).into());
                let mut stmt = c.prepare_cached(&sql).map_err(store_error)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(values), read)
                    .map_err(store_error)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(store_error)?;
                Ok(rows)
            })
            .await?;
        let items = rows.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, id))
    }
}

/// The migration driver's view of the file: each step in its own transaction.
struct SqliteSchema<'a>(&'a SqliteStore);

impl Schema for SqliteSchema<'_> {
    async fn current_version(&mut self) -> Result<i64> {
        self.0
            .with(|c| {
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                         version INTEGER PRIMARY KEY NOT NULL,
                         name TEXT NOT NULL,
                         applied_at_ms INTEGER NOT NULL
                     )",
                )
                .map_err(store_error)?;
                c.query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    [],
                    |r| r.get(0),
                )
                .map_err(store_error)
            })
            .await
    }

    async fn apply(&mut self, step: Migration) -> Result<()> {
        self.0
            .with(move |c| {
                let tx = c.transaction().map_err(store_error)?;
                tx.execute_batch(step.sql).map_err(store_error)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
                    params![step.version, step.name, now_ms()],
                )
                .map_err(store_error)?;
                tx.commit().map_err(store_error)
            })
            .await
    }
}

fn now_ms() -> i64 {
    codec::sql_ms(perf_core::unix_millis())
}

/// An id as SQLite keeps it: lowercase text.
struct TextId(Id);

impl FromSql for TextId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map(Self)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A JSON column as SQLite keeps it: text.
struct JsonText(serde_json::Value);

impl FromSql for JsonText {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?)
            .map(Self)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

fn id_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Id> {
    Ok(row.get::<_, TextId>(i)?.0)
}

fn json_at(row: &rusqlite::Row<'_>, i: usize, what: &str) -> rusqlite::Result<serde_json::Value> {
    Ok(opt_json_at(row, i, what)?.unwrap_or(serde_json::Value::Null))
}

/// A nullable JSON column of a row of `what` (its id in column 0); text
/// that is not JSON is an error that names the row and the column.
fn opt_json_at(
    row: &rusqlite::Row<'_>,
    i: usize,
    what: &str,
) -> rusqlite::Result<Option<serde_json::Value>> {
    match row.get::<_, Option<JsonText>>(i) {
        Ok(value) => Ok(value.map(|j| j.0)),
        Err(rusqlite::Error::FromSqlConversionFailure(_, kind, e)) => {
            let column = row.as_ref().column_name(i).unwrap_or("?").to_owned();
            let id = row.get::<_, String>(0).unwrap_or_default();
            Err(rusqlite::Error::FromSqlConversionFailure(
                i,
                kind,
                Box::new(std::io::Error::other(format!(
                    "{what} {id}: column {column} holds unreadable JSON: {e}"
                ))),
            ))
        }
        Err(e) => Err(e),
    }
}

fn snapshot_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotRow> {
    Ok(SnapshotRow {
        id: id_at(row, 0)?,
        label: row.get(1)?,
        note: row.get(2)?,
        created_at_ms: row.get(3)?,
        sample: json_at(row, 4, "snapshot")?,
    })
}

fn test_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TestRow> {
    Ok(TestRow {
        id: id_at(row, 0)?,
        scenario_name: row.get(1)?,
        targets: row.get(2)?,
        status: row.get(3)?,
        created_at_ms: row.get(4)?,
        started_at_ms: row.get(5)?,
        finished_at_ms: row.get(6)?,
        scenario: json_at(row, 7, "load test")?,
        progress: opt_json_at(row, 8, "load test")?,
        report: opt_json_at(row, 9, "load test")?,
        error: row.get(10)?,
    })
}

/// [`PROFILE_COLUMNS`] and the two data sizes.
fn profile_columns() -> String {
    format!("{PROFILE_COLUMNS}, length(pprof), length(flamegraph_svg)")
}

fn profile_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ProfileRow> {
    Ok(ProfileRow {
        id: id_at(row, 0)?,
        kind: row.get(1)?,
        started_at_ms: row.get(2)?,
        duration_ms: row.get(3)?,
        frequency_hz: row.get(4)?,
        pprof_bytes: row.get(5)?,
        flamegraph_svg_bytes: row.get(6)?,
    })
}

fn scaling_event_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ScalingEventRow> {
    Ok(ScalingEventRow {
        id: id_at(row, 0)?,
        at_ms: row.get(1)?,
        kind: row.get(2)?,
        from_replicas: row.get(3)?,
        to_replicas: row.get(4)?,
        reason: row.get(5)?,
        metrics: json_at(row, 6, "scaling event")?,
    })
}

fn text(value: &serde_json::Value) -> String {
    value.to_string()
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
        let row = SnapshotRow::encode(BACKEND, snapshot)?;
        self.with(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO metrics_snapshots ({SNAPSHOT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                ),
                params![
                    row.id.to_string(),
                    row.label,
                    row.note,
                    row.created_at_ms,
                    text(&row.sample)
                ],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn get_snapshot(&self, id: Id) -> Result<Option<MetricsSnapshot>> {
        let row = self
            .by_id(
                format!("SELECT {SNAPSHOT_COLUMNS} FROM metrics_snapshots WHERE id = ?1"),
                id,
                snapshot_row,
            )
            .await?;
        row.map(|r| r.decode(BACKEND)).transpose()
    }

    async fn list_snapshots(&self, page: PageRequest) -> Result<Page<MetricsSnapshot>> {
        self.page(
            format!(
                "SELECT {SNAPSHOT_COLUMNS} FROM metrics_snapshots WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
            ),
            Vec::new(),
            page,
            snapshot_row,
            |r| r.decode(BACKEND),
            |s| s.id,
        )
        .await
    }

    async fn delete_snapshot(&self, id: Id) -> Result<bool> {
        self.delete_by_id("metrics_snapshots", id).await
    }

    async fn insert_load_test(&self, test: &LoadTestRecord, owner: &str) -> Result<()> {
        let owner = owner.to_owned();
        let row = TestRow::encode(BACKEND, test)?;
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO load_tests ({TEST_COLUMNS}, owner, heartbeat_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                params![
                    row.id.to_string(),
                    row.scenario_name,
                    row.targets,
                    row.status,
                    row.created_at_ms,
                    row.started_at_ms,
                    row.finished_at_ms,
                    text(&row.scenario),
                    row.progress.as_ref().map(text),
                    row.report.as_ref().map(text),
                    row.error,
                    owner,
                    now_ms()
                ],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn save_load_test(&self, test: &LoadTestRecord) -> Result<()> {
        let row = TestRow::encode(BACKEND, test)?;
        self.with(move |c| {
            c.execute(
                "UPDATE load_tests SET status = ?2, started_at_ms = ?3, finished_at_ms = ?4, progress = ?5, report = ?6, error = ?7 WHERE id = ?1",
                params![
                    row.id.to_string(),
                    row.status,
                    row.started_at_ms,
                    row.finished_at_ms,
                    row.progress.as_ref().map(text),
                    row.report.as_ref().map(text),
                    row.error
                ],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn get_load_test(&self, id: Id) -> Result<Option<LoadTestRecord>> {
        let row = self
            .by_id(
                format!("SELECT {TEST_COLUMNS} FROM load_tests WHERE id = ?1"),
                id,
                test_row,
            )
            .await?;
        row.map(|r| r.decode(BACKEND)).transpose()
    }

    async fn list_load_tests(
        &self,
        filter: &TestFilter,
        page: PageRequest,
    ) -> Result<Page<LoadTestRecord>> {
        use rusqlite::types::Value;
        let target = codec::target_pattern(filter);
        let filters: Vec<Value> = vec![
            filter.scenario.clone().map_or(Value::Null, Value::Text),
            target.map_or(Value::Null, Value::Text),
            filter
                .status
                .map(TestStatus::as_str)
                .map_or(Value::Null, |s| Value::Text(s.to_owned())),
        ];
        self.page(
            format!(
                "SELECT {} FROM load_tests
                 WHERE (?1 IS NULL OR scenario_name = ?1) AND (?2 IS NULL OR targets LIKE ?2) AND (?3 IS NULL OR status = ?3)
                   AND id < ?4
                 ORDER BY id DESC LIMIT ?5",
                codec::test_summary_columns("NULL")
            ),
            filters,
            page,
            test_row,
            |r| r.decode(BACKEND),
            |t| t.id,
        )
        .await
    }

    async fn interrupt_unfinished(&self, owner: Option<&str>, stale_after_ms: u64) -> Result<u64> {
        // One file, one host: the local clock is the store's clock.
        let owner = owner.map(str::to_owned);
        let stale = now_ms().saturating_sub(codec::sql_ms(stale_after_ms));
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
        let keep = codec::sql_ms(keep);
        let before = codec::sql_ms(older_than_ms);
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
        self.delete_by_id("profiles", id).await
    }

    async fn insert_profile(&self, profile: &ProfileData) -> Result<()> {
        let row = ProfileRow::encode(&profile.record);
        let (pprof, svg) = (profile.pprof.clone(), profile.flamegraph_svg.clone());
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO profiles ({PROFILE_COLUMNS}, pprof, flamegraph_svg) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    row.id.to_string(),
                    row.kind,
                    row.started_at_ms,
                    row.duration_ms,
                    row.frequency_hz,
                    pprof,
                    svg
                ],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn list_profiles(&self, page: PageRequest) -> Result<Page<ProfileRecord>> {
        self.page(
            format!(
                "SELECT {} FROM profiles WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                profile_columns()
            ),
            Vec::new(),
            page,
            profile_row,
            |r| r.decode(BACKEND),
            |p| p.id,
        )
        .await
    }

    async fn get_profile(&self, id: Id) -> Result<Option<ProfileData>> {
        let found = self
            .by_id(
                format!(
                    "SELECT {}, pprof, flamegraph_svg FROM profiles WHERE id = ?1",
                    profile_columns()
                ),
                id,
                |row| Ok((profile_row(row)?, row.get(7)?, row.get(8)?)),
            )
            .await?;
        found
            .map(|(row, pprof, flamegraph_svg)| {
                Ok(ProfileData {
                    record: row.decode(BACKEND)?,
                    pprof,
                    flamegraph_svg,
                })
            })
            .transpose()
    }

    async fn insert_scaling_event(&self, e: &ScalingEventRecord) -> Result<()> {
        let row = ScalingEventRow::encode(BACKEND, e)?;
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO scaling_events ({SCALING_EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    row.id.to_string(),
                    row.at_ms,
                    row.kind,
                    row.from_replicas,
                    row.to_replicas,
                    row.reason,
                    text(&row.metrics)
                ],
            )
            .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    async fn list_scaling_events(&self, page: PageRequest) -> Result<Page<ScalingEventRecord>> {
        self.page(
            format!(
                "SELECT {SCALING_EVENT_COLUMNS} FROM scaling_events WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
            ),
            Vec::new(),
            page,
            scaling_event_row,
            |r| r.decode(BACKEND),
            |e| e.id,
        )
        .await
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
