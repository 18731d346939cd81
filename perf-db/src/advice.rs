//! perf-db's findings as [`Recommendation`]s: indexes to add (verified) or
//! drop, tables read by sequential scans, and the pool size; and
//! [`database_advice`], all of them for one database at once.

use perf_core::{Recommendation, Severity};
use tokio_postgres::Client;

use crate::{IndexAdvice, IndexHealth, PoolObservation, WorkloadAdvice, recommend_pool_size};

/// Connections a pool may not count on: PostgreSQL keeps
/// `superuser_reserved_connections` (3 by default) back from everyone else.
/// The one figure every pool size advice here subtracts from
/// `max_connections`.
pub const RESERVED_CONNECTIONS: usize = 3;

/// `max_connections` assumed when the server's cannot be read
/// (PostgreSQL's default).
const DEFAULT_MAX_CONNECTIONS: usize = 100;

/// What [`database_advice`] found, and what it could not read.
#[derive(Debug, Clone, Default)]
pub struct DatabaseAdvice {
    /// The advice, in the order the sources were read.
    pub recommendations: Vec<Recommendation>,
    /// Each source that failed, with why (`"index health: ..."`).
    pub errors: Vec<String>,
}

/// Everything perf-db advises about the database `client` reaches: one
/// verified index set for its `statements` most expensive statements
/// (pg_stat_statements, workload selection), indexes to drop and tables
/// read by sequential scans (index health), and the size of the pool that
/// `pool` observed, capped by the server's `max_connections` less
/// [`RESERVED_CONNECTIONS`]. A source that fails is named in `errors`; the
/// others still advise.
pub async fn database_advice(
    client: &Client,
    pool: &PoolObservation,
    statements: i64,
) -> DatabaseAdvice {
    let mut out = DatabaseAdvice::default();
    let observed = match crate::SlowQueryFilter::builder().limit(statements).build() {
        Ok(filter) => crate::observed_workload(client, &filter).await,
        Err(e) => Err(e),
    };
    match observed {
        Ok(workload) => {
            let options = workload.options(crate::WorkloadOptions::default());
            match crate::advise_workload(client, &workload.statements, &options).await {
                Ok(advice) => out
                    .recommendations
                    .extend(workload_recommendations(&advice)),
                Err(e) => out.errors.push(format!("index advice: {e}")),
            }
        }
        Err(e) => out.errors.push(format!("slow queries: {e}")),
    }
    match crate::index_health(client, &crate::HealthOptions::default()).await {
        Ok(health) => out.recommendations.extend(health_recommendations(&health)),
        Err(e) => out.errors.push(format!("index health: {e}")),
    }
    let max_connections = crate::database_activity(client)
        .await
        .map_or(DEFAULT_MAX_CONNECTIONS, |a| {
            usize::try_from(a.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS)
        });
    out.recommendations.extend(pool_recommendation(
        pool,
        max_connections,
        RESERVED_CONNECTIONS,
    ));
    out
}

/// One recommendation per index worth adding, with its SQL and the
/// statements it helps.
pub fn index_recommendations(advice: &[IndexAdvice]) -> Vec<Recommendation> {
    advice
        .iter()
        .map(|a| {
            let best = a
                .helps
                .iter()
                .filter_map(|g| Some((g.cost_before?, g.cost_after?)))
                .map(|(b, after)| if b > 0.0 { 1.0 - after / b } else { 0.0 })
                .fold(0.0, f64::max);
            let gains = if a.verified {
                format!(
                    "cuts the planned cost by {:.0} % (verified with hypopg)",
                    100.0 * best
                )
            } else {
                "may help (unverified: hypopg is not installed)".to_owned()
            };
            add_index(a, a.verified && best >= 0.9, &gains).evidence("best_cost_saving", best)
        })
        .collect()
}

/// An `add_index` recommendation, a warning when `worth_it` (else
/// information): the index and what it `gains`, the statements it serves
/// and its `CREATE INDEX` as the action.
fn add_index(a: &IndexAdvice, worth_it: bool, gains: &str) -> Recommendation {
    let severity = if worth_it {
        Severity::Warning
    } else {
        Severity::Info
    };
    let summary = format!("index {}({}) {gains}", a.table, a.columns.join(", "));
    Recommendation::new("add_index", severity, summary)
        .evidence("table", &a.table)
        .evidence("columns", &a.columns)
        .evidence("verified", a.verified)
        .evidence(
            "statements",
            a.helps.iter().map(|g| &g.query).collect::<Vec<_>>(),
        )
        .action(format!("{};", a.create_statement))
}

