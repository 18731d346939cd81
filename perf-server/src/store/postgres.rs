use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use perf_core::Id;
use perf_db::{InstrumentedPool, PoolSettings, PooledConnection};
use tokio_postgres::types::ToSql;

use super::codec::{
    self, PROFILE_COLUMNS, ProfileRow, SCALING_EVENT_COLUMNS, SNAPSHOT_COLUMNS, ScalingEventRow,
    SnapshotRow, TEST_COLUMNS, TestRow,
};
use super::migrations::{self, Migration, Schema};
use super::{
    LoadTestRecord, MetricsSnapshot, Page, PageRequest, ProfileData, ProfileRecord, Retained,
    ScalingEventRecord, Store, StorePool, TestFilter, TestStatus, into_page,
};
use crate::{Error, Result};

const BACKEND: &str = "postgres";
/// Serializes migrations when several perf-server instances start at once.
const MIGRATION_LOCK: i64 = 0x7065_7266_5f6d_6967; // "perf_mig"

fn store_error(e: impl std::fmt::Display) -> Error {
    codec::store_error(BACKEND, e)
}

/// The shared store: PostgreSQL through perf-db's instrumented deadpool
/// pool, with timeouts on waiting, connecting and recycling (deadpool has
/// none by default); its measurements feed the pool size advice.
#[derive(Clone)]
pub struct PostgresStore {
    pool: InstrumentedPool,
    max_connections: usize,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.observe())
            .finish()
    }
}

impl PostgresStore {
    /// Connects with a pool of `pool_size` connections and migrates.
    pub async fn open(url: &str, pool_size: usize) -> Result<Self> {
        tokio_postgres::Config::from_str(url).map_err(|e| {
            store_error(format!(
                "database_url is not a valid connection string: {e}"
            ))
        })?;
        let settings = PoolSettings::builder()
            .max_size(pool_size)
            .wait_timeout(Duration::from_secs(5))
            .create_timeout(Duration::from_secs(5))
            .build()
            .map_err(store_error)?;
        let pool = InstrumentedPool::new(url, &settings).map_err(store_error)?;
        let mut store = Self {
            pool,
            max_connections: 100,
        };
        store.migrate(migrations::POSTGRES).await?;
        let max: String = store
            .client()
            .await?
            .query_one("SHOW max_connections", &[])
            .await
            .map_err(store_error)?
            .get(0);
        store.max_connections = max.parse().unwrap_or(100);
        Ok(store)
    }

    async fn client(&self) -> Result<PooledConnection> {
        self.pool
            .get()
            .await
            .map_err(|e| store_error(format!("no connection: {e}")))
    }

    /// Migrates in one transaction under an advisory lock, so that
    /// instances starting together apply each step once.
    async fn migrate(&self, list: &[Migration]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(store_error)?;
        let mut schema = PostgresSchema(tx);
        migrations::run(BACKEND, &mut schema, list).await?;
        schema.0.commit().await.map_err(store_error)
    }

    /// Runs one statement on a pooled connection; returns the rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.client()
            .await?
            .execute(sql, params)
            .await
            .map_err(store_error)
    }

    /// Reads at most one row.
    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>> {
        self.client()
            .await?
            .query_opt(sql, params)
            .await
            .map_err(store_error)
    }

    /// Reads and decodes the row of `sql` (which takes the id as `$1`), if
    /// there is one.
    async fn by_id<T>(
        &self,
        sql: &str,
        id: Id,
        decode: impl FnOnce(&tokio_postgres::Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.query_opt(sql, &[&id.as_uuid()])
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// Deletes row `id` of `table`; whether there was one.
    async fn delete_by_id(&self, table: &'static str, id: Id) -> Result<bool> {
        let n = self
            .execute(
                &format!("DELETE FROM {table} WHERE id = $1"),
                &[&id.as_uuid()],
            )
            .await?;
        Ok(n > 0)
    }

    /// Reads the rows of `sql` (whose last two parameters are the page's
    /// cursor, NULL for the first page, and size) into a page, newest first.
    async fn page<T>(
        &self,
        sql: &str,
        filters: &[&(dyn ToSql + Sync)],
        page: PageRequest,
        decode: impl Fn(&tokio_postgres::Row) -> Result<T>,
        id: fn(&T) -> Id,
    ) -> Result<Page<T>> {
        let limit = i64::from(page.limit) + 1;
        let before = page.before.map(|b| b.as_uuid());
        let mut params = filters.to_vec();
        params.push(&before);
        params.push(&limit);
        let rows = self
            .client()
            .await?
            .query(sql, &params)
            .await
            .map_err(store_error)?;
        let items = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, id))
    }
}

