//! Persistence: the [`Store`] trait and its two backends, an embedded SQLite
//! file (the default) and a shared PostgreSQL database, behind the same tests.
//!
//! Every write returns only once it is durable: SQLite commits in WAL mode
//! with `synchronous=FULL`, PostgreSQL commits with its default synchronous
//! commit. Schemas are versioned migrations applied at open.

mod codec;
mod migrations;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use perf_core::Id;
use serde::{Deserialize, Serialize};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::Result;
use crate::monitor::HostSample;

/// A labelled copy of the host and process figures at one moment, kept so that
/// "before" and "after" (a deploy, a tuning change) can be compared later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricsSnapshot {
    /// Identifier (time-ordered).
    pub id: Id,
    /// What the moment was, e.g. `before deploy 1.4.2`.
    pub label: String,
    /// Free text.
    pub note: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The figures.
    pub sample: HostSample,
}

/// A scaling decision as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScalingEventRecord {
    /// Identifier (time-ordered).
    pub id: Id,
    /// The decision.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub event: perf_scaling::ScalingEvent,
}

/// A stored CPU or heap profile, without its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileRecord {
    /// Identifier (time-ordered).
    pub id: Id,
    /// `cpu` or `heap`.
    pub kind: String,
    /// When it started, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// How long it ran, ms.
    pub duration_ms: u64,
    /// CPU sampling frequency.
    pub frequency_hz: Option<u32>,
    /// Size of the pprof protobuf, bytes.
    pub pprof_bytes: u64,
    /// Size of the flamegraph SVG, bytes.
    pub flamegraph_svg_bytes: u64,
}

/// A stored profile with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileData {
    /// What it is.
    pub record: ProfileRecord,
    /// pprof protobuf.
    pub pprof: Vec<u8>,
    /// Flamegraph SVG.
    pub flamegraph_svg: Vec<u8>,
}

/// Where a load test is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestStatus {
    /// Waiting for a free slot (the concurrency limit).
    Queued,
    /// Sending load.
    Running,
    /// Ran to its end.
    Completed,
    /// Could not run or broke off with an error.
    Failed,
    /// Stopped by a DELETE.
    Cancelled,
    /// The server stopped (crash, restart, shutdown) while it was queued or running.
    Interrupted,
}

impl TestStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// Whether the test can still change.
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

impl std::str::FromStr for TestStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Queued, Self::Running, Self::Completed, Self::Failed, Self::Cancelled, Self::Interrupted]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a status; use queued, running, completed, failed, cancelled or interrupted"))
    }
}

/// A load test as stored: what was asked, where it is, what it measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoadTestRecord {
    /// Identifier (time-ordered).
    pub id: Id,
    /// Scenario name.
    pub scenario_name: String,
    /// Base URLs.
    pub targets: Vec<String>,
    /// Where it is.
    pub status: TestStatus,
    /// Accepted at, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Load started at.
    pub started_at_ms: Option<u64>,
    /// Ended at.
    pub finished_at_ms: Option<u64>,
    /// The scenario as accepted (the YAML schema, as JSON).
    #[schema(value_type = Object)]
    pub scenario: serde_json::Value,
    /// Newest live figures.
    #[schema(value_type = Option<Object>)]
    pub progress: Option<perf_loadgen::LiveSnapshot>,
    /// The report (interim while running, saved at least every 5 s).
    #[schema(value_type = Option<Object>)]
    pub report: Option<perf_loadgen::RunReport>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What the retention sweep prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    /// Finished load tests.
    LoadTests,
    /// Stored profiles.
    Profiles,
    /// Metrics snapshots.
    Snapshots,
}

impl Retained {
    /// Table and time column.
    pub(crate) fn table(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::LoadTests => (
                "load_tests",
                "created_at_ms",
                "status NOT IN ('queued', 'running')",
            ),
            Self::Profiles => ("profiles", "started_at_ms", "TRUE"),
            Self::Snapshots => ("metrics_snapshots", "created_at_ms", "TRUE"),
        }
    }
}

/// Filters of the test history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestFilter {
    /// Only this scenario name.
    pub scenario: Option<String>,
    /// Only tests with this base URL among their targets.
    pub target: Option<String>,
    /// Only this status.
    pub status: Option<TestStatus>,
}

/// One page of a newest-first listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<Id>,
}

impl<T> Page<T> {
    /// The same page with each item turned into its view.
    pub fn map<U>(self, view: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(view).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// Which page of a listing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page (1 to 500).
    pub limit: u32,
    /// Only items older than this one.
    pub before: Option<Id>,
}

impl PageRequest {
    /// The first page, newest items first, of at most `limit` items.
    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            before: None,
        }
    }
}

