//! One index set for a whole workload. Candidates from every statement are
//! pooled (identical ones merged); each is worth, per hour, the execution
//! time it saves the statements it can serve (their time from
//! pg_stat_statements, scaled by the planned cost it removes, measured with
//! hypopg *with every index chosen so far present*), minus what it costs
//! writes: one index entry per inserted row and per non-HOT update, and for
//! an index on a column the workload updates, the HOT updates it would turn
//! into updates of every index. The set is chosen greedily with lazy
//! re-evaluation (a candidate's worth only falls as the set grows, so a
//! stale worth is an upper bound) under `max_indexes` and
//! `max_total_bytes` (hypopg's size estimate). Finally every statement is
//! planned once with the whole set, which is what the figures report.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::candidates::{Candidate, used_columns};
use super::planner::{Planner, TableInfo, plan_uses};
use super::{
    AdviceOptions, IndexAdvice, SkippedStatement, StatementGain, index_advice, parse, prepare,
    try_candidates,
};
use crate::{Error, QueryAnalysis, Result, Views};

/// One statement of the workload, as pg_stat_statements counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkloadStatement {
    /// The statement (normalized, with `$n`, is fine).
    pub query: String,
    /// Times it ran in the window.
    pub calls: u64,
    /// Total execution time in the window, milliseconds.
    pub total_time_ms: f64,
}

/// Budgets and costs of a workload selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkloadOptions {
    /// The per-statement rules (saving, cost floor, tables, concurrently, analyze).
    pub advice: AdviceOptions,
    /// The hours over which the statements' calls and time were counted (default 1).
    pub window_hours: f64,
    /// The hours over which the tables' write counters were counted
    /// (`pg_stat_user_tables`); default: `window_hours`.
    pub table_window_hours: Option<f64>,
    /// At most this many new indexes.
    pub max_indexes: Option<usize>,
    /// At most this many bytes of new indexes (hypopg's estimate).
    pub max_total_bytes: Option<u64>,
    /// Milliseconds one index entry costs a write (default 0.02).
    pub write_cost_ms: f64,
    /// An index must save at least this many milliseconds per hour beyond
    /// its write penalty (default 1000: a second per hour).
    pub min_gain_ms_per_hour: f64,
    /// At most this many plans for the selection (default: no bound). Every
    /// statement is planned twice first (alone, then with its own
    /// candidates) and once at the end with the chosen set; the budget
    /// bounds the planning between, where a large workload spends its time.
    /// When it runs out the chosen set so far is the answer and
    /// [`WorkloadAdvice::stopped_early`] says so.
    pub max_plans: Option<u64>,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            advice: AdviceOptions::default(),
            window_hours: 1.0,
            table_window_hours: None,
            max_indexes: None,
            max_total_bytes: None,
            write_cost_ms: 0.02,
            min_gain_ms_per_hour: 1000.0,
            max_plans: None,
        }
    }
}

impl WorkloadOptions {
    /// The first option out of range, named.
    pub fn validate(&self) -> Result<()> {
        self.advice.validate()?;
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "{name} must be a finite number > 0, got {v}"
                )))
            }
        };
        positive("window_hours", self.window_hours)?;
        if self.max_plans == Some(0) {
            return Err(Error::Invalid(
                "max_plans must be at least 1 (or unset for no bound), got 0".to_owned(),
            ));
        }
        if let Some(h) = self.table_window_hours {
            positive("table_window_hours", h)?;
        }
        for (name, v) in [
            ("write_cost_ms", self.write_cost_ms),
            ("min_gain_ms_per_hour", self.min_gain_ms_per_hour),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Invalid(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// One index of the chosen set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkloadIndex {
    /// The index, and the statements whose plan uses it with the whole set
    /// present (cost before: none of the set; after: the whole set).
    pub index: IndexAdvice,
    /// Execution time it saves per hour (a statement's saving is shared
    /// between the chosen indexes its plan uses).
    pub saved_ms_per_hour: f64,
    /// What it costs writes per hour.
    pub write_penalty_ms_per_hour: f64,
    /// hypopg's size estimate.
    pub estimated_bytes: u64,
    /// It indexes a column the workload updates, so those updates stop being HOT.
    pub breaks_hot_updates: bool,
}

/// A candidate that was not chosen, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RejectedCandidate {
    /// Table.
    pub table: String,
    /// Key columns.
    pub columns: Vec<String>,
    /// Why.
    pub reason: String,
}

