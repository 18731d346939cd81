//! Index advice: candidate btree indexes from the statements' predicates
//! (equality columns first, then a range column or the `ORDER BY` keys, the
//! join keys of the inner side), skipping those an existing btree index
//! already covers by prefix, each *verified* on the real database with
//! hypopg hypothetical indexes: with all of a statement's candidates present,
//! the planner picks the ones it uses, and they are kept when the planned
//! cost falls by the saving threshold. Statements with `$n` parameters are
//! planned generically. A statement that cannot be planned, or whose
//! candidates hypopg refuses, is listed as skipped with the reason; the others
//! still get advice. [`advise_workload`] chooses one set for a whole
//! workload. Nothing is created unless the caller runs the statement the
//! advice gives ([`apply_index`]).

mod candidates;
mod planner;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

pub use candidates::{INDEX_MAX_KEYS, IndexKey};
pub use workload::{
    RejectedCandidate, WorkloadAdvice, WorkloadIndex, WorkloadOptions, WorkloadOptionsBuilder,
    WorkloadStatement, advise_workload,
};

use crate::error::db_error;
use crate::{Error, QueryAnalysis, Result, Views, analyze_with_views};
use candidates::Candidate;
use planner::{Planner, TableInfo, plan_uses};

/// How demanding the advice is, and what it may look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdviceOptions {
    /// Keep a candidate only when it cuts a statement's planned cost by at
    /// least this fraction (default 0.5).
    pub min_saving: f64,
    /// A statement whose planned cost is below this is not worth an index
    /// (default 0: every statement is tried; Dexter uses 100).
    pub min_cost: f64,
    /// Only these tables (bare or schema-qualified names); empty: all.
    pub include_tables: Vec<String>,
    /// Never these tables.
    pub exclude_tables: Vec<String>,
    /// `CREATE INDEX CONCURRENTLY` (default), or a plain `CREATE INDEX`,
    /// which blocks writes to the table while it builds.
    pub concurrently: bool,
    /// `ANALYZE` the statements' tables whose statistics are missing or
    /// older than a tenth of their rows' changes before advising (default
    /// off: it reads the tables).
    pub analyze_stale: bool,
}

impl Default for AdviceOptions {
    fn default() -> Self {
        Self {
            min_saving: 0.5,
            min_cost: 0.0,
            include_tables: Vec::new(),
            exclude_tables: Vec::new(),
            concurrently: true,
            analyze_stale: false,
        }
    }
}

impl AdviceOptions {
    /// The first option out of range, named.
    pub fn validate(&self) -> Result<()> {
        if !(self.min_saving.is_finite() && (0.0..=1.0).contains(&self.min_saving)) {
            return Err(Error::Invalid(format!(
                "min_saving must be between 0 and 1, got {}",
                self.min_saving
            )));
        }
        if !(self.min_cost.is_finite() && self.min_cost >= 0.0) {
            return Err(Error::Invalid(format!(
                "min_cost must be a finite number >= 0, got {}",
                self.min_cost
            )));
        }
        Ok(())
    }

    /// Whether advice may cover `table`. A listed name without a schema
    /// matches the table in any schema; with one, an unqualified table
    /// counts as `public`.
    fn allows(&self, table: &str) -> bool {
        let bare = table.rsplit('.').next().unwrap_or(table);
        let qualified = |name: &str| {
            if name.contains('.') {
                name.to_owned()
            } else {
                format!("public.{name}")
            }
        };
        let named = |list: &[String]| {
            list.iter().any(|t| {
                if t.contains('.') {
                    qualified(t) == qualified(table)
                } else {
                    t == bare
                }
            })
        };
        (self.include_tables.is_empty() || named(&self.include_tables))
            && !named(&self.exclude_tables)
    }
}

/// What an index would do for one statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatementGain {
    /// The statement.
    pub query: String,
    /// Planned total cost now (`None` when unverified).
    pub cost_before: Option<f64>,
    /// Planned total cost with the advised indexes.
    pub cost_after: Option<f64>,
}