/// The migration driver's view of the database: every step in the one
/// transaction that holds the advisory lock.
struct PostgresSchema<'a>(tokio_postgres::Transaction<'a>);

impl Schema for PostgresSchema<'_> {
    async fn current_version(&mut self) -> Result<i64> {
        self.0
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version BIGINT PRIMARY KEY,
                     name TEXT NOT NULL,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(store_error)?;
        Ok(self
            .0
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await
            .map_err(store_error)?
            .get(0))
    }

    async fn apply(&mut self, step: Migration) -> Result<()> {
        self.0.batch_execute(step.sql).await.map_err(store_error)?;
        self.0
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&step.version, &step.name],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T> {
    row.try_get(i).map_err(store_error)
}

fn snapshot_row(row: &tokio_postgres::Row) -> Result<SnapshotRow> {
    Ok(SnapshotRow {
        id: Id::from(get::<uuid::Uuid>(row, 0)?),
        label: get(row, 1)?,
        note: get(row, 2)?,
        created_at_ms: get(row, 3)?,
        sample: get(row, 4)?,
    })
}

fn test_row(row: &tokio_postgres::Row) -> Result<TestRow> {
    Ok(TestRow {
        id: Id::from(get::<uuid::Uuid>(row, 0)?),
        scenario_name: get(row, 1)?,
        targets: get(row, 2)?,
        status: get(row, 3)?,
        created_at_ms: get(row, 4)?,
        started_at_ms: get(row, 5)?,
        finished_at_ms: get(row, 6)?,
        scenario: get(row, 7)?,
        progress: get(row, 8)?,
        report: get(row, 9)?,
        error: get(row, 10)?,
    })
}

/// [`PROFILE_COLUMNS`] and the two data sizes.
fn profile_columns() -> String {
    format!("{PROFILE_COLUMNS}, length(pprof)::BIGINT, length(flamegraph_svg)::BIGINT")
}

fn profile_row(row: &tokio_postgres::Row) -> Result<ProfileRow> {
    Ok(ProfileRow {
        id: Id::from(get::<uuid::Uuid>(row, 0)?),
        kind: get(row, 1)?,
        started_at_ms: get(row, 2)?,
        duration_ms: get(row, 3)?,
        frequency_hz: get::<Option<i32>>(row, 4)?.map(i64::from),
        pprof_bytes: get(row, 5)?,
        flamegraph_svg_bytes: get(row, 6)?,
    })
}

fn scaling_event_row(row: &tokio_postgres::Row) -> Result<ScalingEventRow> {
    Ok(ScalingEventRow {
        id: Id::from(get::<uuid::Uuid>(row, 0)?),
        at_ms: get(row, 1)?,
        kind: get(row, 2)?,
        from_replicas: get(row, 3)?,
        to_replicas: get(row, 4)?,
        reason: get(row, 5)?,
        metrics: get(row, 6)?,
    })
}