/// The workload's index set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkloadAdvice {
    /// The chosen indexes, in the order they were chosen (most worth first).
    pub indexes: Vec<WorkloadIndex>,
    /// Candidates not chosen, with the reason.
    pub rejected: Vec<RejectedCandidate>,
    /// Statements that could not be advised on, with the reason.
    pub skipped: Vec<SkippedStatement>,
    /// Tables analyzed first.
    pub analyzed: Vec<String>,
    /// Distinct statements given.
    pub statements: usize,
    /// Statements an index can help by `min_saving` (they enter the selection).
    pub statements_helpable: usize,
    /// Statements whose plan uses the chosen set.
    pub statements_served: usize,
    /// Execution time saved per hour by the whole set.
    pub saved_ms_per_hour: f64,
    /// Write penalty per hour of the whole set.
    pub write_penalty_ms_per_hour: f64,
    /// Total estimated size of the set.
    pub total_bytes: u64,
    /// Statements planned (EXPLAIN) to reach the answer.
    pub plans: u64,
    /// Wall time of the whole advice, milliseconds.
    pub elapsed_ms: f64,
    /// Why the selection stopped before it had weighed every candidate (the
    /// planning budget ran out); `None` when it finished. The chosen set is
    /// then good but not necessarily what a full selection would choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
}

/// A statement of the workload that an index can help.
struct Entry {
    query: String,
    time_per_hour: f64,
    cost_before: f64,
    /// With all its own candidates present: about the least any index makes it cost.
    cost_best: f64,
    cost_now: f64,
    /// The selection step at which `cost_now` last fell.
    changed_at: usize,
}

/// A pooled candidate and what the last evaluation found.
struct Pooled {
    candidate: Candidate,
    info: Arc<TableInfo>,
    relevant: Vec<usize>,
    penalty: f64,
    breaks_hot: bool,
    /// Cost of each relevant statement with this candidate and the chosen
    /// set present, as of `evaluated_at` (empty: never evaluated).
    costs: Vec<f64>,
    evaluated_at: usize,
    bytes: u64,
    gain: f64,
    refused: Option<String>,
}

#[derive(PartialEq)]
struct Ranked {
    gain: f64,
    index: usize,
    version: usize,
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain
            .total_cmp(&other.gain)
            .then(other.index.cmp(&self.index))
    }
}

fn fmt_columns(c: &Candidate) -> String {
    format!("{} ({})", c.table, c.columns().join(", "))
}

/// Chooses one index set for a workload (see the module documentation).
/// Needs hypopg: without it this is an error that says how to install it.
/// Statements that cannot be parsed or planned are skipped with the reason.
///
/// The figures are estimates: the time a statement saves is its measured
/// time scaled by the planned cost the set removes.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn advise_workload(
    client: &Client,
    statements: &[WorkloadStatement],
    options: &WorkloadOptions,
) -> Result<WorkloadAdvice> {
    options.validate()?;
    let started = Instant::now();
    let mut planner = Planner::start(client).await?;
    let result = select(&mut planner, statements, options).await;
    planner.finish().await;
    let mut advice = result?;
    advice.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(advice)
}