/// One recommended index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IndexAdvice {
    /// Table (the root of a partition tree for a partition).
    pub table: String,
    /// Key column names, in index order.
    pub columns: Vec<String>,
    /// The keys with their directions (`DESC`, `NULLS FIRST`) when an
    /// `ORDER BY` needs them; the same columns as `columns`.
    #[serde(default)]
    pub keys: Vec<IndexKey>,
    /// Whether hypopg confirmed the saving (false when hypopg is not installed).
    pub verified: bool,
    /// The statements it helps, with their costs.
    pub helps: Vec<StatementGain>,
    /// Whether it is built without blocking writes.
    #[serde(default = "yes")]
    pub concurrently: bool,
    /// The statement that creates it.
    pub create_statement: String,
}

fn yes() -> bool {
    true
}

/// A statement the advice could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkippedStatement {
    /// The statement.
    pub query: String,
    /// Why (the parser's or PostgreSQL's message, hypopg's refusal, or the cost floor).
    pub reason: String,
}

/// Index advice for a set of statements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Advice {
    /// Indexes worth adding.
    pub indexes: Vec<IndexAdvice>,
    /// Statements that were not advised on, with the reason.
    pub skipped: Vec<SkippedStatement>,
    /// Tables analyzed first (with [`AdviceOptions::analyze_stale`]).
    pub analyzed: Vec<String>,
}

