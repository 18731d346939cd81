//! The half of the store both backends share: the column lists, one named
//! row struct per table between a record and its SQL values, and the
//! conversions of times, counts and JSON. A backend only reads and binds
//! these rows in its own dialect (ids as text or `UUID`, JSON as text or
//! `JSONB`).

use perf_core::Id;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{LoadTestRecord, MetricsSnapshot, ProfileRecord, ScalingEventRecord, TestFilter};
use crate::{Error, Result};

/// `metrics_snapshots`, in the order [`SnapshotRow`] is read.
pub(super) const SNAPSHOT_COLUMNS: &str = "id, label, note, created_at_ms, sample";

/// `load_tests`, in the order [`TestRow`] is read.
pub(super) const TEST_COLUMNS: &str = "id, scenario_name, targets, status, created_at_ms, started_at_ms, finished_at_ms, scenario, progress, report, error";

/// `load_tests` for a listing: the report (the large part) left out, read as
/// NULL. `{null_json}` is the dialect's typed NULL for a JSON column.
pub(super) fn test_summary_columns(null_json: &str) -> String {
    TEST_COLUMNS.replace("report", null_json)
}

/// `profiles`, in the order [`ProfileRow`] is read; the sizes of the two
/// data columns follow (their length function is the dialect's).
pub(super) const PROFILE_COLUMNS: &str = "id, kind, started_at_ms, duration_ms, frequency_hz";

/// `scaling_events`, in the order [`ScalingEventRow`] is read.
pub(super) const SCALING_EVENT_COLUMNS: &str =
    "id, at_ms, kind, from_replicas, to_replicas, reason, metrics";

/// The `LIKE` pattern of the target filter: the base URL as a JSON string
/// anywhere in the `targets` column's JSON text.
pub(super) fn target_pattern(filter: &TestFilter) -> Option<String> {
    filter
        .target
        .as_ref()
        .map(|t| format!("%{}%", serde_json::Value::from(t.as_str())))
}

/// The store's error for `backend`.
pub(super) fn store_error(backend: &'static str, message: impl std::fmt::Display) -> Error {
    Error::Store {
        backend,
        message: message.to_string(),
    }
}

/// Milliseconds as stored (`BIGINT`/`INTEGER`); beyond `i64` saturates.
pub(super) fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// [`sql_ms`] of an optional time.
pub(super) fn sql_opt_ms(ms: Option<u64>) -> Option<i64> {
    ms.map(sql_ms)
}

/// A stored time or count back; a negative one (never written) reads as 0.
pub(super) fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn json<T: Serialize>(backend: &'static str, value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| store_error(backend, e))
}

/// Reads a JSON column into its type; the error names the row and column.
fn typed<T: DeserializeOwned>(
    backend: &'static str,
    row: &str,
    column: &str,
    value: Value,
) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| store_error(backend, format!("{row}: unreadable {column}: {e}")))
}

/// A row of `metrics_snapshots`.
#[derive(Debug)]
pub(super) struct SnapshotRow {
    pub(super) id: Id,
    pub(super) label: String,
    pub(super) note: Option<String>,
    pub(super) created_at_ms: i64,
    pub(super) sample: Value,
}

impl SnapshotRow {
    pub(super) fn encode(backend: &'static str, s: &MetricsSnapshot) -> Result<Self> {
        Ok(Self {
            id: s.id,
            label: s.label.clone(),
            note: s.note.clone(),
            created_at_ms: sql_ms(s.created_at_ms),
            sample: json(backend, &s.sample)?,
        })
    }

    pub(super) fn decode(self, backend: &'static str) -> Result<MetricsSnapshot> {
        let row = format!("snapshot {}", self.id);
        Ok(MetricsSnapshot {
            id: self.id,
            label: self.label,
            note: self.note,
            created_at_ms: from_sql(self.created_at_ms),
            sample: typed(backend, &row, "sample", self.sample)?,
        })
    }
}

/// A row of `load_tests` (without the owner and heartbeat columns, which
/// only the store's own statements use).
#[derive(Debug)]
pub(super) struct TestRow {
    pub(super) id: Id,
    pub(super) scenario_name: String,
    /// JSON text in both dialects: the target filter is a `LIKE` on it.
    pub(super) targets: String,
    pub(super) status: String,
    pub(super) created_at_ms: i64,
    pub(super) started_at_ms: Option<i64>,
    pub(super) finished_at_ms: Option<i64>,
    pub(super) scenario: Value,
    pub(super) progress: Option<Value>,
    pub(super) report: Option<Value>,
    pub(super) error: Option<String>,
}

