//! The database perf-server reports on: an instrumented pool to it, a
//! query cache in front of the costly statistics reads, and the report that
//! `/performance/metrics/database` serves. The figures come from perf-db.

use std::str::FromStr;
use std::time::Duration;

use perf_db::{
    DatabaseActivity, InstrumentedPool, PoolObservation, PoolSettings, QueryCache, QueryCacheStats,
    SlowQuery, SlowQueryFilter,
};
use serde::Serialize;

/// How many slow statements the report lists.
const TOP_SLOW: i64 = 10;
/// How long the slow statement list is served from the cache.
const SLOW_QUERY_TTL: Duration = Duration::from_secs(5);
/// The cache key of the slow statement list (the shape of the read that
/// perf-db makes, with the limit as its parameter).
const SLOW_QUERY_KEY: &str =
    "SELECT * FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1";

/// The analyzed database, reached through its own small pool.
pub struct DatabaseMonitor {
    target: String,
    pool: InstrumentedPool,
    cache: QueryCache<Vec<SlowQuery>>,
}

impl std::fmt::Debug for DatabaseMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseMonitor")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// What `/performance/metrics/database` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DatabaseReport {
    /// Whether a database is configured at all.
    pub configured: bool,
    /// Host, port, user and database (never the password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Plain words when something is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The pool perf-server uses for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolObservation>,
    /// How long queries held a pooled connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_latency_ms: Option<perf_core::LatencyMs>,
    /// Connections by state, buffer cache hit ratio, transactions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<DatabaseActivity>,
    /// The query cache's counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_cache: Option<QueryCacheStats>,
    /// Hits / lookups of the query cache (`None` before any lookup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_cache_hit_ratio: Option<f64>,
    /// The statements that took the most total time (pg_stat_statements).
    pub slow_queries: Vec<SlowQuery>,
    /// What could not be read, and why.
    pub errors: Vec<String>,
}

impl DatabaseReport {
    /// The answer when no database is configured.
    pub fn unconfigured() -> Self {
        Self {
            configured: false,
            database: None,
            message: Some(
                "no database configured: start perf-server with --analyze-database-url (or --database-url) to report on one".to_owned(),
            ),
            pool: None,
            query_latency_ms: None,
            activity: None,
            query_cache: None,
            query_cache_hit_ratio: None,
            slow_queries: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// `user@host:port/dbname` of a connection string, without the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

impl DatabaseMonitor {
    /// A monitor for `url` (nothing is connected until the first report).
    pub fn new(url: &str) -> perf_db::Result<Self> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| perf_db::Error::Database(format!("not a connection string: {e}")))?;
        let settings = PoolSettings::builder()
            .max_size(4)
            .wait_timeout(Duration::from_secs(2))
            .create_timeout(Duration::from_secs(3))
            .build()?;
        let pool = InstrumentedPool::new(url, &settings)?;
        Ok(Self {
            target: describe(&config),
            pool,
            cache: QueryCache::new(64, SLOW_QUERY_TTL),
        })
    }

    /// The pool's measurements so far.
    pub fn pool_observation(&self) -> PoolObservation {
        self.pool.observe()
    }

    /// Every wait for and hold of a connection of the pool.
    pub fn pool_latencies(&self) -> perf_db::PoolLatencies {
        self.pool.latencies()
    }

    /// Reads the figures now; what cannot be read is listed in `errors`.
    pub async fn report(&self) -> DatabaseReport {
        let mut errors = Vec::new();
        let mut activity = None;
        let mut slow = Vec::new();
        let limit = TOP_SLOW.to_string();
        match self.pool.get().await {
            Err(e) => errors.push(format!("connect: {e}")),
            Ok(conn) => {
                match perf_db::database_activity(&conn).await {
                    Ok(a) => activity = Some(a),
                    Err(e) => errors.push(format!("activity: {e}")),
                }
                match self.cache.get(SLOW_QUERY_KEY, &[&limit]) {
                    Ok(Some(cached)) => slow = cached.as_ref().clone(),
                    _ => {
                        let found = match SlowQueryFilter::builder().limit(TOP_SLOW).build() {
                            Ok(filter) => perf_db::slow_queries(&conn, &filter).await,
                            Err(e) => Err(e),
                        };
                        match found {
                            Ok(found) => {
                                let _ = self.cache.insert(SLOW_QUERY_KEY, &[&limit], found.clone());
                                slow = found;
                            }
                            Err(e) => errors.push(format!("slow queries: {e}")),
                        }
                    }
                }
            }
        }
        let pool = self.pool.observe();
        let cache = self.cache.stats();
        let lookups = cache.hits + cache.misses;
        DatabaseReport {
            configured: true,
            database: Some(self.target.clone()),
            message: activity
                .is_none()
                .then(|| format!("{} could not be read; see errors", self.target)),
            query_latency_ms: Some(pool.held_ms),
            pool: Some(pool),
            activity,
            query_cache: Some(cache),
            query_cache_hit_ratio: (lookups > 0).then(|| cache.hits as f64 / lookups as f64),
            slow_queries: slow,
            errors,
        }
    }
}

/// How many of the top statements (by total time) the index advice weighs.
const ADVISED_STATEMENTS: i64 = 50;

impl DatabaseMonitor {
    /// Advice on the analyzed database: one verified index set for its
    /// top statements (workload selection), indexes to drop, tables scanned sequentially, and the
    /// size of this monitor's pool. What could not be read is returned beside.
    pub async fn advice(&self) -> (Vec<perf_core::Recommendation>, Vec<String>) {
        let conn = match self.pool.get().await {
            Ok(c) => c,
            Err(e) => return (Vec::new(), vec![format!("connect: {e}")]),
        };
        let advice =
            perf_db::database_advice(&conn, &self.pool.observe(), ADVISED_STATEMENTS).await;
        (advice.recommendations, advice.errors)
    }
}