fn quote_ident(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.is_empty()
    {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn quote_table(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

fn create_statement(
    table: &str,
    keys: &[IndexKey],
    concurrently: bool,
    name: Option<&str>,
) -> String {
    format!(
        "CREATE INDEX {}{}ON {} ({})",
        if concurrently { "CONCURRENTLY " } else { "" },
        name.map(|n| format!("{} ", quote_ident(n)))
            .unwrap_or_default(),
        quote_table(table),
        keys.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A candidate that is not already served by an existing index's prefix
/// (same columns; directions matter only when some key is descending).
fn covered(candidate: &Candidate, existing: &[Vec<String>]) -> bool {
    let columns = candidate.columns();
    let plain = candidate
        .keys
        .iter()
        .all(|k| !k.descending && !k.nulls_first);
    plain
        && existing
            .iter()
            .any(|index| index.len() >= columns.len() && index[..columns.len()] == columns[..])
}

/// One statement made ready for the planner: its candidates (on the table
/// advice is given on) and its cost without them.
struct Prepared {
    query: String,
    analysis: QueryAnalysis,
    candidates: Vec<(Candidate, Arc<TableInfo>)>,
    cost_before: f64,
}

/// The analysis of one statement, or why it is skipped.
fn parse(query: &str, views: &Views) -> std::result::Result<QueryAnalysis, String> {
    analyze_with_views(query, views).map_err(|e| format!("cannot be parsed: {e}"))
}

/// Collects candidates and plans one parsed statement; `Err` is the reason
/// to skip it. `Ok(None)`: nothing to index.
async fn prepare(
    planner: &mut Planner<'_>,
    query: &str,
    analysis: QueryAnalysis,
    options: &AdviceOptions,
) -> std::result::Result<Option<Prepared>, String> {
    if !analysis.planned {
        // DDL, utility and transaction statements: no index serves them.
        return Ok(None);
    }
    let mut found = Vec::new();
    let mut refusals = Vec::new();
    let mut missing = false;
    for table in &analysis.tables {
        let bare = table.rsplit('.').next().unwrap_or(table);
        if bare.starts_with("pg_") || table.starts_with("information_schema.") {
            continue;
        }
        let info = match planner.table(table).await {
            Ok(Some(info)) => info,
            // Not a relation here: the planner says why below.
            Ok(None) => {
                missing = true;
                continue;
            }
            Err(e) => return Err(format!("cannot read the catalog for {table}: {e}")),
        };
        if !options.allows(table) || !options.allows(&info.advise_on) {
            continue;
        }
        let list = candidates::for_table(&analysis, table, &info.stats);
        if let Some(refusal) = &info.refusal {
            if !list.is_empty() {
                refusals.push(refusal.clone());
            }
            continue;
        }
        for mut c in list {
            c.table = info.advise_on.clone();
            if !covered(&c, &info.existing) && !found.iter().any(|(f, _)| f == &c) {
                found.push((c, Arc::clone(&info)));
            }
        }
    }
    if found.is_empty() && refusals.is_empty() {
        // Filtered columns that belong to no table: a view's computed
        // column, a materialized CTE's output, an expression.
        let unresolved: BTreeSet<&str> = analysis
            .columns
            .iter()
            .filter(|u| u.table.is_none() && u.clause == crate::Clause::Where)
            .map(|u| u.column.as_str())
            .collect();
        if !unresolved.is_empty() && analysis.tables.iter().any(|t| options.allows(t)) {
            refusals.push(format!(
                "no table column behind {}: computed (a view's expression or aggregate) or \
                 behind a MATERIALIZED CTE, so no index can serve it",
                unresolved.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if found.is_empty() && !missing {
        return if refusals.is_empty() {
            Ok(None)
        } else {
            Err(refusals.join("; "))
        };
    }
    let (cost_before, _) = planner
        .plan(query)
        .await
        .map_err(|e| format!("cannot be explained: {e}"))?;
    if found.is_empty() {
        return Ok(None);
    }
    if cost_before < options.min_cost {
        return Err(format!(
            "planned cost {cost_before:.1} is below min_cost {}",
            options.min_cost
        ));
    }
    Ok(Some(Prepared {
        query: query.to_owned(),
        analysis,
        candidates: found,
        cost_before,
    }))
}

/// With all of a statement's candidates present: the cost, and the
/// candidates its plan uses. `Err` is the reason to skip it.
async fn try_candidates(
    planner: &Planner<'_>,
    prepared: &Prepared,
) -> std::result::Result<(f64, Vec<Candidate>), String> {
    // (candidate, its table, hypothetical oids: empty once dropped)
    let mut created: Vec<(Candidate, &TableInfo, Vec<u32>)> = Vec::new();
    let mut refusals = Vec::new();
    for (c, info) in &prepared.candidates {
        match planner.create(c, info).await {
            Ok(oids) => created.push((c.clone(), info, oids)),
            Err(e) => refusals.push(format!(
                "hypopg refused an index on {} ({}): {e}",
                c.table,
                c.columns().join(", ")
            )),
        }
    }
    let planned = if created.is_empty() {
        Err(refusals.join("; "))
    } else {
        planner
            .plan(&prepared.query)
            .await
            .map_err(|e| format!("cannot be explained with hypothetical indexes: {e}"))
    };
    let (mut cost, mut plan) = match planned {
        Ok(found) => found,
        Err(e) => {
            for (_, _, oids) in &created {
                planner.drop(oids).await;
            }
            return Err(e);
        }
    };
    // Prefer the narrower index when it plans within 2 %: a wider one used
    // where a candidate that is its prefix would do is dropped and the
    // statement planned again.
    let mut by_width: Vec<usize> = (0..created.len()).collect();
    by_width.sort_by_key(|&i| std::cmp::Reverse(created[i].0.keys.len()));
    for i in by_width {
        let (wide, info, oids) = &created[i];
        if oids.is_empty() || !plan_uses(&plan, oids) {
            continue;
        }
        let has_prefix = created.iter().any(|(c, _, o)| {
            !o.is_empty()
                && c.table == wide.table
                && c.keys.len() < wide.keys.len()
                && wide.keys[..c.keys.len()] == c.keys[..]
        });
        if !has_prefix {
            continue;
        }
        planner.drop(oids).await;
        let narrower = planner.plan(&prepared.query).await;
        if let Ok((narrow_cost, narrow_plan)) = narrower
            && narrow_cost <= cost * 1.02
        {
            cost = narrow_cost;
            plan = narrow_plan;
            created[i].2 = Vec::new();
        } else {
            // Back as it was (new oids: the plan is read again).
            let again = planner.create(wide, info).await.unwrap_or_default();
            created[i].2 = again;
            if let Ok((c, p)) = planner.plan(&prepared.query).await {
                cost = c;
                plan = p;
            }
        }
    }
    for (_, _, oids) in &created {
        planner.drop(oids).await;
    }
    let used = created
        .into_iter()
        .filter(|(_, _, oids)| !oids.is_empty() && plan_uses(&plan, oids))
        .map(|(c, _, _)| c)
        .collect();
    Ok((cost, used))
}

/// Advice for the given statements. With hypopg installed (it is created in
/// the database if available), every candidate is verified and kept only
/// above `min_saving`; without it, candidates come back unverified. A
/// statement that cannot be parsed or planned is in [`Advice::skipped`]
/// with the reason, never an error for the others; an error is returned
/// only when the session itself fails.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn advise_indexes(
    client: &Client,
    queries: &[String],
    options: &AdviceOptions,
) -> Result<Advice> {
    options.validate()?;
    let mut planner = Planner::start(client).await?;
    let result = advise_with(&mut planner, queries, options).await;
    planner.finish().await;
    result
}

async fn advise_with(
    planner: &mut Planner<'_>,
    queries: &[String],
    options: &AdviceOptions,
) -> Result<Advice> {
    let views = Views::from_catalog(planner.client()).await?;
    let mut out = Advice::default();
    let mut seen = BTreeSet::new();
    let parsed: Vec<(&String, std::result::Result<QueryAnalysis, String>)> = queries
        .iter()
        .filter(|q| seen.insert(q.as_str()))
        .map(|q| (q, parse(q, &views)))
        .collect();
    if options.analyze_stale {
        let tables: BTreeSet<String> = parsed
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok())
            .flat_map(|a| a.tables.iter().cloned())
            .collect();
        out.analyzed = planner.analyze_stale(&tables).await?;
    }
    let mut advised: BTreeMap<Candidate, Vec<StatementGain>> = BTreeMap::new();
    for (query, analysis) in parsed {
        let prepared = match analysis {
            Ok(analysis) => prepare(planner, query, analysis, options).await,
            Err(reason) => Err(reason),
        };
        let prepared = match prepared {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(reason) => {
                out.skipped.push(SkippedStatement {
                    query: query.clone(),
                    reason,
                });
                continue;
            }
        };
        if !planner.hypopg {
            for (c, _) in prepared.candidates {
                advised.entry(c).or_default().push(StatementGain {
                    query: query.clone(),
                    cost_before: None,
                    cost_after: None,
                });
            }
            continue;
        }
        match try_candidates(planner, &prepared).await {
            Err(reason) => out.skipped.push(SkippedStatement {
                query: query.clone(),
                reason,
            }),
            Ok((after, used)) => {
                let before = prepared.cost_before;
                if before > 0.0 && 1.0 - after / before >= options.min_saving {
                    for c in used {
                        advised.entry(c).or_default().push(StatementGain {
                            query: query.clone(),
                            cost_before: Some(before),
                            cost_after: Some(after),
                        });
                    }
                }
            }
        }
    }
    out.indexes = advised
        .into_iter()
        .map(|(c, helps)| index_advice(&c, planner.hypopg, helps, options.concurrently))
        .collect();
    Ok(out)
}

fn index_advice(
    c: &Candidate,
    verified: bool,
    helps: Vec<StatementGain>,
    concurrently: bool,
) -> IndexAdvice {
    IndexAdvice {
        table: c.table.clone(),
        columns: c.columns(),
        keys: c.keys.clone(),
        verified,
        helps,
        concurrently,
        create_statement: create_statement(&c.table, &c.keys, concurrently, None),
    }
}

/// An index created by [`apply_index`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppliedIndex {
    /// Its name.
    pub name: String,
    /// The statement that was run.
    pub statement: String,
}

/// The name [`apply_index`] gives: `<table>_<columns>_perf_idx`, within
/// PostgreSQL's 63 bytes.
fn index_name(table: &str, columns: &[String]) -> String {
    let short = table.rsplit('.').next().unwrap_or(table);
    let mut name = format!("{short}_{}", columns.join("_"))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>();
    name.truncate(63 - "_perf_idx".len());
    name.push_str("_perf_idx");
    name
}

/// Creates the index an advice describes, `CONCURRENTLY` unless the advice
/// says otherwise, and checks that it is valid; a failed build's invalid
/// index is dropped. The statement is rebuilt from the advice's table and
/// keys (quoted), so an edited `create_statement` cannot run anything else.
/// Only call this on an explicit request: an index costs every write to the
/// table.
#[tracing::instrument(level = "debug", skip_all, fields(table = %advice.table))]
pub async fn apply_index(client: &Client, advice: &IndexAdvice) -> Result<AppliedIndex> {
    if advice.columns.is_empty() {
        return Err(Error::Database(
            "the advice names no columns: nothing to index".to_owned(),
        ));
    }
    if advice.columns.len() > INDEX_MAX_KEYS {
        return Err(Error::Invalid(format!(
            "columns: {} given, PostgreSQL indexes at most {INDEX_MAX_KEYS}",
            advice.columns.len()
        )));
    }
    let keys: Vec<IndexKey> = if advice.keys.len() == advice.columns.len()
        && advice
            .keys
            .iter()
            .zip(&advice.columns)
            .all(|(k, c)| &k.column == c)
    {
        advice.keys.clone()
    } else {
        advice.columns.iter().map(IndexKey::ascending).collect()
    };
    let name = index_name(&advice.table, &advice.columns);
    let statement = create_statement(&advice.table, &keys, advice.concurrently, Some(&name));
    if let Err(e) = client.batch_execute(&statement).await {
        let e = db_error(e);
        // A failed concurrent build leaves an invalid index behind, unless the
        // name was already taken (then the index is someone else's).
        if advice.concurrently && !e.to_string().contains("already exists") {
            let _ = client
                .batch_execute(&format!(
                    "/* perf-db */ DROP INDEX CONCURRENTLY IF EXISTS {}",
                    quote_ident(&name)
                ))
                .await;
        }
        return Err(e);
    }
    let valid: bool = client
        .query_one(
            "/* perf-db */ SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&name],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if !valid {
        return Err(Error::Database(format!(
            "index {name} was built but is not valid; drop it and retry"
        )));
    }
    Ok(AppliedIndex { name, statement })
}

perf_core::config_builder! {
    /// Builds [`AdviceOptions`].
    AdviceOptions => AdviceOptionsBuilder, Error {
        min_saving: f64,
        min_cost: f64,
        include_tables: Vec<String>,
        exclude_tables: Vec<String>,
        concurrently: bool,
        analyze_stale: bool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_names_and_carry_directions() {
        assert_eq!(quote_table("public.Items"), "public.\"Items\"");
        let keys = [
            IndexKey::ascending("a"),
            IndexKey {
                column: "B".into(),
                descending: true,
                nulls_first: false,
            },
        ];
        assert_eq!(
            create_statement("t", &keys, false, Some("t_a_b_perf_idx")),
            "CREATE INDEX t_a_b_perf_idx ON t (a, \"B\" DESC NULLS LAST)"
        );
        assert_eq!(
            create_statement("s.t", &keys[..1], true, None),
            "CREATE INDEX CONCURRENTLY ON s.t (a)"
        );
        let options = AdviceOptions {
            include_tables: vec!["orders".into()],
            exclude_tables: vec!["public.audit".into()],
            ..AdviceOptions::default()
        };
        assert!(options.allows("public.orders") && !options.allows("users"));
        assert!(
            !AdviceOptions {
                exclude_tables: vec!["public.audit".into()],
                ..AdviceOptions::default()
            }
            .allows("public.audit")
        );
        let bad = AdviceOptions {
            min_saving: 2.0,
            ..AdviceOptions::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("min_saving")
        );
    }
}