async fn select(
    planner: &mut Planner<'_>,
    statements: &[WorkloadStatement],
    options: &WorkloadOptions,
) -> Result<WorkloadAdvice> {
    if !planner.hypopg {
        return Err(Error::Database(
            "workload index selection needs hypopg: install it on the database server \
             (Debian: apt-get install postgresql-15-hypopg) and allow CREATE EXTENSION hypopg"
                .to_owned(),
        ));
    }
    let mut out = WorkloadAdvice::default();
    let views = Views::from_catalog(planner.client()).await?;
    // Identical statements are one, their counts summed.
    let mut merged: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for s in statements {
        let e = merged.entry(s.query.as_str()).or_default();
        e.0 = e.0.saturating_add(s.calls);
        if s.total_time_ms.is_finite() && s.total_time_ms > 0.0 {
            e.1 += s.total_time_ms;
        }
    }
    out.statements = merged.len();
    // Each statement parsed once.
    let parsed: Vec<(&str, f64, std::result::Result<QueryAnalysis, String>)> = merged
        .iter()
        .map(|(query, &(_, time))| (*query, time, parse(query, &views)))
        .collect();
    if options.advice.analyze_stale {
        let tables: BTreeSet<String> = parsed
            .iter()
            .filter_map(|(_, _, a)| a.as_ref().ok())
            .flat_map(|a| a.tables.iter().cloned())
            .collect();
        out.analyzed = planner.analyze_stale(&tables).await?;
    }
    let table_hours = options.table_window_hours.unwrap_or(options.window_hours);

    // Stage 1: each statement with all its own candidates present.
    let mut entries: Vec<Entry> = Vec::new();
    let mut pool: BTreeMap<Candidate, Arc<TableInfo>> = BTreeMap::new();
    // (table advice is given on, column) -> entries that use it.
    let mut by_column: BTreeMap<(String, String), BTreeSet<usize>> = BTreeMap::new();
    // Columns the workload's UPDATEs assign, per table.
    let mut updated: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (query, time, analysis) in parsed {
        if let Ok(a) = &analysis {
            for c in &a.updated_columns {
                if let Some(t) = &c.table
                    && let Ok(Some(info)) = planner.table(t).await
                {
                    updated
                        .entry(info.advise_on.clone())
                        .or_default()
                        .insert(c.column.clone());
                }
            }
        }
        let prepared = match analysis {
            Ok(analysis) => prepare(planner, query, analysis, &options.advice).await,
            Err(reason) => Err(reason),
        };
        let prepared = match prepared {
            Ok(Some(p)) => p,
            Ok(None) => {
                out.plans += 1;
                continue;
            }
            Err(reason) => {
                out.skipped.push(SkippedStatement {
                    query: (*query).to_owned(),
                    reason,
                });
                continue;
            }
        };
        out.plans += 2;
        let (after, _) = match try_candidates(planner, &prepared).await {
            Ok(found) => found,
            Err(reason) => {
                out.skipped.push(SkippedStatement {
                    query: (*query).to_owned(),
                    reason,
                });
                continue;
            }
        };
        let before = prepared.cost_before;
        if !(before > 0.0 && 1.0 - after / before >= options.advice.min_saving) {
            continue;
        }
        let index = entries.len();
        let mut tables: BTreeMap<String, String> = BTreeMap::new();
        for (c, info) in &prepared.candidates {
            for name in prepared.analysis.tables.iter() {
                if info.hypothetical_on.contains(name) || &info.advise_on == name {
                    tables.insert(name.clone(), info.advise_on.clone());
                }
            }
            pool.entry(c.clone()).or_insert_with(|| Arc::clone(info));
        }
        for (name, advise_on) in &tables {
            for column in used_columns(&prepared.analysis, name) {
                by_column
                    .entry((advise_on.clone(), column))
                    .or_default()
                    .insert(index);
            }
        }
        entries.push(Entry {
            query: prepared.query,
            time_per_hour: time / options.window_hours,
            cost_before: before,
            cost_best: after,
            cost_now: before,
            changed_at: 0,
        });
    }
    out.statements_helpable = entries.len();
    let mut pooled: Vec<Pooled> = pool
        .into_iter()
        .map(|(candidate, info)| {
            let relevant: Vec<usize> = by_column
                .get(&(candidate.table.clone(), candidate.keys[0].column.clone()))
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            let w = info.writes;
            let breaks_hot = updated
                .get(&candidate.table)
                .is_some_and(|cols| candidate.keys.iter().any(|k| cols.contains(&k.column)));
            let mut entries_per_hour =
                (w.inserted + (w.updated - w.hot_updated).max(0.0)) / table_hours;
            if breaks_hot {
                entries_per_hour += w.hot_updated / table_hours * (info.existing.len() + 1) as f64;
            }
            Pooled {
                penalty: options.write_cost_ms * entries_per_hour,
                breaks_hot,
                candidate,
                info,
                relevant,
                costs: Vec::new(),
                evaluated_at: 0,
                bytes: 0,
                gain: f64::NEG_INFINITY,
                refused: None,
            }
        })
        .collect();

    // Stage 2: greedy with lazy re-evaluation.
    let mut chosen: Vec<(usize, Vec<u32>)> = Vec::new();
    let mut total_bytes = 0u64;
    let mut version = 0usize;
    // Every candidate starts at an upper bound of its worth (each statement
    // it may serve brought down to its cost with all its own candidates),
    // marked stale, so only those that reach the top are planned.
    let mut heap = BinaryHeap::new();
    for (index, p) in pooled.iter_mut().enumerate() {
        let bound: f64 = p
            .relevant
            .iter()
            .map(|&s| {
                let e = &entries[s];
                e.time_per_hour * (e.cost_now - e.cost_best).max(0.0) / e.cost_before
            })
            .sum();
        p.gain = bound - p.penalty;
        heap.push(Ranked {
            gain: p.gain,
            index,
            version: usize::MAX,
        });
    }
    let mut rejected: BTreeMap<usize, String> = BTreeMap::new();
    while let Some(top) = heap.pop() {
        let p = &pooled[top.index];
        if let Some(reason) = &p.refused {
            rejected.insert(top.index, reason.clone());
            continue;
        }
        if top.version != version {
            if let Some(max) = options.max_plans
                && out.plans >= max
            {
                let reason = format!("not weighed: the planning budget (max_plans {max}) ran out");
                let left: Vec<usize> = std::iter::once(top.index)
                    .chain(heap.drain().map(|r| r.index))
                    .collect();
                out.stopped_early = Some(format!(
                    "the planning budget (max_plans {max}) ran out with {} candidate(s) not weighed; \
                     the {} index(es) chosen by then are the answer",
                    left.len(),
                    chosen.len()
                ));
                for index in left {
                    rejected.insert(index, reason.clone());
                }
                break;
            }
            evaluate(
                planner,
                &mut pooled[top.index],
                &entries,
                version,
                &mut out.plans,
            )
            .await;
            heap.push(Ranked {
                gain: pooled[top.index].gain,
                index: top.index,
                version,
            });
            continue;
        }
        if let Some(by) = chosen.iter().map(|(i, _)| &pooled[*i].candidate).find(|c| {
            c.table == p.candidate.table
                && c.keys.len() >= p.candidate.keys.len()
                && c.keys[..p.candidate.keys.len()] == p.candidate.keys[..]
        }) {
            rejected.insert(
                top.index,
                format!("served by the chosen {}", fmt_columns(by)),
            );
            continue;
        }
        if p.gain < options.min_gain_ms_per_hour {
            // Every key left is at most this one's, and keys only overstate
            // worth: none of the rest can pass either.
            let rest = std::iter::once(top.index).chain(heap.drain().map(|r| r.index));
            for index in rest {
                let p = &pooled[index];
                let saved = p.gain + p.penalty;
                let reason = if let Some(refusal) = &p.refused {
                    refusal.clone()
                } else if p.penalty > 0.0 && saved >= options.min_gain_ms_per_hour {
                    format!(
                        "saves {saved:.0} ms/h but costs writes {:.0} ms/h{}",
                        p.penalty,
                        if p.breaks_hot {
                            " (it indexes an updated column: HOT updates would stop)"
                        } else {
                            ""
                        }
                    )
                } else {
                    format!(
                        "saves at most {:.0} ms/h with the chosen set, below min_gain_ms_per_hour {}",
                        saved.max(0.0),
                        options.min_gain_ms_per_hour
                    )
                };
                rejected.insert(index, reason);
            }
            break;
        }
        if options.max_indexes.is_some_and(|m| chosen.len() >= m) {
            rejected.insert(top.index, "max_indexes reached".to_owned());
            continue;
        }
        if options
            .max_total_bytes
            .is_some_and(|m| total_bytes.saturating_add(p.bytes) > m)
        {
            rejected.insert(
                top.index,
                format!(
                    "{} bytes would exceed max_total_bytes ({total_bytes} already chosen)",
                    p.bytes
                ),
            );
            continue;
        }
        let oids = match planner.create(&p.candidate, &p.info).await {
            Ok(oids) => oids,
            Err(e) => {
                rejected.insert(top.index, format!("hypopg refused it: {e}"));
                continue;
            }
        };
        version += 1;
        for (k, &s) in p.relevant.iter().enumerate() {
            if let Some(&cost) = p.costs.get(k)
                && cost < entries[s].cost_now
            {
                entries[s].cost_now = cost;
                entries[s].changed_at = version;
            }
        }
        total_bytes = total_bytes.saturating_add(p.bytes);
        chosen.push((top.index, oids));
    }

    // Every statement planned once with the whole set.
    let mut served: Vec<(Vec<StatementGain>, f64)> = vec![(Vec::new(), 0.0); chosen.len()];
    for e in &entries {
        out.plans += 1;
        let Ok((cost, plan)) = planner.plan(&e.query).await else {
            continue;
        };
        let users: Vec<usize> = chosen
            .iter()
            .enumerate()
            .filter(|(_, (_, oids))| plan_uses(&plan, oids))
            .map(|(k, _)| k)
            .collect();
        if users.is_empty() {
            continue;
        }
        out.statements_served += 1;
        let saved = e.time_per_hour * (1.0 - cost / e.cost_before).max(0.0);
        for &k in &users {
            served[k].0.push(StatementGain {
                query: e.query.clone(),
                cost_before: Some(e.cost_before),
                cost_after: Some(cost),
            });
            served[k].1 += saved / users.len() as f64;
        }
    }
    for ((index, oids), (helps, saved)) in chosen.iter().zip(served) {
        let p = &pooled[*index];
        if helps.is_empty() {
            planner.drop(oids).await;
            rejected.insert(
                *index,
                "no statement's plan uses it once the others are chosen".to_owned(),
            );
            continue;
        }
        out.saved_ms_per_hour += saved;
        out.write_penalty_ms_per_hour += p.penalty;
        out.total_bytes = out.total_bytes.saturating_add(p.bytes);
        out.indexes.push(WorkloadIndex {
            index: index_advice(&p.candidate, true, helps, options.advice.concurrently),
            saved_ms_per_hour: saved,
            write_penalty_ms_per_hour: p.penalty,
            estimated_bytes: p.bytes,
            breaks_hot_updates: p.breaks_hot,
        });
    }
    out.rejected = rejected
        .into_iter()
        .map(|(i, reason)| RejectedCandidate {
            table: pooled[i].candidate.table.clone(),
            columns: pooled[i].candidate.columns(),
            reason,
        })
        .collect();
    Ok(out)
}