/// One recommendation per index of a workload's chosen set, the index
/// that saves the most time first, with the statements it serves and what it
/// costs writes; then one (informational) per statement the advice had to
/// skip, with the reason.
pub fn workload_recommendations(advice: &WorkloadAdvice) -> Vec<Recommendation> {
    let mut chosen: Vec<_> = advice.indexes.iter().collect();
    chosen.sort_by(|a, b| b.saved_ms_per_hour.total_cmp(&a.saved_ms_per_hour));
    let skipped = advice.skipped.iter().map(|s| {
        Recommendation::new(
            "index_advice_skipped",
            Severity::Info,
            "a top statement could not be advised on",
        )
        .evidence("statement", &s.query)
        .evidence("reason", &s.reason)
        .action(
            "check the statement and the tables it names; the reason says what stopped the advice",
        )
    });
    chosen
        .into_iter()
        .map(|w| {
            let a = &w.index;
            let net = w.saved_ms_per_hour - w.write_penalty_ms_per_hour;
            let gains = format!(
                "saves about {:.1} s/h over {} statement(s) of the workload, {:.1} s/h of writes (verified with hypopg)",
                w.saved_ms_per_hour / 1e3,
                a.helps.len(),
                w.write_penalty_ms_per_hour / 1e3,
            );
            add_index(a, net >= 60_000.0, &gains)
            .evidence("saved_ms_per_hour", w.saved_ms_per_hour)
            .evidence("write_penalty_ms_per_hour", w.write_penalty_ms_per_hour)
            .evidence("estimated_bytes", w.estimated_bytes)
            .evidence("breaks_hot_updates", w.breaks_hot_updates)
        })
        .chain(skipped)
        .collect()
}

/// Duplicate and unused indexes to drop, and tables scanned sequentially.
pub fn health_recommendations(health: &IndexHealth) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for d in &health.duplicates {
        out.push(
            Recommendation::new(
                "drop_index",
                Severity::Warning,
                format!("index {} is covered by {}", d.index, d.covered_by),
            )
            .evidence("table", &d.table)
            .evidence("size_bytes", d.size_bytes)
            .action(format!("{};", d.drop_statement)),
        );
    }
    for u in &health.unused {
        out.push(
            Recommendation::new(
                "drop_index",
                Severity::Info,
                format!("index {} has never been used", u.index),
            )
            .evidence("table", &u.table)
            .evidence("size_bytes", u.size_bytes)
            .action(format!(
                "{}; -- after checking replicas and rare jobs do not use it",
                u.drop_statement
            )),
        );
    }
    for h in &health.missing_index_hints {
        out.push(
            Recommendation::new(
                "missing_index",
                Severity::Info,
                format!(
                    "{} ({} rows) is read mostly by sequential scans",
                    h.table, h.live_rows
                ),
            )
            .evidence("table", &h.table)
            .evidence("seq_scans", h.seq_scans)
            .evidence("index_scans", h.index_scans)
            .action("run index advice on its slow statements (perf_db::advise_indexes)"),
        );
    }
    out
}

