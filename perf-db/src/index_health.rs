//! Index health, as PgHero computes it: duplicate indexes (one a prefix of
//! another with the same access method and predicate), unused indexes (no
//! scans, largest first), and large tables read by sequential scans.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::db_error;
use crate::{Error, Result};

/// Thresholds of [`index_health`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthOptions {
    /// Tables with at least this many live rows count as large (default 10000).
    pub large_table_rows: i64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            large_table_rows: 10_000,
        }
    }
}

/// An index another one makes redundant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DuplicateIndex {
    /// Table.
    pub table: String,
    /// The redundant index.
    pub index: String,
    /// The index that covers it.
    pub covered_by: String,
    /// Size of the redundant index.
    pub size_bytes: i64,
    /// How to drop it.
    pub drop_statement: String,
}

/// An index no query has used since statistics were reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnusedIndex {
    /// Table.
    pub table: String,
    /// Index.
    pub index: String,
    /// Size.
    pub size_bytes: i64,
    /// How to drop it.
    pub drop_statement: String,
}

/// A large table read mostly by sequential scans: an index is probably missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeqScanHint {
    /// Table.
    pub table: String,
    /// Live rows.
    pub live_rows: i64,
    /// Sequential scans.
    pub seq_scans: i64,
    /// Index scans.
    pub index_scans: i64,
    /// Rows read by sequential scans.
    pub seq_rows_read: i64,
}

/// The three lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IndexHealth {
    /// Redundant indexes.
    pub duplicates: Vec<DuplicateIndex>,
    /// Unused indexes (primary keys and unique indexes excluded), largest first.
    pub unused: Vec<UnusedIndex>,
    /// Large tables read by sequential scans more than by index scans.
    pub missing_index_hints: Vec<SeqScanHint>,
}

struct IndexRow {
    table: String,
    name: String,
    qualified: String,
    columns: Vec<String>,
    method: String,
    predicate: Option<String>,
    expressions: Option<String>,
    unique: bool,
    size: i64,
}

/// Reads the statistics of the current database.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn index_health(client: &Client, options: &HealthOptions) -> Result<IndexHealth> {
    options.validate()?;
    let rows = client
        .query(
            "/* perf-db */ SELECT t.relname::text, c.relname::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                    i.indkey::text, am.amname::text, pg_get_expr(i.indpred, i.indrelid), pg_get_expr(i.indexprs, i.indrelid),
                    i.indisunique, pg_relation_size(c.oid)
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_am am ON am.oid = c.relam
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'",
            &[],
        )
        .await
        .map_err(db_error)?;
    let indexes = rows
        .iter()
        .map(|r| {
            Ok(IndexRow {
                table: r.try_get(0).map_err(db_error)?,
                name: r.try_get(1).map_err(db_error)?,
                qualified: r.try_get(2).map_err(db_error)?,
                columns: r
                    .try_get::<_, String>(3)
                    .map_err(db_error)?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                method: r.try_get(4).map_err(db_error)?,
                predicate: r.try_get(5).map_err(db_error)?,
                expressions: r.try_get(6).map_err(db_error)?,
                unique: r.try_get(7).map_err(db_error)?,
                size: r.try_get(8).map_err(db_error)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut duplicates = Vec::new();
    for a in &indexes {
        let covering = indexes.iter().find(|b| {
            b.name != a.name
                && b.table == a.table
                && b.method == a.method
                && b.predicate == a.predicate
                && a.expressions.is_none()
                && b.expressions.is_none()
                && b.columns.len() >= a.columns.len()
                && b.columns[..a.columns.len()] == a.columns[..]
                // A unique index is only redundant next to a unique index on the same columns.
                && (!a.unique || (b.unique && b.columns == a.columns))
                // Of two identical indexes, report one.
                && (b.columns != a.columns || b.unique != a.unique || b.name < a.name)
        });
        if let Some(b) = covering {
            duplicates.push(DuplicateIndex {
                table: a.table.clone(),
                index: a.name.clone(),
                covered_by: b.name.clone(),
                size_bytes: a.size,
                drop_statement: format!("DROP INDEX CONCURRENTLY {}", a.qualified),
            });
        }
    }
    let unused = client
        .query(
            "/* perf-db */ SELECT s.relname::text, s.indexrelname::text, quote_ident(s.schemaname) || '.' || quote_ident(s.indexrelname), pg_relation_size(s.indexrelid)
             FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
             WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
             ORDER BY pg_relation_size(s.indexrelid) DESC, s.indexrelname",
            &[],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| {
            let qualified: String = r.try_get(2).map_err(db_error)?;
            Ok(UnusedIndex {
                table: r.try_get(0).map_err(db_error)?,
                index: r.try_get(1).map_err(db_error)?,
                size_bytes: r.try_get(3).map_err(db_error)?,
                drop_statement: format!("DROP INDEX CONCURRENTLY {qualified}"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let missing_index_hints = client
        .query(
            "/* perf-db */ SELECT relname::text, n_live_tup, seq_scan, coalesce(idx_scan, 0), seq_tup_read
             FROM pg_stat_user_tables
             WHERE n_live_tup >= $1 AND seq_scan > coalesce(idx_scan, 0)
             ORDER BY seq_tup_read DESC",
            &[&options.large_table_rows],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| {
            Ok(SeqScanHint {
                table: r.try_get(0).map_err(db_error)?,
                live_rows: r.try_get(1).map_err(db_error)?,
                seq_scans: r.try_get(2).map_err(db_error)?,
                index_scans: r.try_get(3).map_err(db_error)?,
                seq_rows_read: r.try_get(4).map_err(db_error)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(IndexHealth {
        duplicates,
        unused,
        missing_index_hints,
    })
}

impl HealthOptions {
    /// Checks the field; the error names it and the range.
    pub fn validate(&self) -> Result<()> {
        if self.large_table_rows < 0 {
            return Err(Error::Invalid(format!(
                "large_table_rows: {} must be at least 0",
                self.large_table_rows
            )));
        }
        Ok(())
    }
}

perf_core::config_builder! {
    /// Builds [`HealthOptions`].
    HealthOptions => HealthOptionsBuilder, Error {
        large_table_rows: i64,
    }
}