/// A candidate's worth with the chosen set present: the time per hour it
/// saves its statements, minus its write penalty. Only the statements whose
/// cost fell since the last evaluation are planned again (an index chosen
/// since then that did not change a statement's cost leaves its cost with
/// this candidate as it was).
async fn evaluate(
    planner: &Planner<'_>,
    p: &mut Pooled,
    entries: &[Entry],
    version: usize,
    plans: &mut u64,
) {
    let fresh = p.costs.len() != p.relevant.len();
    let stale: Vec<usize> = (0..p.relevant.len())
        .filter(|&k| fresh || entries[p.relevant[k]].changed_at > p.evaluated_at)
        .collect();
    if fresh {
        p.costs = p.relevant.iter().map(|&s| entries[s].cost_now).collect();
    }
    if !stale.is_empty() {
        let oids = match planner.create(&p.candidate, &p.info).await {
            Ok(oids) => oids,
            Err(e) => {
                p.refused = Some(format!("hypopg refused it: {e}"));
                p.gain = f64::NEG_INFINITY;
                return;
            }
        };
        if p.bytes == 0 {
            p.bytes = planner.size(&oids).await;
        }
        for k in stale {
            let e = &entries[p.relevant[k]];
            *plans += 1;
            p.costs[k] = match planner.plan(&e.query).await {
                Ok((cost, _)) => cost,
                Err(_) => e.cost_now,
            };
        }
        planner.drop(&oids).await;
    }
    p.evaluated_at = version;
    let saved: f64 = p
        .relevant
        .iter()
        .zip(&p.costs)
        .map(|(&s, &cost)| {
            let e = &entries[s];
            e.time_per_hour * (e.cost_now - cost.min(e.cost_now)) / e.cost_before
        })
        .sum();
    p.gain = saved - p.penalty;
}

perf_core::config_builder! {
    /// Builds [`WorkloadOptions`].
    WorkloadOptions => WorkloadOptionsBuilder, Error {
        advice: AdviceOptions,
        window_hours: f64,
        table_window_hours: Option<f64> => into,
        max_indexes: Option<usize> => into,
        max_total_bytes: Option<u64> => into,
        write_cost_ms: f64,
        min_gain_ms_per_hour: f64,
        max_plans: Option<u64> => into,
    }
}
