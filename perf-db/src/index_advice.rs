//! Index advice: candidate btree indexes from the statements' predicates
//! (equality columns first, then one range column, or the ORDER BY columns),
//! skipping those an existing btree index already covers by prefix, each
//! *verified* on the real database with hypopg hypothetical indexes: EXPLAIN
//! cost before and after, kept only above a saving threshold. Statements
//! with `$n` parameters are planned generically. Nothing is created unless the
//! caller runs the statement the advice gives.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::db_error;
use crate::{Clause, Error, PredicateKind, Result, Views, analyze_with_views};

/// How demanding the advice is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdviceOptions {
    /// Keep a candidate only when it cuts a statement's planned cost by at
    /// least this fraction (default 0.5).
    pub min_saving: f64,
}

impl Default for AdviceOptions {
    fn default() -> Self {
        Self { min_saving: 0.5 }
    }
}

/// What an index would do for one statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementGain {
    /// The statement.
    pub query: String,
    /// Planned total cost now (`None` when unverified).
    pub cost_before: Option<f64>,
    /// Planned total cost with the hypothetical index.
    pub cost_after: Option<f64>,
}

/// One recommended index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexAdvice {
    /// Table.
    pub table: String,
    /// Columns, in index order.
    pub columns: Vec<String>,
    /// Whether hypopg confirmed the saving (false when hypopg is not installed).
    pub verified: bool,
    /// The statements it helps, with their costs.
    pub helps: Vec<StatementGain>,
    /// The statement to create it without blocking writes.
    pub create_statement: String,
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

/// Candidate indexes per statement: (table, columns) -> statements.
fn candidates(queries: &[String], views: &Views) -> BTreeMap<(String, Vec<String>), Vec<String>> {
    let mut out: BTreeMap<(String, Vec<String>), Vec<String>> = BTreeMap::new();
    for q in queries {
        let Ok(a) = analyze_with_views(q, views) else {
            continue;
        };
        for table in &a.tables {
            // System catalogs are not ours to index.
            let bare = table.rsplit('.').next().unwrap_or(table);
            if bare.starts_with("pg_") || table.starts_with("information_schema.") {
                continue;
            }
            let mine = |clause: Clause, kinds: &[PredicateKind]| -> Vec<String> {
                let mut cols: Vec<String> = a
                    .columns
                    .iter()
                    .filter(|u| {
                        u.table.as_deref() == Some(table.as_str())
                            && u.clause == clause
                            && u.predicate.is_some_and(|p| kinds.contains(&p))
                    })
                    .map(|u| u.column.clone())
                    .collect();
                cols.dedup();
                cols
            };
            let mut columns: Vec<String> = mine(Clause::Where, &[PredicateKind::Equality])
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let range = mine(
                Clause::Where,
                &[PredicateKind::Range, PredicateKind::LikePrefix],
            );
            if let Some(first) = range.into_iter().find(|c| !columns.contains(c)) {
                columns.push(first);
            } else if a.tables.len() == 1 {
                let order: Vec<String> = a
                    .columns
                    .iter()
                    .filter(|u| {
                        u.clause == Clause::OrderBy && u.table.as_deref() == Some(table.as_str())
                    })
                    .map(|u| u.column.clone())
                    .collect();
                for c in order {
                    if !columns.contains(&c) {
                        columns.push(c);
                    }
                }
            }
            if columns.is_empty() {
                continue;
            }
            out.entry((table.clone(), columns))
                .or_default()
                .push(q.clone());
        }
    }
    out
}

/// Column lists of the table's existing btree indexes.
async fn existing_btrees(client: &Client, table: &str) -> Result<Vec<Vec<String>>> {
    let rows = client
        .query(
            "/* perf-db */ SELECT array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = to_regclass($1) AND i.indpred IS NULL
             GROUP BY i.indexrelid",
            &[&table],
        )
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|r| r.try_get::<_, Vec<String>>(0).map_err(db_error))
        .collect()
}

/// The number of `$n` parameters a statement uses.
fn parameter_count(query: &str) -> usize {
    let mut max = 0;
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits: String = query[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                max = max.max(n);
            }
            i += 1 + digits.len();
        } else {
            i += 1;
        }
    }
    max
}

/// The planner's total cost of a statement (generic plan when it has `$n`).
async fn planned_cost(client: &Client, query: &str) -> Result<f64> {
    let params = parameter_count(query);
    let plan = if params == 0 {
        client
            .query(&format!("/* perf-db */ EXPLAIN {query}"), &[])
            .await
            .map_err(db_error)?
    } else {
        client
            .batch_execute(&format!("/* perf-db */ DEALLOCATE ALL; /* perf-db */ SET plan_cache_mode = force_generic_plan; /* perf-db */ PREPARE perf_advice AS {query}"))
            .await
            .map_err(db_error)?;
        let nulls = vec!["NULL"; params].join(", ");
        let plan = client
            .query(
                &format!("/* perf-db */ EXPLAIN EXECUTE perf_advice({nulls})"),
                &[],
            )
            .await
            .map_err(db_error);
        let _ = client
            .batch_execute(
                "/* perf-db */ DEALLOCATE perf_advice; /* perf-db */ RESET plan_cache_mode",
            )
            .await;
        plan?
    };
    let first: String = plan
        .first()
        .ok_or_else(|| Error::Database("EXPLAIN returned no plan".to_owned()))?
        .try_get(0)
        .map_err(db_error)?;
    first
        .split("cost=")
        .nth(1)
        .and_then(|c| c.split("..").nth(1))
        .and_then(|c| c.split_whitespace().next())
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::Database(format!("cannot read the cost of {first:?}")))
}