/// Now in milliseconds by the database's clock: heartbeats written and
/// judged by one clock, whatever the instances' clocks say.
const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> Result<()> {
        self.client()
            .await?
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    async fn schema_version(&self) -> Result<i64> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await
            .map_err(store_error)?
            .get(0))
    }

    async fn insert_snapshot(&self, snapshot: &MetricsSnapshot) -> Result<()> {
        let row = SnapshotRow::encode(BACKEND, snapshot)?;
        self.execute(
            &format!(
                "INSERT INTO metrics_snapshots ({SNAPSHOT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
            ),
            &[
                &row.id.as_uuid(),
                &row.label,
                &row.note,
                &row.created_at_ms,
                &row.sample,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_snapshot(&self, id: Id) -> Result<Option<MetricsSnapshot>> {
        self.by_id(
            &format!("SELECT {SNAPSHOT_COLUMNS} FROM metrics_snapshots WHERE id = $1"),
            id,
            |r| snapshot_row(r)?.decode(BACKEND),
        )
        .await
    }

    async fn list_snapshots(&self, page: PageRequest) -> Result<Page<MetricsSnapshot>> {
        self.page(
            &format!(
                "SELECT {SNAPSHOT_COLUMNS} FROM metrics_snapshots
                 WHERE ($1::UUID IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
            ),
            &[],
            page,
            |r| snapshot_row(r)?.decode(BACKEND),
            |s| s.id,
        )
        .await
    }

    async fn delete_snapshot(&self, id: Id) -> Result<bool> {
        self.delete_by_id("metrics_snapshots", id).await
    }

    async fn insert_load_test(&self, test: &LoadTestRecord, owner: &str) -> Result<()> {
        let row = TestRow::encode(BACKEND, test)?;
        self.execute(
                &format!("INSERT INTO load_tests ({TEST_COLUMNS}, owner, heartbeat_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, {DB_NOW_MS})"),
                &[
                    &row.id.as_uuid(),
                    &row.scenario_name,
                    &row.targets,
                    &row.status,
                    &row.created_at_ms,
                    &row.started_at_ms,
                    &row.finished_at_ms,
                    &row.scenario,
                    &row.progress,
                    &row.report,
                    &row.error,
                    &owner,
                ],
            )
            .await?;
        Ok(())
    }

    async fn save_load_test(&self, test: &LoadTestRecord) -> Result<()> {
        let row = TestRow::encode(BACKEND, test)?;
        self.execute(
                "UPDATE load_tests SET status = $2, started_at_ms = $3, finished_at_ms = $4, progress = $5, report = $6, error = $7 WHERE id = $1",
                &[
                    &row.id.as_uuid(),
                    &row.status,
                    &row.started_at_ms,
                    &row.finished_at_ms,
                    &row.progress,
                    &row.report,
                    &row.error,
                ],
            )
            .await?;
        Ok(())
    }

    async fn get_load_test(&self, id: Id) -> Result<Option<LoadTestRecord>> {
        self.by_id(
            &format!("SELECT {TEST_COLUMNS} FROM load_tests WHERE id = $1"),
            id,
            |r| test_row(r)?.decode(BACKEND),
        )
        .await
    }

    async fn list_load_tests(
        &self,
        filter: &TestFilter,
        page: PageRequest,
    ) -> Result<Page<LoadTestRecord>> {
        let target = codec::target_pattern(filter);
        let status = filter.status.map(TestStatus::as_str);
        self.page(
            &format!(
                "SELECT {} FROM load_tests
                 WHERE ($1::TEXT IS NULL OR scenario_name = $1) AND ($2::TEXT IS NULL OR targets LIKE $2)
                   AND ($3::TEXT IS NULL OR status = $3) AND ($4::UUID IS NULL OR id < $4)
                 ORDER BY id DESC LIMIT $5",
                codec::test_summary_columns("NULL::JSONB")
            ),
            &[&filter.scenario, &target, &status],
            page,
            |r| test_row(r)?.decode(BACKEND),
            |t| t.id,
        )
        .await
    }

    async fn interrupt_unfinished(&self, owner: Option<&str>, stale_after_ms: u64) -> Result<u64> {
        let now = codec::sql_ms(perf_core::unix_millis());
        let stale = codec::sql_ms(stale_after_ms);
        self.execute(
                &format!(
                    "UPDATE load_tests SET status = 'interrupted', finished_at_ms = $1
                     WHERE status IN ('queued', 'running')
                       AND (owner IS NULL OR owner = $2 OR COALESCE(heartbeat_ms, 0) < {DB_NOW_MS} - $3)"
                ),
                &[&now, &owner, &stale],
            )
            .await
    }

    async fn heartbeat(&self, owner: &str, ids: &[Id]) -> Result<Vec<Id>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<uuid::Uuid> = ids.iter().map(Id::as_uuid).collect();
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "UPDATE load_tests SET heartbeat_ms = {DB_NOW_MS}
                     WHERE owner = $1 AND id = ANY($2) AND status IN ('queued', 'running')
                     RETURNING id, cancel_requested"
                ),
                &[&owner, &ids],
            )
            .await
            .map_err(store_error)?;
        Ok(rows
            .iter()
            .filter(|r| r.try_get::<_, bool>(1).unwrap_or(false))
            .filter_map(|r| r.try_get::<_, uuid::Uuid>(0).ok().map(Id::from))
            .collect())
    }

    async fn request_cancel(&self, id: Id) -> Result<bool> {
        let n = self
            .execute(
                "UPDATE load_tests SET cancel_requested = TRUE WHERE id = $1 AND status IN ('queued', 'running')",
                &[&id.as_uuid()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn prune(&self, kind: Retained, keep: u64, older_than_ms: u64) -> Result<u64> {
        let (table, at, finished) = kind.table();
        let keep = codec::sql_ms(keep);
        let before = codec::sql_ms(older_than_ms);
        self.execute(
            &format!(
                "DELETE FROM {table} WHERE {finished} AND ({at} < $1 OR id IN
                       (SELECT id FROM {table} WHERE {finished} ORDER BY id DESC OFFSET $2))"
            ),
            &[&before, &keep],
        )
        .await
    }

    async fn delete_profile(&self, id: Id) -> Result<bool> {
        self.delete_by_id("profiles", id).await
    }

    async fn insert_profile(&self, profile: &ProfileData) -> Result<()> {
        let row = ProfileRow::encode(&profile.record);
        let frequency = row
            .frequency_hz
            .map(|f| i32::try_from(f).unwrap_or(i32::MAX));
        self.execute(
                &format!("INSERT INTO profiles ({PROFILE_COLUMNS}, pprof, flamegraph_svg) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &row.id.as_uuid(),
                    &row.kind,
                    &row.started_at_ms,
                    &row.duration_ms,
                    &frequency,
                    &profile.pprof,
                    &profile.flamegraph_svg,
                ],
            )
            .await?;
        Ok(())
    }

    async fn list_profiles(&self, page: PageRequest) -> Result<Page<ProfileRecord>> {
        self.page(
            &format!(
                "SELECT {} FROM profiles WHERE ($1::UUID IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
                profile_columns()
            ),
            &[],
            page,
            |r| profile_row(r)?.decode(BACKEND),
            |p| p.id,
        )
        .await
    }

    async fn get_profile(&self, id: Id) -> Result<Option<ProfileData>> {
        self.by_id(
            &format!(
                "SELECT {}, pprof, flamegraph_svg FROM profiles WHERE id = $1",
                profile_columns()
            ),
            id,
            |row| {
                Ok(ProfileData {
                    record: profile_row(row)?.decode(BACKEND)?,
                    pprof: get(row, 7)?,
                    flamegraph_svg: get(row, 8)?,
                })
            },
        )
        .await
    }

    async fn insert_scaling_event(&self, e: &ScalingEventRecord) -> Result<()> {
        let row = ScalingEventRow::encode(BACKEND, e)?;
        self.execute(
                &format!("INSERT INTO scaling_events ({SCALING_EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &row.id.as_uuid(),
                    &row.at_ms,
                    &row.kind,
                    &row.from_replicas,
                    &row.to_replicas,
                    &row.reason,
                    &row.metrics,
                ],
            )
            .await?;
        Ok(())
    }

    async fn list_scaling_events(&self, page: PageRequest) -> Result<Page<ScalingEventRecord>> {
        self.page(
            &format!(
                "SELECT {SCALING_EVENT_COLUMNS} FROM scaling_events
                 WHERE ($1::UUID IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
            ),
            &[],
            page,
            |r| scaling_event_row(r)?.decode(BACKEND),
            |e| e.id,
        )
        .await
    }

    async fn put_scaling_state(&self, key: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO scaling_state (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await?;
        Ok(())
    }

    async fn get_scaling_state(&self, key: &str) -> Result<Option<String>> {
        let row = self
            .query_opt("SELECT value FROM scaling_state WHERE key = $1", &[&key])
            .await?;
        row.map(|r| r.try_get(0).map_err(store_error)).transpose()
    }

    async fn close(&self) -> Result<()> {
        self.pool.close();
        Ok(())
    }

    fn connection_pool(&self) -> Option<StorePool> {
        Some(StorePool {
            observation: self.pool.observe(),
            latencies: self.pool.latencies(),
            server_max_connections: self.max_connections,
        })
    }
}
