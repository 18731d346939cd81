//! Connection pools that say how they are doing, and a tuner that sizes them.
//!
//! [`InstrumentedPool`] wraps a deadpool-postgres or a bb8 pool created *with
//! timeouts* (deadpool has none by default, so `get()` could wait forever;
//! bb8's test of every connection on checkout is turned off, a query per
//! checkout being the cost the pool exists to avoid):
//! it records how long callers wait for a connection (a histogram), how long
//! they hold it, timeouts and errors. [`recommend_pool_size`] turns those
//! measurements into a size with Little's law (connections busy = arrival
//! rate × time held), plus headroom, bounded by what the server allows.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use perf_core::LatencyHistogram;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Timeouts and size of an [`InstrumentedPool`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Most connections (default 10).
    pub max_size: usize,
    /// Longest wait for a free connection (default 5 s).
    #[cfg_attr(feature = "openapi", schema(value_type = Object, example = json!({"secs": 5, "nanos": 0})))]
    pub wait_timeout: Duration,
    /// Longest time to open a connection (default 5 s).
    #[cfg_attr(feature = "openapi", schema(value_type = Object, example = json!({"secs": 5, "nanos": 0})))]
    pub create_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 10,
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default)]
struct Measures {
    wait: LatencyHistogram,
    held: LatencyHistogram,
}

type Bb8Pool = bb8::Pool<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>;

#[derive(Clone)]
enum Backend {
    Deadpool(Pool),
    Bb8(Bb8Pool),
}

/// A deadpool-postgres or bb8 pool with timeouts and measurements.
#[derive(Clone)]
pub struct InstrumentedPool {
    pool: Backend,
    measures: Arc<Mutex<Measures>>,
    checkouts: Arc<AtomicU64>,
    timeouts: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    since: Instant,
    max_size: usize,
}

impl std::fmt::Debug for InstrumentedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedPool")
            .field("observation", &self.observe())
            .finish_non_exhaustive()
    }
}

/// A checked-out connection; returning it (drop) records how long it was held.
enum Connection {
    Deadpool(Object),
    Bb8(
        bb8::PooledConnection<
            'static,
            bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>,
        >,
    ),
}

/// A checked-out connection; returning it (drop) records how long it was held.
pub struct PooledConnection {
    object: Connection,
    taken: Instant,
    measures: Arc<Mutex<Measures>>,
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("held", &self.taken.elapsed())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for PooledConnection {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &tokio_postgres::Client {
        match &self.object {
            Connection::Deadpool(o) => o,
            Connection::Bb8(c) => c,
        }
    }
}

impl std::ops::DerefMut for PooledConnection {
    /// Mutable access, for `transaction()`.
    fn deref_mut(&mut self) -> &mut tokio_postgres::Client {
        match &mut self.object {
            Connection::Deadpool(o) => o,
            Connection::Bb8(c) => c,
        }
    }
}

impl PooledConnection {
    /// A prepared statement for `sql`, from the connection's own statement
    /// cache when it has one (deadpool-postgres keeps one per connection;
    /// bb8's plain client does not, so there it prepares each time). Using
    /// it saves the prepare round trip that `query(&str, ..)` makes.
    pub async fn prepare_cached(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        match &self.object {
            Connection::Deadpool(o) => o.prepare_cached(sql).await,
            Connection::Bb8(c) => c.prepare(sql).await,
        }
        .map_err(crate::error::db_error)
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Ok(mut m) = self.measures.lock() {
            let _ = m.held.record(self.taken.elapsed());
        }
    }
}

/// What a pool measured since it was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolObservation {
    /// Seconds measured.
    pub elapsed_s: f64,
    /// Connections handed out.
    pub checkouts: u64,
    /// `get()` calls that timed out.
    pub timeouts: u64,
    /// `get()` calls that failed otherwise.
    pub errors: u64,
    /// Wait for a connection, ms.
    pub wait_ms: perf_core::LatencyMs,
    /// Time a connection was held (the queries run through the pool), ms;
    /// its mean sizes the pool ([`recommend_pool_size`]).
    pub held_ms: perf_core::LatencyMs,
    /// Connections open now.
    pub size: usize,
    /// Of which idle.
    pub idle: usize,
    /// Callers waiting now (deadpool only; 0 for bb8, which does not say).
    pub waiting: usize,
    /// The pool's maximum.
    pub max_size: usize,
}