/// Advice for the given statements. With hypopg installed (it is created in
/// the database if available), every candidate is verified and kept only
/// above `min_saving`; without it, candidates come back unverified.
pub async fn advise_indexes(
    client: &Client,
    queries: &[String],
    options: &AdviceOptions,
) -> Result<Vec<IndexAdvice>> {
    let hypopg = client
        .batch_execute("/* perf-db */ CREATE EXTENSION IF NOT EXISTS hypopg")
        .await
        .is_ok();
    let views = Views::from_catalog(client).await?;
    let mut advice = Vec::new();
    let mut existing: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for ((table, columns), statements) in candidates(queries, &views) {
        if !existing.contains_key(&table) {
            existing.insert(table.clone(), existing_btrees(client, &table).await?);
        }
        let covered = existing[&table]
            .iter()
            .any(|index| index.len() >= columns.len() && index[..columns.len()] == columns[..]);
        if covered {
            continue;
        }
        let create = format!(
            "CREATE INDEX CONCURRENTLY ON {} ({})",
            quote_table(&table),
            columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !hypopg {
            advice.push(IndexAdvice {
                table,
                columns,
                verified: false,
                helps: statements
                    .into_iter()
                    .map(|query| StatementGain {
                        query,
                        cost_before: None,
                        cost_after: None,
                    })
                    .collect(),
                create_statement: create,
            });
            continue;
        }
        let mut helps = Vec::new();
        for query in statements {
            let Ok(before) = planned_cost(client, &query).await else {
                continue;
            };
            let hypothetical = create.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX");
            client
                .query(
                    "/* perf-db */ SELECT * FROM hypopg_create_index($1)",
                    &[&hypothetical],
                )
                .await
                .map_err(db_error)?;
            let after = planned_cost(client, &query).await;
            client
                .batch_execute("/* perf-db */ SELECT hypopg_reset()")
                .await
                .map_err(db_error)?;
            let Ok(after) = after else { continue };
            if before > 0.0 && 1.0 - after / before >= options.min_saving {
                helps.push(StatementGain {
                    query,
                    cost_before: Some(before),
                    cost_after: Some(after),
                });
            }
        }
        if !helps.is_empty() {
            advice.push(IndexAdvice {
                table,
                columns,
                verified: true,
                helps,
                create_statement: create,
            });
        }
    }
    Ok(advice)
}

/// An index created by [`apply_index`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Creates the index an advice describes, `CONCURRENTLY` (writes go on),
/// and checks that it is valid; a failed build's invalid index is dropped.
/// The statement is rebuilt from the advice's table and columns (quoted), so
/// an edited `create_statement` cannot run anything else. Only call this on
/// an explicit request: an index costs every write to the table.
pub async fn apply_index(client: &Client, advice: &IndexAdvice) -> Result<AppliedIndex> {
    if advice.columns.is_empty() {
        return Err(Error::Database(
            "the advice names no columns: nothing to index".to_owned(),
        ));
    }
    let name = index_name(&advice.table, &advice.columns);
    let statement = format!(
        "CREATE INDEX CONCURRENTLY {} ON {} ({})",
        quote_ident(&name),
        quote_table(&advice.table),
        advice
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Err(e) = client.batch_execute(&statement).await {
        let e = db_error(e);
        // A failed concurrent build leaves an invalid index behind, unless the
        // name was already taken (then the index is someone else's).
        if !e.to_string().contains("already exists") {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_put_equality_before_range_and_skip_nothing_to_index() {
        let c = candidates(
            &[
                "SELECT * FROM items WHERE price > $1 AND category = $2".to_owned(),
                "SELECT * FROM items ORDER BY created_at".to_owned(),
                "SELECT 1".to_owned(),
            ],
            &Views::new(),
        );
        let keys: Vec<_> = c.keys().cloned().collect();
        assert!(
            keys.contains(&(
                "items".to_owned(),
                vec!["category".to_owned(), "price".to_owned()]
            )),
            "{keys:?}"
        );
        assert!(
            keys.contains(&("items".to_owned(), vec!["created_at".to_owned()])),
            "{keys:?}"
        );
        assert_eq!(keys.len(), 2);
        assert_eq!(parameter_count("SELECT $1, $12, '$x'"), 12);
        assert_eq!(quote_table("public.Items"), "public.\"Items\"");
    }
}