impl TestRow {
    pub(super) fn encode(backend: &'static str, t: &LoadTestRecord) -> Result<Self> {
        Ok(Self {
            id: t.id,
            scenario_name: t.scenario_name.clone(),
            targets: serde_json::to_string(&t.targets).map_err(|e| store_error(backend, e))?,
            status: t.status.as_str().to_owned(),
            created_at_ms: sql_ms(t.created_at_ms),
            started_at_ms: sql_opt_ms(t.started_at_ms),
            finished_at_ms: sql_opt_ms(t.finished_at_ms),
            scenario: t.scenario.clone(),
            progress: t.progress.as_ref().map(|p| json(backend, p)).transpose()?,
            report: t.report.as_ref().map(|r| json(backend, r)).transpose()?,
            error: t.error.clone(),
        })
    }

    pub(super) fn decode(self, backend: &'static str) -> Result<LoadTestRecord> {
        let row = format!("load test {}", self.id);
        let targets = serde_json::from_str(&self.targets)
            .map_err(|e| store_error(backend, format!("{row}: unreadable targets: {e}")))?;
        Ok(LoadTestRecord {
            id: self.id,
            scenario_name: self.scenario_name,
            targets,
            status: self
                .status
                .parse()
                .map_err(|e| store_error(backend, format!("{row}: {e}")))?,
            created_at_ms: from_sql(self.created_at_ms),
            started_at_ms: self.started_at_ms.map(from_sql),
            finished_at_ms: self.finished_at_ms.map(from_sql),
            scenario: self.scenario,
            progress: self
                .progress
                .map(|p| typed(backend, &row, "progress", p))
                .transpose()?,
            report: self
                .report
                .map(|r| typed(backend, &row, "report", r))
                .transpose()?,
            error: self.error,
        })
    }
}

/// A row of `profiles` without its data, with the data's sizes.
#[derive(Debug)]
pub(super) struct ProfileRow {
    pub(super) id: Id,
    pub(super) kind: String,
    pub(super) started_at_ms: i64,
    pub(super) duration_ms: i64,
    pub(super) frequency_hz: Option<i64>,
    pub(super) pprof_bytes: i64,
    pub(super) flamegraph_svg_bytes: i64,
}

impl ProfileRow {
    /// The values to insert (the sizes are the data's, not stored).
    pub(super) fn encode(p: &ProfileRecord) -> Self {
        Self {
            id: p.id,
            kind: p.kind.clone(),
            started_at_ms: sql_ms(p.started_at_ms),
            duration_ms: sql_ms(p.duration_ms),
            frequency_hz: p.frequency_hz.map(i64::from),
            pprof_bytes: sql_ms(p.pprof_bytes),
            flamegraph_svg_bytes: sql_ms(p.flamegraph_svg_bytes),
        }
    }

    pub(super) fn decode(self, backend: &'static str) -> Result<ProfileRecord> {
        let frequency_hz = self
            .frequency_hz
            .map(|f| {
                u32::try_from(f).map_err(|_| {
                    store_error(
                        backend,
                        format!("profile {}: frequency_hz {f} is not a frequency", self.id),
                    )
                })
            })
            .transpose()?;
        Ok(ProfileRecord {
            id: self.id,
            kind: self.kind,
            started_at_ms: from_sql(self.started_at_ms),
            duration_ms: from_sql(self.duration_ms),
            frequency_hz,
            pprof_bytes: from_sql(self.pprof_bytes),
            flamegraph_svg_bytes: from_sql(self.flamegraph_svg_bytes),
        })
    }
}

/// A row of `scaling_events`.
#[derive(Debug)]
pub(super) struct ScalingEventRow {
    pub(super) id: Id,
    pub(super) at_ms: i64,
    pub(super) kind: String,
    pub(super) from_replicas: i64,
    pub(super) to_replicas: i64,
    pub(super) reason: String,
    pub(super) metrics: Value,
}

impl ScalingEventRow {
    pub(super) fn encode(backend: &'static str, e: &ScalingEventRecord) -> Result<Self> {
        Ok(Self {
            id: e.id,
            at_ms: sql_ms(e.event.at_ms),
            kind: e.event.kind.clone(),
            from_replicas: i64::from(e.event.from),
            to_replicas: i64::from(e.event.to),
            reason: e.event.reason.clone(),
            metrics: json(backend, &e.event.metrics)?,
        })
    }

    pub(super) fn decode(self, backend: &'static str) -> Result<ScalingEventRecord> {
        let row = format!("scaling event {}", self.id);
        let replicas = |column: &str, v: i64| {
            u32::try_from(v).map_err(|_| {
                store_error(
                    backend,
                    format!("{row}: {column} {v} is not a replica count"),
                )
            })
        };
        Ok(ScalingEventRecord {
            id: self.id,
            event: perf_scaling::ScalingEvent {
                at_ms: from_sql(self.at_ms),
                kind: self.kind,
                from: replicas("from_replicas", self.from_replicas)?,
                to: replicas("to_replicas", self.to_replicas)?,
                reason: self.reason,
                metrics: typed(backend, &row, "metrics", self.metrics)?,
            },
        })
    }
}
