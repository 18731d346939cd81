//! Persistence: the [`Store`] trait and its two backends, an embedded SQLite
//! file (the default) and a shared PostgreSQL database, behind the same tests.
//!
//! Every write returns only once it is durable: SQLite commits in WAL mode
//! with `synchronous=FULL`, PostgreSQL commits with its default synchronous
//! commit. Schemas are versioned migrations applied at open.

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

/// One page of a newest-first listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<Id>,
}

/// Which page of a listing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page (1 to 500).
    pub limit: u32,
    /// Only items older than this one.
    pub before: Option<Id>,
}

/// Where perf-server keeps what must survive a restart.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

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

    /// Flushes and releases the store; called once on shutdown.
    async fn close(&self) -> Result<()>;
}

/// Turns `limit + 1` rows into a page: the extra row only says there is more.
fn into_page(mut rows: Vec<MetricsSnapshot>, limit: u32) -> Page<MetricsSnapshot> {
    let limit = limit as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|s| s.id)
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}