/// Registers the help text and unit of every series
/// [`PoolObservation::publish_metrics`] writes, with the `metrics` recorder
/// installed now (call it once, after installing one).
pub fn describe_pool_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(
        "db_pool_connections",
        Unit::Count,
        "Connections open now, by pool and state (in_use, idle)."
    );
    describe_gauge!(
        "db_pool_max_connections",
        Unit::Count,
        "The pool's maximum size, by pool."
    );
    describe_gauge!(
        "db_pool_waiting",
        Unit::Count,
        "Callers waiting for a connection now, by pool (deadpool only)."
    );
    describe_counter!(
        "db_pool_checkouts_total",
        Unit::Count,
        "Connections handed out, by pool."
    );
    describe_counter!(
        "db_pool_timeouts_total",
        Unit::Count,
        "Checkouts that gave up after the wait timeout, by pool."
    );
    describe_counter!(
        "db_pool_errors_total",
        Unit::Count,
        "Checkouts that failed for another reason (a connection that could not open), by pool."
    );
}

/// Every wait for a connection and every hold of one since a pool opened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolLatencies {
    /// From asking for a connection to getting it.
    pub wait: LatencyHistogram,
    /// From getting a connection to giving it back.
    pub held: LatencyHistogram,
}

/// `db_pool_wait_seconds` and `db_pool_held_seconds` of these pools, as
/// Prometheus histograms labelled `pool=<name>` in the text exposition
/// format (what the `metrics` recorder cannot take: whole histograms).
///
/// ```
/// let text = perf_db::render_pool_latencies(&[("store", perf_db::PoolLatencies::default())]);
/// assert!(text.contains("# TYPE db_pool_wait_seconds histogram"));
/// assert!(text.contains("db_pool_held_seconds_count{pool=\"store\"} 0"));
/// ```
pub fn render_pool_latencies(pools: &[(&str, PoolLatencies)]) -> String {
    use perf_core::prometheus::{write_header, write_histogram};
    let mut out = String::new();
    write_header(
        &mut out,
        "db_pool_wait_seconds",
        "histogram",
        "Time callers waited for a connection since the pool opened, by pool.",
    );
    for (name, latencies) in pools {
        write_histogram(
            &mut out,
            "db_pool_wait_seconds",
            &[("pool", name)],
            &latencies.wait,
        );
    }
    write_header(
        &mut out,
        "db_pool_held_seconds",
        "histogram",
        "Time callers held a connection since the pool opened, by pool.",
    );
    for (name, latencies) in pools {
        write_histogram(
            &mut out,
            "db_pool_held_seconds",
            &[("pool", name)],
            &latencies.held,
        );
    }
    out
}

impl PoolObservation {
    /// Writes these figures to the `metrics` recorder, labelled
    /// `pool=<name>`: `db_pool_connections{state=in_use|idle}`,
    /// `db_pool_max_connections`, `db_pool_waiting`,
    /// `db_pool_{checkouts,timeouts,errors}_total` (the wait and hold times
    /// are histograms: [`render_pool_latencies`]). Call it before each scrape.
    pub fn publish_metrics(&self, name: &'static str) {
        let in_use = self.size.saturating_sub(self.idle);
        metrics::gauge!("db_pool_connections", "pool" => name, "state" => "in_use")
            .set(in_use as f64);
        metrics::gauge!("db_pool_connections", "pool" => name, "state" => "idle")
            .set(self.idle as f64);
        metrics::gauge!("db_pool_max_connections", "pool" => name).set(self.max_size as f64);
        metrics::gauge!("db_pool_waiting", "pool" => name).set(self.waiting as f64);
        metrics::counter!("db_pool_checkouts_total", "pool" => name).absolute(self.checkouts);
        metrics::counter!("db_pool_timeouts_total", "pool" => name).absolute(self.timeouts);
        metrics::counter!("db_pool_errors_total", "pool" => name).absolute(self.errors);
    }
}

