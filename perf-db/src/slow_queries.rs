//! Slow queries from pg_stat_statements: what took the most time, filtered
//! by calls and mean time, with our fingerprint beside PostgreSQL's queryid.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::db_error;
use crate::{Error, Fingerprint, Result, fingerprint};

/// Which statements count as slow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SlowQueryFilter {
    /// Only statements called at least this often (default 1).
    pub min_calls: i64,
    /// Only statements whose mean execution time is at least this (ms, default 0).
    pub min_mean_ms: f64,
    /// At most this many, by total time (1 to 10000, default 50).
    pub limit: i64,
    /// Also list the statements perf-db sends itself (statistics reads,
    /// EXPLAINs of index advice), which start with [`OWN_STATEMENT_MARKER`]
    /// (default false: a report on a database is about its own workload).
    pub include_own: bool,
}

/// The most statements one listing returns.
const MAX_SLOW_QUERIES: i64 = 10_000;

impl SlowQueryFilter {
    /// Checks every field; the error names the bad one and the range.
    pub fn validate(&self) -> Result<()> {
        if self.min_calls < 0 {
            return Err(Error::Invalid(format!(
                "min_calls: {} must be at least 0",
                self.min_calls
            )));
        }
        if !(self.min_mean_ms.is_finite() && self.min_mean_ms >= 0.0) {
            return Err(Error::Invalid(format!(
                "min_mean_ms: {} must be a number at least 0",
                self.min_mean_ms
            )));
        }
        if !(1..=MAX_SLOW_QUERIES).contains(&self.limit) {
            return Err(Error::Invalid(format!(
                "limit: {} is outside the allowed range 1 to {MAX_SLOW_QUERIES}",
                self.limit
            )));
        }
        Ok(())
    }
}

perf_core::config_builder! {
    /// Builds a [`SlowQueryFilter`].
    SlowQueryFilter => SlowQueryFilterBuilder, Error {
        min_calls: i64,
        min_mean_ms: f64,
        limit: i64,
        include_own: bool,
    }
}

/// The comment that starts every statement perf-db sends on its own behalf,
/// so that reports on a database can leave them out.
pub const OWN_STATEMENT_MARKER: &str = "/* perf-db */";

impl Default for SlowQueryFilter {
    fn default() -> Self {
        Self {
            min_calls: 1,
            min_mean_ms: 0.0,
            limit: 50,
            include_own: false,
        }
    }
}

/// One statement as pg_stat_statements counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlowQuery {
    /// PostgreSQL's query id.
    pub queryid: i64,
    /// The normalized text PostgreSQL keeps (`$1` for constants).
    pub query: String,
    /// Our fingerprint of that text (`None` when it cannot be read).
    pub fingerprint: Option<Fingerprint>,
    /// Executions.
    pub calls: i64,
    /// Total execution time, ms.
    pub total_ms: f64,
    /// Mean execution time, ms.
    pub mean_ms: f64,
    /// Longest execution, ms.
    pub max_ms: f64,
    /// Rows returned or affected in all.
    pub rows: i64,
}

/// The slowest statements of this database by total time, from
/// pg_stat_statements (which must be in `shared_preload_libraries` and
/// created in the database; the error says so otherwise).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn slow_queries(client: &Client, filter: &SlowQueryFilter) -> Result<Vec<SlowQuery>> {
    filter.validate()?;
    let installed = client
        .query_opt(
            "/* perf-db */ SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )
        .await
        .map_err(db_error)?
        .is_some();
    if !installed {
        return Err(Error::Database(
            "pg_stat_statements is not installed in this database: add it to shared_preload_libraries and run CREATE EXTENSION pg_stat_statements".to_owned(),
        ));
    }
    let rows = client
        .query(
            "/* perf-db */ SELECT s.queryid, s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.max_exec_time, s.rows
             FROM pg_stat_statements s
             JOIN pg_database d ON d.oid = s.dbid AND d.datname = current_database()
             WHERE s.calls >= $1 AND s.mean_exec_time >= $2
               AND ($4 OR left(s.query, length($5)) <> $5)
             ORDER BY s.total_exec_time DESC
             LIMIT $3",
            &[
                &filter.min_calls,
                &filter.min_mean_ms,
                &filter.limit.max(0),
                &filter.include_own,
                &OWN_STATEMENT_MARKER,
            ],
        )
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            let query: String = r.try_get(1).map_err(db_error)?;
            Ok(SlowQuery {
                queryid: r.try_get(0).map_err(db_error)?,
                fingerprint: fingerprint(&query).ok(),
                query,
                calls: r.try_get(2).map_err(db_error)?,
                total_ms: r.try_get(3).map_err(db_error)?,
                mean_ms: r.try_get(4).map_err(db_error)?,
                max_ms: r.try_get(5).map_err(db_error)?,
                rows: r.try_get(6).map_err(db_error)?,
            })
        })
        .collect()
}

