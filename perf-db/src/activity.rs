//! What the server is doing now, as PgHero shows it: connections by state
//! against `max_connections`, the buffer cache hit ratio, transactions,
//! deadlocks and size of the current database.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::Result;
use crate::error::db_error;

/// The current database's activity (from `pg_stat_activity` and
/// `pg_stat_database`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseActivity {
    /// The database's name.
    pub database: String,
    /// Client connections to the whole server by state (`active`, `idle`,
    /// `idle in transaction`, ...; `unknown` when the state is hidden).
    pub connections_by_state: BTreeMap<String, i64>,
    /// Sum of `connections_by_state`.
    pub connections: i64,
    /// The server's `max_connections`.
    pub max_connections: i64,
    /// Connections that have waited on a lock for over a second.
    pub waiting_on_locks: i64,
    /// Blocks found in shared buffers / all blocks asked for, since the
    /// statistics were reset (`None` before any read).
    pub buffer_cache_hit_ratio: Option<f64>,
    /// Blocks served from shared buffers.
    pub blocks_hit: i64,
    /// Blocks read from the disk or the OS cache.
    pub blocks_read: i64,
    /// Transactions committed.
    pub commits: i64,
    /// Transactions rolled back.
    pub rollbacks: i64,
    /// Deadlocks detected.
    pub deadlocks: i64,
    /// Size of the database, bytes.
    pub size_bytes: i64,
}

/// Reads [`DatabaseActivity`] over `client` (any role can; other users'
/// connection states show as `unknown` without `pg_read_all_stats`).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn database_activity(client: &Client) -> Result<DatabaseActivity> {
    let states = client
        .query(
            "/* perf-db */ SELECT coalesce(state, 'unknown'), count(*)
             FROM pg_stat_activity WHERE backend_type = 'client backend'
             GROUP BY 1",
            &[],
        )
        .await
        .map_err(db_error)?;
    let mut connections_by_state = BTreeMap::new();
    for row in &states {
        connections_by_state.insert(
            row.try_get::<_, String>(0).map_err(db_error)?,
            row.try_get::<_, i64>(1).map_err(db_error)?,
        );
    }
    let row = client
        .query_one(
            "/* perf-db */ SELECT current_database()::text,
                    current_setting('max_connections')::bigint,
                    (SELECT count(*) FROM pg_stat_activity
                      WHERE wait_event_type = 'Lock' AND now() - query_start > interval '1 second'),
                    d.blks_hit, d.blks_read, d.xact_commit, d.xact_rollback, d.deadlocks,
                    pg_database_size(current_database())
             FROM pg_stat_database d WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(db_error)?;
    let get = |i: usize| row.try_get::<_, i64>(i).map_err(db_error);
    let (blocks_hit, blocks_read) = (get(3)?, get(4)?);
    let asked = blocks_hit + blocks_read;
    Ok(DatabaseActivity {
        database: row.try_get(0).map_err(db_error)?,
        connections: connections_by_state.values().sum(),
        connections_by_state,
        max_connections: get(1)?,
        waiting_on_locks: get(2)?,
        buffer_cache_hit_ratio: (asked > 0).then(|| blocks_hit as f64 / asked as f64),
        blocks_hit,
        blocks_read,
        commits: get(5)?,
        rollbacks: get(6)?,
        deadlocks: get(7)?,
        size_bytes: get(8)?,
    })
}