impl InstrumentedPool {
    /// A pool for `url` with `settings` (timeouts always set).
    pub fn new(url: &str, settings: &PoolSettings) -> Result<Self> {
        settings.validate()?;
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::Database(format!("not a connection string: {e}")))?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.wait_timeout))
            .create_timeout(Some(settings.create_timeout))
            .recycle_timeout(Some(settings.create_timeout))
            .build()
            .map_err(|e| Error::Database(e.to_string()))?;
        Ok(Self::around(
            Backend::Deadpool(pool),
            settings.max_size.max(1),
        ))
    }

    /// The same on bb8 (connection timeout = `wait_timeout`, no test on checkout).
    pub async fn new_bb8(url: &str, settings: &PoolSettings) -> Result<Self> {
        settings.validate()?;
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::Database(format!("not a connection string: {e}")))?;
        let manager = bb8_postgres::PostgresConnectionManager::new(config, tokio_postgres::NoTls);
        let pool = bb8::Pool::builder()
            .max_size(u32::try_from(settings.max_size.max(1)).unwrap_or(u32::MAX))
            .connection_timeout(settings.wait_timeout)
            .test_on_check_out(false)
            .build(manager)
            .await
            .map_err(|e| Error::Database(e.to_string()))?;
        Ok(Self::around(Backend::Bb8(pool), settings.max_size.max(1)))
    }

    fn around(pool: Backend, max_size: usize) -> Self {
        Self {
            pool,
            measures: Arc::new(Mutex::new(Measures::default())),
            checkouts: Arc::new(AtomicU64::new(0)),
            timeouts: Arc::new(AtomicU64::new(0)),
            errors: Arc::new(AtomicU64::new(0)),
            since: Instant::now(),
            max_size,
        }
    }

    /// A connection, waiting at most the wait timeout.
    pub async fn get(&self) -> Result<PooledConnection> {
        let started = Instant::now();
        let got = match &self.pool {
            Backend::Deadpool(pool) => {
                pool.get()
                    .await
                    .map(Connection::Deadpool)
                    .map_err(|e| match e {
                        PoolError::Timeout(kind) => (
                            true,
                            Error::Database(format!(
                                "no connection within the pool's timeout ({kind:?})"
                            )),
                        ),
                        // PostgreSQL's own refusal keeps its SQLSTATE.
                        PoolError::Backend(e) => (false, Error::from(e)),
                        other => (false, Error::Database(other.to_string())),
                    })
            }
            Backend::Bb8(pool) => {
                pool.get_owned()
                    .await
                    .map(Connection::Bb8)
                    .map_err(|e| match e {
                        bb8::RunError::TimedOut => (
                            true,
                            Error::Database("no connection within the pool's timeout".to_owned()),
                        ),
                        bb8::RunError::User(e) => (false, Error::from(e)),
                    })
            }
        };
        match got {
            Ok(object) => {
                if let Ok(mut m) = self.measures.lock() {
                    let _ = m.wait.record(started.elapsed());
                }
                self.checkouts.fetch_add(1, Ordering::Relaxed);
                Ok(PooledConnection {
                    object,
                    taken: Instant::now(),
                    measures: Arc::clone(&self.measures),
                })
            }
            Err((timed_out, error)) => {
                let counter = if timed_out {
                    &self.timeouts
                } else {
                    &self.errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(timed_out, %error, "no connection from the pool");
                Err(error)
            }
        }
    }

    /// Closes the pool: idle connections are dropped now, connections in
    /// use when they come back, and later `get`s fail (deadpool; a bb8 pool
    /// closes when its last handle is dropped).
    pub fn close(&self) {
        if let Backend::Deadpool(pool) = &self.pool {
            pool.close();
        }
    }

    /// Every wait and hold so far, whole (for Prometheus histograms:
    /// [`render_pool_latencies`]).
    pub fn latencies(&self) -> PoolLatencies {
        self.measures
            .lock()
            .map(|m| PoolLatencies {
                wait: m.wait.clone(),
                held: m.held.clone(),
            })
            .unwrap_or_default()
    }

    /// The measurements so far.
    pub fn observe(&self) -> PoolObservation {
        let (size, idle, waiting, max_size) = match &self.pool {
            Backend::Deadpool(p) => {
                let s = p.status();
                (s.size, s.available, s.waiting, s.max_size)
            }
            Backend::Bb8(p) => {
                let s = p.state();
                (
                    s.connections as usize,
                    s.idle_connections as usize,
                    0,
                    self.max_size,
                )
            }
        };
        let (wait_ms, held_ms) = self.measures.lock().map_or_else(
            |_| Default::default(),
            |m| (m.wait.summary(), m.held.summary()),
        );
        PoolObservation {
            elapsed_s: self.since.elapsed().as_secs_f64(),
            checkouts: self.checkouts.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            wait_ms,
            held_ms,
            size,
            idle,
            waiting,
            max_size,
        }
    }
}

/// A recommended pool size and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolRecommendation {
    /// Connections to configure.
    pub size: usize,
    /// Connections busy on average (Little's law: rate × time held).
    pub busy_connections: f64,
    /// The explanation.
    pub reason: String,
}

