use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use perf_core::Id;
use perf_db::{InstrumentedPool, PoolSettings, PooledConnection};

use super::migrations::{self, Migration};
use super::{
    LoadTestRecord, MetricsSnapshot, Page, PageRequest, ProfileData, ProfileRecord, Retained,
    ScalingEventRecord, Store, StorePool, TestFilter, TestStatus, into_page,
};
use crate::{Error, Result};

const BACKEND: &str = "postgres";
/// Serializes migrations when several perf-server instances start at once.
const MIGRATION_LOCK: i64 = 0x7065_7266_5f6d_6967; // "perf_mig"

fn store_error(e: impl std::fmt::Display) -> Error {
    Error::Store {
        backend: BACKEND,
        message: e.to_string(),
    }
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

    async fn migrate(&self, list: &[Migration]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(store_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(store_error)?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await
            .map_err(store_error)?
            .get(0);
        let known = migrations::latest(list);
        if current > known {
            return Err(Error::SchemaTooNew {
                backend: BACKEND,
                found: current,
                known,
            });
        }
        for m in list.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql)
                .await
                .map_err(|e| store_error(format!("migration {} ({}): {e}", m.version, m.name)))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await
            .map_err(store_error)?;
            tracing::info!(
                backend = BACKEND,
                version = m.version,
                name = m.name,
                "migration applied"
            );
        }
        tx.commit().await.map_err(store_error)
    }
}

fn decode(row: &tokio_postgres::Row) -> Result<MetricsSnapshot> {
    let id: uuid::Uuid = row.try_get(0).map_err(store_error)?;
    let created: i64 = row.try_get(3).map_err(store_error)?;
    let sample: serde_json::Value = row.try_get(4).map_err(store_error)?;
    Ok(MetricsSnapshot {
        id: Id::from(id),
        label: row.try_get(1).map_err(store_error)?,
        note: row.try_get(2).map_err(store_error)?,
        created_at_ms: u64::try_from(created).unwrap_or(0),
        sample: serde_json::from_value(sample)
            .map_err(|e| store_error(format!("snapshot {id} holds unreadable JSON: {e}")))?,
    })
}

const TEST_COLUMNS: &str = "id, scenario_name, targets, status, created_at_ms, started_at_ms, finished_at_ms, scenario, progress, report, error";

fn decode_profile(row: &tokio_postgres::Row) -> Result<ProfileRecord> {
    let id: uuid::Uuid = row.try_get(0).map_err(store_error)?;
    let number = |i: usize| -> Result<u64> {
        let v: i64 = row.try_get(i).map_err(store_error)?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    let frequency: Option<i32> = row.try_get(4).map_err(store_error)?;
    Ok(ProfileRecord {
        id: Id::from(id),
        kind: row.try_get(1).map_err(store_error)?,
        started_at_ms: number(2)?,
        duration_ms: number(3)?,
        frequency_hz: frequency.and_then(|f| u32::try_from(f).ok()),
        pprof_bytes: number(5)?,
        flamegraph_svg_bytes: number(6)?,
    })
}

/// Now in milliseconds by the database's clock: heartbeats written and
/// judged by one clock, whatever the instances' clocks say.
const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

fn decode_test(row: &tokio_postgres::Row) -> Result<LoadTestRecord> {
    let id: uuid::Uuid = row.try_get(0).map_err(store_error)?;
    let ms = |v: i64| u64::try_from(v).unwrap_or(0);
    let targets: String = row.try_get(2).map_err(store_error)?;
    let status: String = row.try_get(3).map_err(store_error)?;
    let progress: Option<serde_json::Value> = row.try_get(8).map_err(store_error)?;
    let report: Option<serde_json::Value> = row.try_get(9).map_err(store_error)?;
    let unreadable = |what: &'static str| {
        move |e: serde_json::Error| store_error(format!("load test {id}: unreadable {what}: {e}"))
    };
    Ok(LoadTestRecord {
        id: Id::from(id),
        scenario_name: row.try_get(1).map_err(store_error)?,
        targets: serde_json::from_str(&targets).map_err(unreadable("targets"))?,
        status: status.parse().map_err(store_error)?,
        created_at_ms: ms(row.try_get(4).map_err(store_error)?),
        started_at_ms: row
            .try_get::<_, Option<i64>>(5)
            .map_err(store_error)?
            .map(ms),
        finished_at_ms: row
            .try_get::<_, Option<i64>>(6)
            .map_err(store_error)?
            .map(ms),
        scenario: row.try_get(7).map_err(store_error)?,
        progress: progress
            .map(serde_json::from_value)
            .transpose()
            .map_err(unreadable("progress"))?,
        report: report
            .map(serde_json::from_value)
            .transpose()
            .map_err(unreadable("report"))?,
        error: row.try_get(10).map_err(store_error)?,
    })
}

