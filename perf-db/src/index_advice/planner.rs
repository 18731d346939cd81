//! The planner's view through hypopg: planned costs (generic plans for
//! statements with `$n`), hypothetical indexes created and dropped, and
//! what the catalog says about each table. One session; everything this
//! module sets on it is undone by [`Planner::finish`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::candidates::{Candidate, TableStats};
use super::quote_table;
use crate::error::db_error;
use crate::{Error, Result};

/// What the catalog says about one table named in statements.
#[derive(Debug, Clone)]
pub(super) struct TableInfo {
    /// The name advice is given on: the root of a partition tree, else the table.
    pub(super) advise_on: String,
    /// `None` when it can be indexed, else why not.
    pub(super) refusal: Option<String>,
    /// The relations hypothetical indexes go on: the leaves of a
    /// partitioned table (hypopg cannot index the parent), else the table.
    pub(super) hypothetical_on: Vec<String>,
    /// Key columns of existing valid btree indexes (no predicate), in order.
    pub(super) existing: Vec<Vec<String>>,
    pub(super) stats: TableStats,
    /// Writes counted by `pg_stat_user_tables` since its reset.
    pub(super) writes: TableWrites,
}

/// Row writes of a table since the statistics were reset.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct TableWrites {
    pub(super) inserted: f64,
    pub(super) updated: f64,
    pub(super) hot_updated: f64,
    pub(super) deleted: f64,
}

pub(super) struct Planner<'c> {
    client: &'c Client,
    pub(super) hypopg: bool,
    tables: BTreeMap<String, Option<Arc<TableInfo>>>,
}