/// Sizes a pool from what it measured: `ceil(rate × mean held time ×
/// headroom)` (headroom 1.5 absorbs bursts), at least 2, at most
/// `server_max_connections - reserved` (what one instance may take of the
/// server's `max_connections`).
///
/// ```
/// use perf_core::LatencyMs;
/// use perf_db::{recommend_pool_size, PoolObservation};
/// let seen = PoolObservation { elapsed_s: 60.0, checkouts: 60_000, timeouts: 0, errors: 0,
///     wait_ms: LatencyMs { p99: 0.5, max: 2.0, ..LatencyMs::default() },
///     held_ms: LatencyMs { mean: 8.0, p95: 12.0, max: 30.0, ..LatencyMs::default() },
///     size: 50, idle: 40, waiting: 0, max_size: 50 };
/// // 1000 checkouts/s held 8 ms: 8 busy on average, 12 with headroom.
/// assert_eq!(recommend_pool_size(&seen, 100, 10).size, 12);
/// ```
pub fn recommend_pool_size(
    seen: &PoolObservation,
    server_max_connections: usize,
    reserved: usize,
) -> PoolRecommendation {
    let rate = if seen.elapsed_s > 0.0 {
        seen.checkouts as f64 / seen.elapsed_s
    } else {
        0.0
    };
    let busy = rate * seen.held_ms.mean / 1000.0;
    let ceiling = server_max_connections.saturating_sub(reserved).max(1);
    let wanted = perf_core::num::saturating_usize((busy * 1.5).ceil().max(2.0));
    let size = wanted.min(ceiling);
    let mut reason = format!(
        "{rate:.1} checkouts/s held {:.2} ms on average keep {busy:.2} connections busy (Little's law); with 50 % headroom: {wanted}",
        seen.held_ms.mean
    );
    if size < wanted {
        reason.push_str(&format!("; capped at {ceiling} by the server's max_connections {server_max_connections} minus {reserved} reserved"));
    }
    if seen.max_size > size * 2 {
        reason.push_str(&format!(
            "; the pool is configured for {} and is oversized",
            seen.max_size
        ));
    } else if seen.timeouts > 0 || seen.wait_ms.p99 > 10.0 {
        reason.push_str(&format!(
            "; callers waited (p99 {:.1} ms, {} timeouts): the pool is too small",
            seen.wait_ms.p99, seen.timeouts
        ));
    }
    PoolRecommendation {
        size,
        busy_connections: busy,
        reason,
    }
}

/// The most connections one pool may hold.
const MAX_POOL_SIZE: usize = 10_000;
/// The longest wait for a connection or for a new one.
const MAX_POOL_TIMEOUT: Duration = Duration::from_secs(3600);

impl PoolSettings {
    /// Checks every field; the error names the bad one and the range.
    ///
    /// ```
    /// use std::time::Duration;
    /// let settings = perf_db::PoolSettings::builder()
    ///     .max_size(20)
    ///     .wait_timeout(Duration::from_millis(500))
    ///     .build()?;
    /// assert_eq!(settings.max_size, 20);
    /// let err = perf_db::PoolSettings::builder().max_size(0).build().unwrap_err();
    /// assert!(err.to_string().contains("max_size"));
    /// # Ok::<(), perf_db::Error>(())
    /// ```
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_POOL_SIZE).contains(&self.max_size) {
            return Err(Error::Invalid(format!(
                "max_size: {} is outside the allowed range 1 to {MAX_POOL_SIZE} connections",
                self.max_size
            )));
        }
        for (field, value) in [
            ("wait_timeout", self.wait_timeout),
            ("create_timeout", self.create_timeout),
        ] {
            if value < Duration::from_millis(1) || value > MAX_POOL_TIMEOUT {
                return Err(Error::Invalid(format!(
                    "{field}: {value:?} is outside the allowed range 1 ms to 1 hour"
                )));
            }
        }
        Ok(())
    }
}

perf_core::config_builder! {
    /// Builds [`PoolSettings`].
    PoolSettings => PoolSettingsBuilder, Error {
        max_size: usize,
        wait_timeout: Duration,
        create_timeout: Duration,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::PoolSettings;

    #[test]
    fn pool_settings_out_of_range_are_refused_by_name() {
        for (built, field) in [
            (PoolSettings::builder().max_size(0).build(), "max_size"),
            (PoolSettings::builder().max_size(10_001).build(), "max_size"),
            (
                PoolSettings::builder().wait_timeout(Duration::ZERO).build(),
                "wait_timeout",
            ),
            (
                PoolSettings::builder()
                    .create_timeout(Duration::from_secs(7200))
                    .build(),
                "create_timeout",
            ),
        ] {
            let err = built.unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