/// The workload pg_stat_statements has seen, ready for
/// [`crate::advise_workload`]: the top statements by total time and the
/// hours their counters and the tables' write counters cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservedWorkload {
    /// The statements, with their calls and total time.
    pub statements: Vec<crate::WorkloadStatement>,
    /// Hours since pg_stat_statements was reset (or the server started), at least one minute.
    pub window_hours: f64,
    /// Hours since this database's statistics were reset (or the server started), at least one minute.
    pub table_window_hours: f64,
}

impl ObservedWorkload {
    /// Workload options for these windows, the rest as given.
    pub fn options(&self, base: crate::WorkloadOptions) -> crate::WorkloadOptions {
        crate::WorkloadOptions {
            window_hours: self.window_hours,
            table_window_hours: Some(self.table_window_hours),
            ..base
        }
    }
}

/// Reads the observed workload (see [`ObservedWorkload`]); `filter` picks
/// the statements as in [`slow_queries`].
#[tracing::instrument(level = "debug", skip_all)]
pub async fn observed_workload(
    client: &Client,
    filter: &SlowQueryFilter,
) -> Result<ObservedWorkload> {
    filter.validate()?;
    let statements = slow_queries(client, filter)
        .await?
        .into_iter()
        .map(|q| crate::WorkloadStatement {
            query: q.query,
            calls: u64::try_from(q.calls).unwrap_or(0),
            total_time_ms: q.total_ms,
        })
        .collect();
    const MIN_HOURS: f64 = 1.0 / 60.0;
    let hours = |row: Option<tokio_postgres::Row>| {
        row.and_then(|r| r.try_get::<_, Option<f64>>(0).ok().flatten())
            .filter(|h| h.is_finite())
            .unwrap_or(MIN_HOURS)
            .max(MIN_HOURS)
    };
    // pg_stat_statements_info exists from extension version 1.9 (PostgreSQL 14).
    let statements_since = client
        .query_opt(
            "/* perf-db */ SELECT (extract(epoch FROM now() - coalesce(
                 (SELECT stats_reset FROM pg_stat_statements_info), pg_postmaster_start_time())) / 3600)::float8",
            &[],
        )
        .await;
    let statements_since = match statements_since {
        Ok(row) => row,
        Err(_) => client
            .query_opt(
                "/* perf-db */ SELECT (extract(epoch FROM now() - pg_postmaster_start_time()) / 3600)::float8",
                &[],
            )
            .await
            .map_err(db_error)?,
    };
    let tables_since = client
        .query_opt(
            "/* perf-db */ SELECT (extract(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time())) / 3600)::float8
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(db_error)?;
    Ok(ObservedWorkload {
        statements,
        window_hours: hours(statements_since),
        table_window_hours: hours(tables_since),
    })
}

#[cfg(test)]
mod tests {
    use super::SlowQueryFilter;

    #[test]
    fn filters_out_of_range_are_refused_by_name() {
        assert_eq!(
            SlowQueryFilter::builder().limit(5).build().unwrap().limit,
            5
        );
        for (built, field) in [
            (SlowQueryFilter::builder().limit(0).build(), "limit"),
            (SlowQueryFilter::builder().limit(-3).build(), "limit"),
            (
                SlowQueryFilter::builder().min_calls(-1).build(),
                "min_calls",
            ),
            (
                SlowQueryFilter::builder().min_mean_ms(f64::NAN).build(),
                "min_mean_ms",
            ),
        ] {
            let err = built.unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