/// The number of `$n` parameters a statement uses.
pub(super) fn parameter_count(query: &str) -> usize {
    let bytes = query.as_bytes();
    let mut max = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() && end - start < 6 {
                end += 1;
            }
            if let Ok(n) = query[start..end].parse::<usize>() {
                max = max.max(n);
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    max
}

/// The total cost on the first line of a text plan.
fn top_cost(plan: &str) -> Option<f64> {
    plan.lines()
        .next()?
        .split("cost=")
        .nth(1)?
        .split("..")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl<'c> Planner<'c> {
    /// Creates hypopg when it can and plans generically from here on.
    pub(super) async fn start(client: &'c Client) -> Result<Self> {
        let hypopg = client
            .batch_execute("/* perf-db */ CREATE EXTENSION IF NOT EXISTS hypopg")
            .await
            .is_ok();
        client
            .batch_execute("/* perf-db */ SET plan_cache_mode = force_generic_plan")
            .await
            .map_err(db_error)?;
        if hypopg {
            client
                .batch_execute("/* perf-db */ SELECT hypopg_reset()")
                .await
                .map_err(db_error)?;
        }
        Ok(Self {
            client,
            hypopg,
            tables: BTreeMap::new(),
        })
    }

    pub(super) fn client(&self) -> &'c Client {
        self.client
    }

    /// Drops every hypothetical index and restores the session's settings.
    pub(super) async fn finish(self) {
        if self.hypopg {
            let _ = self
                .client
                .batch_execute("/* perf-db */ SELECT hypopg_reset()")
                .await;
        }
        let _ = self
            .client
            .batch_execute("/* perf-db */ RESET plan_cache_mode")
            .await;
    }

    /// The statement's plan (text) and its total cost. `$n` parameters get
    /// a generic plan through a prepared statement.
    pub(super) async fn plan(&self, query: &str) -> Result<(f64, String)> {
        let params = parameter_count(query);
        if params > usize::from(u16::MAX) {
            return Err(Error::Database(format!(
                "the statement names ${params}; PostgreSQL allows at most 65535 parameters"
            )));
        }
        let batch = if params == 0 {
            format!("/* perf-db */ EXPLAIN {query}")
        } else {
            let nulls = vec!["NULL"; params].join(", ");
            format!(
                "/* perf-db */ PREPARE perf_advice AS {query};
                 /* perf-db */ EXPLAIN EXECUTE perf_advice({nulls});
                 /* perf-db */ DEALLOCATE perf_advice"
            )
        };
        let messages = match self.client.simple_query(&batch).await {
            Ok(m) => m,
            Err(e) => {
                if params > 0 {
                    let _ = self
                        .client
                        .batch_execute("/* perf-db */ DEALLOCATE perf_advice")
                        .await;
                }
                return Err(db_error(e));
            }
        };
        let mut plan = String::new();
        for m in &messages {
            if let SimpleQueryMessage::Row(row) = m
                && let Some(line) = row.get(0)
            {
                plan.push_str(line);
                plan.push('\n');
            }
        }
        let cost = top_cost(&plan)
            .ok_or_else(|| Error::Database("EXPLAIN returned no cost".to_owned()))?;
        Ok((cost, plan))
    }

    /// Creates a candidate hypothetically (on every leaf of a partitioned
    /// table) and returns the hypothetical indexes' oids; on refusal none
    /// is left behind.
    pub(super) async fn create(&self, candidate: &Candidate, info: &TableInfo) -> Result<Vec<u32>> {
        let keys = candidate
            .keys
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut oids = Vec::new();
        for relation in &info.hypothetical_on {
            let sql = format!("CREATE INDEX ON {} ({keys})", quote_table(relation));
            match self
                .client
                .query_one(
                    "/* perf-db */ SELECT indexrelid FROM hypopg_create_index($1)",
                    &[&sql],
                )
                .await
            {
                Ok(row) => oids.push(row.try_get::<_, u32>(0).map_err(db_error)?),
                Err(e) => {
                    self.drop(&oids).await;
                    return Err(db_error(e));
                }
            }
        }
        Ok(oids)
    }

    /// Drops hypothetical indexes.
    pub(super) async fn drop(&self, oids: &[u32]) {
        for oid in oids {
            let _ = self
                .client
                .query("/* perf-db */ SELECT hypopg_drop_index($1)", &[oid])
                .await;
        }
    }

    /// hypopg's size estimate of a hypothetical index, in bytes.
    pub(super) async fn size(&self, oids: &[u32]) -> u64 {
        let mut total = 0u64;
        for oid in oids {
            if let Ok(row) = self
                .client
                .query_one("/* perf-db */ SELECT hypopg_relation_size($1)", &[oid])
                .await
                && let Ok(bytes) = row.try_get::<_, i64>(0)
            {
                total = total.saturating_add(u64::try_from(bytes).unwrap_or(0));
            }
        }
        total
    }

    /// What the catalog says about a table, once per table; `None` when the
    /// name is not a relation of this database.
    pub(super) async fn table(&mut self, name: &str) -> Result<Option<Arc<TableInfo>>> {
        if let Some(known) = self.tables.get(name) {
            return Ok(known.clone());
        }
        let info = self.read_table(name).await?.map(Arc::new);
        self.tables.insert(name.to_owned(), info.clone());
        Ok(info)
    }

    async fn read_table(&self, name: &str) -> Result<Option<TableInfo>> {
        let row = self
            .client
            .query_opt(
                "/* perf-db */ SELECT c.relkind::text, c.relispartition,
                        coalesce(pg_partition_root(c.oid), c.oid)::regclass::text,
                        greatest(c.reltuples, 0)::float8
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&name],
            )
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let relkind: String = row.get(0);
        let is_partition: bool = row.get(1);
        let root: String = row.get(2);
        let mut rows: f64 = row.get(3);
        let root_name = if is_partition { root } else { name.to_owned() };
        let refusal = match relkind.as_str() {
            "r" | "m" | "p" => None,
            "f" => Some(format!(
                "{name} is a foreign table: PostgreSQL cannot index it"
            )),
            "v" => Some(format!(
                "{name} is a view whose column is computed or not a plain column of one table"
            )),
            other => Some(format!(
                "{name} is a relation of kind '{other}' that cannot be indexed"
            )),
        };
        let root_partitioned = relkind == "p" || is_partition;
        let hypothetical_on = if root_partitioned {
            self.client
                .query(
                    "/* perf-db */ SELECT relid::regclass::text FROM pg_partition_tree(to_regclass($1)) WHERE isleaf",
                    &[&root_name],
                )
                .await
                .map_err(db_error)?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
        } else {
            vec![name.to_owned()]
        };
        if root_partitioned {
            rows = self
                .client
                .query_one(
                    "/* perf-db */ SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8
                     FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf",
                    &[&root_name],
                )
                .await
                .map_err(db_error)?
                .get(0);
        }
        let existing_rows = self
            .client
            .query(
                "/* perf-db */ SELECT array_agg(a.attname::text ORDER BY k.ord)
                 FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
                 CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = to_regclass($1) AND i.indpred IS NULL AND i.indisvalid
                 GROUP BY i.indexrelid",
                &[&root_name],
            )
            .await
            .map_err(db_error)?;
        let existing = existing_rows
            .iter()
            .map(|r| r.try_get::<_, Vec<String>>(0).map_err(db_error))
            .collect::<Result<Vec<_>>>()?;
        let stat_rows = self
            .client
            .query(
                "/* perf-db */ SELECT s.attname::text, avg(s.n_distinct)::float8 FROM pg_stats s
                 JOIN pg_namespace n ON n.nspname = s.schemaname
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
                 WHERE c.oid = to_regclass($1)
                 GROUP BY s.attname",
                &[&root_name],
            )
            .await
            .map_err(db_error)?;
        let mut distinct = BTreeMap::new();
        for r in stat_rows {
            let (column, n): (String, f64) = (r.get(0), r.get(1));
            distinct.insert(column, if n < 0.0 { -n * rows } else { n });
        }
        let mut writes = TableWrites::default();
        for leaf in &hypothetical_on {
            if let Some(w) = self
                .client
                .query_opt(
                    "/* perf-db */ SELECT n_tup_ins::float8, n_tup_upd::float8, n_tup_hot_upd::float8, n_tup_del::float8
                     FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
                    &[leaf],
                )
                .await
                .map_err(db_error)?
            {
                writes.inserted += w.get::<_, f64>(0);
                writes.updated += w.get::<_, f64>(1);
                writes.hot_updated += w.get::<_, f64>(2);
                writes.deleted += w.get::<_, f64>(3);
            }
        }
        Ok(Some(TableInfo {
            advise_on: root_name,
            refusal,
            hypothetical_on,
            existing,
            stats: TableStats { rows, distinct },
            writes,
        }))
    }

    /// `ANALYZE`s the tables whose statistics are missing or older than a
    /// tenth of their rows' changes; returns the ones analyzed.
    pub(super) async fn analyze_stale(&mut self, tables: &BTreeSet<String>) -> Result<Vec<String>> {
        let mut analyzed = Vec::new();
        for table in tables {
            let Some(row) = self
                .client
                .query_opt(
                    "/* perf-db */ SELECT coalesce(last_analyze, last_autoanalyze) IS NULL
                            OR n_mod_since_analyze > 0.1 * greatest(n_live_tup, 1)
                     FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
                    &[table],
                )
                .await
                .map_err(db_error)?
            else {
                continue;
            };
            if row.get::<_, bool>(0) {
                self.client
                    .batch_execute(&format!("/* perf-db */ ANALYZE {}", quote_table(table)))
                    .await
                    .map_err(db_error)?;
                self.tables.remove(table);
                analyzed.push(table.clone());
            }
        }
        Ok(analyzed)
    }
}

/// Whether a plan uses any of the hypothetical indexes (`<oid>` in its name).
pub(super) fn plan_uses(plan: &str, oids: &[u32]) -> bool {
    oids.iter().any(|oid| plan.contains(&format!("<{oid}>")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_costs_are_read_without_panicking() {
        assert_eq!(parameter_count("SELECT $1, $12, '$x'"), 12);
        assert_eq!(parameter_count("SELECT $99999999999999999999"), 999_999);
        assert_eq!(parameter_count("$"), 0);
        assert_eq!(
            top_cost("Seq Scan on t  (cost=0.00..35.50 rows=2550 width=4)\n"),
            Some(35.5)
        );
        assert_eq!(top_cost("garbage"), None);
        assert!(plan_uses(
            "Index Scan using \"<13556>btree_p_k\" on p",
            &[1, 13556]
        ));
        assert!(!plan_uses(
            "Index Scan using \"<13556>btree_p_k\" on p",
            &[1355]
        ));
    }
}