fn opt_ms(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(store_error)
}

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
        let sample = serde_json::to_value(&snapshot.sample).map_err(store_error)?;
        let created = i64::try_from(snapshot.created_at_ms).unwrap_or(i64::MAX);
        self.client()
            .await?
            .execute(
                "INSERT INTO metrics_snapshots (id, label, note, created_at_ms, sample) VALUES ($1, $2, $3, $4, $5)",
                &[&snapshot.id.as_uuid(), &snapshot.label, &snapshot.note, &created, &sample],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get_snapshot(&self, id: Id) -> Result<Option<MetricsSnapshot>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, label, note, created_at_ms, sample FROM metrics_snapshots WHERE id = $1",
                &[&id.as_uuid()],
            )
            .await
            .map_err(store_error)?;
        row.as_ref().map(decode).transpose()
    }

    async fn list_snapshots(&self, page: PageRequest) -> Result<Page<MetricsSnapshot>> {
        let limit = i64::from(page.limit) + 1;
        let client = self.client().await?;
        let rows = match page.before {
            Some(before) => {
                client
                    .query(
                        "SELECT id, label, note, created_at_ms, sample FROM metrics_snapshots
                         WHERE id < $1 ORDER BY id DESC LIMIT $2",
                        &[&before.as_uuid(), &limit],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        "SELECT id, label, note, created_at_ms, sample FROM metrics_snapshots
                         ORDER BY id DESC LIMIT $1",
                        &[&limit],
                    )
                    .await
            }
        }
        .map_err(store_error)?;
        let items = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, |s| s.id))
    }

    async fn delete_snapshot(&self, id: Id) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM metrics_snapshots WHERE id = $1",
                &[&id.as_uuid()],
            )
            .await
            .map_err(store_error)?;
        Ok(n > 0)
    }

    async fn insert_load_test(&self, test: &LoadTestRecord, owner: &str) -> Result<()> {
        let targets = serde_json::to_string(&test.targets).map_err(store_error)?;
        let created = i64::try_from(test.created_at_ms).unwrap_or(i64::MAX);
        let progress = test.progress.as_ref().map(to_value).transpose()?;
        let report = test.report.as_ref().map(to_value).transpose()?;
        self.client()
            .await?
            .execute(
                &format!("INSERT INTO load_tests ({TEST_COLUMNS}, owner, heartbeat_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, {DB_NOW_MS})"),
                &[
                    &test.id.as_uuid(),
                    &test.scenario_name,
                    &targets,
                    &test.status.as_str(),
                    &created,
                    &opt_ms(test.started_at_ms),
                    &opt_ms(test.finished_at_ms),
                    &test.scenario,
                    &progress,
                    &report,
                    &test.error,
                    &owner,
                ],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn save_load_test(&self, test: &LoadTestRecord) -> Result<()> {
        let progress = test.progress.as_ref().map(to_value).transpose()?;
        let report = test.report.as_ref().map(to_value).transpose()?;
        self.client()
            .await?
            .execute(
                "UPDATE load_tests SET status = $2, started_at_ms = $3, finished_at_ms = $4, progress = $5, report = $6, error = $7 WHERE id = $1",
                &[
                    &test.id.as_uuid(),
                    &test.status.as_str(),
                    &opt_ms(test.started_at_ms),
                    &opt_ms(test.finished_at_ms),
                    &progress,
                    &report,
                    &test.error,
                ],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get_load_test(&self, id: Id) -> Result<Option<LoadTestRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {TEST_COLUMNS} FROM load_tests WHERE id = $1"),
                &[&id.as_uuid()],
            )
            .await
            .map_err(store_error)?;
        row.as_ref().map(decode_test).transpose()
    }

    async fn list_load_tests(
        &self,
        filter: &TestFilter,
        page: PageRequest,
    ) -> Result<Page<LoadTestRecord>> {
        let limit = i64::from(page.limit) + 1;
        let before = page.before.map(|b| b.as_uuid());
        let target = filter
            .target
            .as_ref()
            .map(|t| format!("%{}%", serde_json::to_string(t).unwrap_or_default()));
        let status = filter.status.map(TestStatus::as_str);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, scenario_name, targets, status, created_at_ms, started_at_ms, finished_at_ms, scenario, progress, NULL::JSONB, error
                 FROM load_tests
                 WHERE ($1::UUID IS NULL OR id < $1) AND ($2::TEXT IS NULL OR scenario_name = $2)
                   AND ($3::TEXT IS NULL OR targets LIKE $3) AND ($4::TEXT IS NULL OR status = $4)
                 ORDER BY id DESC LIMIT $5",
                &[&before, &filter.scenario, &target, &status, &limit],
            )
            .await
            .map_err(store_error)?;
        let items = rows.iter().map(decode_test).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, |t| t.id))
    }

    async fn interrupt_unfinished(&self, owner: Option<&str>, stale_after_ms: u64) -> Result<u64> {
        let now = i64::try_from(perf_core::unix_millis()).unwrap_or(i64::MAX);
        let stale = i64::try_from(stale_after_ms).unwrap_or(i64::MAX);
        self.client()
            .await?
            .execute(
                &format!(
                    "UPDATE load_tests SET status = 'interrupted', finished_at_ms = $1
                     WHERE status IN ('queued', 'running')
                       AND (owner IS NULL OR owner = $2 OR COALESCE(heartbeat_ms, 0) < {DB_NOW_MS} - $3)"
                ),
                &[&now, &owner, &stale],
            )
            .await
            .map_err(store_error)
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
            .client()
            .await?
            .execute(
                "UPDATE load_tests SET cancel_requested = TRUE WHERE id = $1 AND status IN ('queued', 'running')",
                &[&id.as_uuid()],
            )
            .await
            .map_err(store_error)?;
        Ok(n > 0)
    }

    async fn prune(&self, kind: Retained, keep: u64, older_than_ms: u64) -> Result<u64> {
        let (table, at, finished) = kind.table();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let before = i64::try_from(older_than_ms).unwrap_or(i64::MAX);
        self.client()
            .await?
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE {finished} AND ({at} < $1 OR id IN
                       (SELECT id FROM {table} WHERE {finished} ORDER BY id DESC OFFSET $2))"
                ),
                &[&before, &keep],
            )
            .await
            .map_err(store_error)
    }

    async fn delete_profile(&self, id: Id) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute("DELETE FROM profiles WHERE id = $1", &[&id.as_uuid()])
            .await
            .map_err(store_error)?;
        Ok(n > 0)
    }

    async fn insert_profile(&self, profile: &ProfileData) -> Result<()> {
        let r = &profile.record;
        let frequency = r.frequency_hz.map(|f| i32::try_from(f).unwrap_or(i32::MAX));
        self.client()
            .await?
            .execute(
                "INSERT INTO profiles (id, kind, started_at_ms, duration_ms, frequency_hz, pprof, flamegraph_svg)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &r.id.as_uuid(),
                    &r.kind,
                    &i64::try_from(r.started_at_ms).unwrap_or(i64::MAX),
                    &i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
                    &frequency,
                    &profile.pprof,
                    &profile.flamegraph_svg,
                ],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn list_profiles(&self, page: PageRequest) -> Result<Page<ProfileRecord>> {
        let limit = i64::from(page.limit) + 1;
        let client = self.client().await?;
        let columns = "id, kind, started_at_ms, duration_ms, frequency_hz, length(pprof)::bigint, length(flamegraph_svg)::bigint";
        let rows =
            match page.before {
                Some(before) => client
                    .query(
                        &format!(
                            "SELECT {columns} FROM profiles WHERE id < $1 ORDER BY id DESC LIMIT $2"
                        ),
                        &[&before.as_uuid(), &limit],
                    )
                    .await,
                None => {
                    client
                        .query(
                            &format!("SELECT {columns} FROM profiles ORDER BY id DESC LIMIT $1"),
                            &[&limit],
                        )
                        .await
                }
            }
            .map_err(store_error)?;
        let items = rows
            .iter()
            .map(decode_profile)
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, |p| p.id))
    }

    async fn get_profile(&self, id: Id) -> Result<Option<ProfileData>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, kind, started_at_ms, duration_ms, frequency_hz, length(pprof)::bigint, length(flamegraph_svg)::bigint, pprof, flamegraph_svg
                 FROM profiles WHERE id = $1",
                &[&id.as_uuid()],
            )
            .await
            .map_err(store_error)?;
        row.map(|row| {
            Ok(ProfileData {
                record: decode_profile(&row)?,
                pprof: row.try_get(7).map_err(store_error)?,
                flamegraph_svg: row.try_get(8).map_err(store_error)?,
            })
        })
        .transpose()
    }

    async fn insert_scaling_event(&self, e: &ScalingEventRecord) -> Result<()> {
        let metrics = serde_json::to_value(&e.event.metrics).map_err(store_error)?;
        self.client()
            .await?
            .execute(
                "INSERT INTO scaling_events (id, at_ms, kind, from_replicas, to_replicas, reason, metrics)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &e.id.as_uuid(),
                    &i64::try_from(e.event.at_ms).unwrap_or(i64::MAX),
                    &e.event.kind,
                    &i64::from(e.event.from),
                    &i64::from(e.event.to),
                    &e.event.reason,
                    &metrics,
                ],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn list_scaling_events(&self, page: PageRequest) -> Result<Page<ScalingEventRecord>> {
        let limit = i64::from(page.limit) + 1;
        let client = self.client().await?;
        let columns = "id, at_ms, kind, from_replicas, to_replicas, reason, metrics";
        let rows = match page.before {
            Some(before) => {
                client
                    .query(
                        &format!("SELECT {columns} FROM scaling_events WHERE id < $1 ORDER BY id DESC LIMIT $2"),
                        &[&before.as_uuid(), &limit],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        &format!("SELECT {columns} FROM scaling_events ORDER BY id DESC LIMIT $1"),
                        &[&limit],
                    )
                    .await
            }
        }
        .map_err(store_error)?;
        let items = rows
            .iter()
            .map(|row| {
                let id: uuid::Uuid = row.try_get(0).map_err(store_error)?;
                let at: i64 = row.try_get(1).map_err(store_error)?;
                let from: i64 = row.try_get(3).map_err(store_error)?;
                let to: i64 = row.try_get(4).map_err(store_error)?;
                let metrics: serde_json::Value = row.try_get(6).map_err(store_error)?;
                Ok(ScalingEventRecord {
                    id: Id::from(id),
                    event: perf_scaling::ScalingEvent {
                        at_ms: u64::try_from(at).unwrap_or(0),
                        kind: row.try_get(2).map_err(store_error)?,
                        from: u32::try_from(from).unwrap_or(0),
                        to: u32::try_from(to).unwrap_or(0),
                        reason: row.try_get(5).map_err(store_error)?,
                        metrics: serde_json::from_value(metrics).map_err(store_error)?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, page.limit, |e| e.id))
    }

    async fn put_scaling_state(&self, key: &str, value: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO scaling_state (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get_scaling_state(&self, key: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT value FROM scaling_state WHERE key = $1", &[&key])
            .await
            .map_err(store_error)?;
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