/// The connection pool of a store that has one, as measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StorePool {
    /// Checkouts, waits, time held, size.
    pub observation: perf_db::PoolObservation,
    /// Every wait for and hold of a connection (for `/metrics`, not the JSON views).
    #[serde(skip)]
    pub latencies: perf_db::PoolLatencies,
    /// The server's `max_connections`, the ceiling of any advice.
    pub server_max_connections: usize,
}

/// Where perf-server keeps what must survive a restart.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// The connection pool's measurements (`None` for a store without one).
    fn connection_pool(&self) -> Option<StorePool> {
        None
    }

    /// Checks that the store answers.
    async fn ping(&self) -> Result<()>;

    /// The highest migration applied.
    async fn schema_version(&self) -> Result<i64>;

    /// Saves a snapshot durably.
    async fn insert_snapshot(&self, snapshot: &MetricsSnapshot) -> Result<()>;

    /// Reads one snapshot.
    async fn get_snapshot(&self, id: Id) -> Result<Option<MetricsSnapshot>>;

    /// Lists snapshots newest first.
    async fn list_snapshots(&self, page: PageRequest) -> Result<Page<MetricsSnapshot>>;

    /// Deletes a snapshot; `false` when there was none.
    async fn delete_snapshot(&self, id: Id) -> Result<bool>;

    /// Saves a new load test durably, run by instance `owner` (its
    /// heartbeat starts now).
    async fn insert_load_test(&self, test: &LoadTestRecord, owner: &str) -> Result<()>;

    /// Saves the mutable fields of a load test (status, times, progress, report, error).
    async fn save_load_test(&self, test: &LoadTestRecord) -> Result<()>;

    /// Reads one load test with its report.
    async fn get_load_test(&self, id: Id) -> Result<Option<LoadTestRecord>>;

    /// Lists load tests newest first, without their reports.
    async fn list_load_tests(
        &self,
        filter: &TestFilter,
        page: PageRequest,
    ) -> Result<Page<LoadTestRecord>>;

    /// Marks `interrupted` the queued or running tests that nobody runs any
    /// more: those of `owner` when given (this instance's earlier life, at
    /// start-up), those without an owner, and those whose owner's last
    /// heartbeat is older than `stale_after_ms`, by the store's clock (so
    /// instances with skewed clocks agree). Another live instance's tests
    /// are left alone. Returns how many.
    async fn interrupt_unfinished(&self, owner: Option<&str>, stale_after_ms: u64) -> Result<u64>;

    /// Says `owner` still runs the tests `ids` (the ones it holds now, queued
    /// or running), by the store's clock; returns those of them another
    /// instance asked to cancel.
    async fn heartbeat(&self, owner: &str, ids: &[Id]) -> Result<Vec<Id>>;

    /// Asks the owner of a queued or running test to cancel it (through the
    /// store, when another instance runs it); `false` when it is not unfinished.
    async fn request_cancel(&self, id: Id) -> Result<bool>;

    /// Deletes what the retention keeps no more: of `kind`, everything beyond
    /// the `keep` newest and everything created before `older_than_ms`
    /// (load tests only once finished). Returns how many rows went.
    async fn prune(&self, kind: Retained, keep: u64, older_than_ms: u64) -> Result<u64>;

    /// Deletes one profile; `false` when there was none.
    async fn delete_profile(&self, id: Id) -> Result<bool>;

    /// Keeps a finished profile.
    async fn insert_profile(&self, profile: &ProfileData) -> Result<()>;

    /// Profiles, newest first, without their data.
    async fn list_profiles(&self, page: PageRequest) -> Result<Page<ProfileRecord>>;

    /// One profile with its data.
    async fn get_profile(&self, id: Id) -> Result<Option<ProfileData>>;

    /// Keeps a scaling decision.
    async fn insert_scaling_event(&self, event: &ScalingEventRecord) -> Result<()>;

    /// Scaling decisions, newest first.
    async fn list_scaling_events(&self, page: PageRequest) -> Result<Page<ScalingEventRecord>>;

    /// Sets a piece of scaling state (the policy in force, as JSON).
    async fn put_scaling_state(&self, key: &str, value: &str) -> Result<()>;

    /// Reads a piece of scaling state.
    async fn get_scaling_state(&self, key: &str) -> Result<Option<String>>;

    /// Flushes and releases the store; called once on shutdown.
    async fn close(&self) -> Result<()>;
}

/// Turns `limit + 1` rows into a page: the extra row only says there is more.
fn into_page<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> Id) -> Page<T> {
    let limit = limit as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(id)
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}