/// A pool whose size is far from what it measured it needs, or that made
/// callers time out.
///
/// ```
/// use perf_core::LatencyMs;
/// use perf_db::{pool_recommendation, PoolObservation};
/// let held = LatencyMs { p50: 2.0, p95: 2.0, p99: 2.0, max: 2.0, mean: 2.0, ..LatencyMs::default() };
/// let seen = PoolObservation { elapsed_s: 60.0, checkouts: 6_000, timeouts: 0, errors: 0,
///     wait_ms: LatencyMs::default(), held_ms: held, size: 50, idle: 49, waiting: 0, max_size: 50 };
/// assert_eq!(pool_recommendation(&seen, 100, 10).unwrap().kind, "pool_size");
/// ```
pub fn pool_recommendation(
    seen: &PoolObservation,
    server_max_connections: usize,
    reserved: usize,
) -> Option<Recommendation> {
    if seen.checkouts < 100 && seen.timeouts == 0 {
        return None; // not enough traffic to judge
    }
    let r = recommend_pool_size(seen, server_max_connections, reserved);
    let oversized = seen.max_size > r.size * 2 && seen.max_size > r.size + 2;
    let starving = seen.timeouts > 0 || seen.wait_ms.p99 > 10.0;
    let undersized = starving && r.size > seen.max_size;
    if !(oversized || undersized) {
        return None;
    }
    Some(
        Recommendation::new(
            "pool_size",
            if starving {
                Severity::Critical
            } else {
                Severity::Warning
            },
            if starving {
                format!(
                    "callers wait for connections: the pool of {} is too small",
                    seen.max_size
                )
            } else {
                format!(
                    "the pool of {} keeps {:.1} connections busy: it is oversized",
                    seen.max_size, r.busy_connections
                )
            },
        )
        .evidence("configured", seen.max_size)
        .evidence(
            "checkouts_per_s",
            seen.checkouts as f64 / seen.elapsed_s.max(1e-9),
        )
        .evidence("mean_held_ms", seen.held_ms.mean)
        .evidence("timeouts", seen.timeouts)
        .evidence("wait_p99_ms", seen.wait_ms.p99)
        .evidence("busy_connections", r.busy_connections)
        .evidence("reason", &r.reason)
        .action(format!("database_pool_size: {}", r.size)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(checkouts: u64, held_ms: f64, max_size: usize, timeouts: u64) -> PoolObservation {
        PoolObservation {
            elapsed_s: 60.0,
            checkouts,
            timeouts,
            errors: 0,
            wait_ms: perf_core::LatencyMs::default(),
            held_ms: perf_core::LatencyMs {
                p50: held_ms,
                p95: held_ms,
                p99: held_ms,
                max: held_ms,
                mean: held_ms,
                ..perf_core::LatencyMs::default()
            },
            size: max_size,
            idle: 0,
            waiting: 0,
            max_size,
        }
    }

    #[test]
    fn pools_are_advised_when_far_off_or_starving_and_not_otherwise() {
        // 100/s held 2 ms: 0.2 busy -> 2 wanted; 50 configured.
        assert!(pool_recommendation(&seen(6_000, 2.0, 50, 0), 100, 10).is_some());
        // 1000/s held 8 ms: 8 busy -> 12 wanted; 12 configured: fine.
        assert!(pool_recommendation(&seen(60_000, 8.0, 12, 0), 100, 10).is_none());
        // Timeouts with a pool below what is needed: critical.
        let r = pool_recommendation(&seen(60_000, 8.0, 4, 3), 100, 10).unwrap();
        assert_eq!(
            (r.severity, r.action.as_str()),
            (Severity::Critical, "database_pool_size: 12")
        );
        // Too little traffic: nothing.
        assert!(pool_recommendation(&seen(10, 2.0, 50, 0), 100, 10).is_none());
    }

    #[test]
    fn index_advice_becomes_sql() {
        let advice = IndexAdvice {
            table: "items".into(),
            columns: vec!["sku".into()],
            keys: vec![crate::IndexKey::ascending("sku")],
            verified: true,
            helps: vec![crate::StatementGain {
                query: "SELECT * FROM items WHERE sku = $1".into(),
                cost_before: Some(1000.0),
                cost_after: Some(8.0),
            }],
            concurrently: true,
            create_statement: "CREATE INDEX CONCURRENTLY ON items (sku)".into(),
        };
        let workload = crate::WorkloadAdvice {
            indexes: vec![
                crate::WorkloadIndex {
                    index: advice.clone(),
                    saved_ms_per_hour: 10.0,
                    write_penalty_ms_per_hour: 1.0,
                    estimated_bytes: 8192,
                    breaks_hot_updates: false,
                },
                crate::WorkloadIndex {
                    index: advice.clone(),
                    saved_ms_per_hour: 120_000.0,
                    write_penalty_ms_per_hour: 1.0,
                    estimated_bytes: 8192,
                    breaks_hot_updates: true,
                },
            ],
            ..crate::WorkloadAdvice::default()
        };
        let chosen = workload_recommendations(&workload);
        assert_eq!(chosen.len(), 2);
        assert_eq!(
            chosen[0].severity,
            Severity::Warning,
            "most time saved first"
        );
        assert_eq!(chosen[1].severity, Severity::Info);
        let r = &index_recommendations(std::slice::from_ref(&advice))[0];
        assert_eq!(r.severity, Severity::Warning);
        assert_eq!(r.action, "CREATE INDEX CONCURRENTLY ON items (sku);");
        assert!(index_recommendations(&[]).is_empty());
        assert!(
            health_recommendations(&IndexHealth {
                duplicates: vec![],
                unused: vec![],
                missing_index_hints: vec![]
            })
            .is_empty()
        );
    }
}
