//! Candidate indexes for one statement, from its analysis alone (no
//! database): equality columns (most selective first, wide sets cut to the
//! columns that already single out a row), then a range column or the
//! `ORDER BY` keys, the join keys of the inner side, and single columns that
//! several statements of a workload can share.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Clause, PredicateKind, QueryAnalysis};

/// PostgreSQL's INDEX_MAX_KEYS: no index has more key columns.
pub const INDEX_MAX_KEYS: usize = 32;

/// One key column of an index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IndexKey {
    /// Column name.
    pub column: String,
    /// `DESC`.
    #[serde(default)]
    pub descending: bool,
    /// `NULLS FIRST` (PostgreSQL's default: last for `ASC`, first for `DESC`).
    #[serde(default)]
    pub nulls_first: bool,
}

impl IndexKey {
    /// An ascending key with NULLs last (the default).
    pub fn ascending(column: impl Into<String>) -> Self {
        Self {
            column: column.into(),
            descending: false,
            nulls_first: false,
        }
    }
}

/// The key as `CREATE INDEX` writes it: the column (quoted when needed),
/// then `DESC` and `NULLS FIRST|LAST` where they differ from the default.
///
/// ```
/// use perf_db::IndexKey;
/// let key = IndexKey { column: "created_at".into(), descending: true, nulls_first: false };
/// assert_eq!(key.to_string(), "created_at DESC NULLS LAST");
/// assert_eq!(IndexKey::ascending("Name").to_string(), "\"Name\"");
/// ```
impl std::fmt::Display for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::quote_ident(&self.column))?;
        if self.descending {
            f.write_str(" DESC")?;
        }
        if self.nulls_first != self.descending {
            f.write_str(if self.nulls_first {
                " NULLS FIRST"
            } else {
                " NULLS LAST"
            })?;
        }
        Ok(())
    }
}

/// A candidate: a table and its keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Candidate {
    pub(super) table: String,
    pub(super) keys: Vec<IndexKey>,
}

impl Candidate {
    pub(super) fn columns(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.column.clone()).collect()
    }
}

/// What candidate generation needs to know about a table.
#[derive(Debug, Clone, Default)]
pub(super) struct TableStats {
    /// Estimated rows.
    pub(super) rows: f64,
    /// Distinct values per column (from `pg_stats`; absent when unknown).
    pub(super) distinct: BTreeMap<String, f64>,
}

/// The columns of `table` a statement uses, to tell which statements a
/// candidate from another statement may serve.
pub(super) fn used_columns(a: &QueryAnalysis, table: &str) -> BTreeSet<String> {
    a.columns
        .iter()
        .filter(|u| u.table.as_deref() == Some(table))
        .map(|u| u.column.clone())
        .collect()
}

/// Equality columns ordered most selective first (ties by name), cut to the
/// prefix whose estimated rows reach one: further equality columns only
/// make the index wider.
fn reduce_equalities(mut columns: Vec<String>, stats: &TableStats) -> Vec<String> {
    let distinct = |c: &String| stats.distinct.get(c).copied().unwrap_or(1.0).max(1.0);
    columns.sort_by(|a, b| distinct(b).total_cmp(&distinct(a)).then(a.cmp(b)));
    let mut rows = stats.rows.max(1.0);
    let mut kept = Vec::new();
    for c in columns {
        if kept.len() == INDEX_MAX_KEYS || (rows <= 1.0 && !kept.is_empty()) {
            break;
        }
        rows /= distinct(&c);
        kept.push(c);
    }
    kept
}

/// The `ORDER BY` keys an index on `table` can serve, normalized for a
/// forward scan: a btree read backwards serves all keys reversed, so the
/// first key is made ascending (flipping every key) and only mixed
/// directions or non-default NULLs end up in the index.
fn order_keys(a: &QueryAnalysis, table: &str) -> Option<Vec<IndexKey>> {
    let ordering = a.orderings.iter().find(|keys| {
        keys.iter()
            .all(|k| k.column.table.as_deref() == Some(table))
    })?;
    let flip = ordering.first()?.descending;
    let mut keys = Vec::new();
    for k in ordering {
        if keys.iter().any(|x: &IndexKey| x.column == k.column.column) {
            continue;
        }
        keys.push(IndexKey {
            column: k.column.column.clone(),
            descending: k.descending != flip,
            nulls_first: k.nulls_first != flip,
        });
    }
    Some(keys)
}

/// Candidates for `table` in one statement, without duplicates, each at
/// most [`INDEX_MAX_KEYS`] keys.
pub(super) fn for_table(a: &QueryAnalysis, table: &str, stats: &TableStats) -> Vec<Candidate> {
    let equal = reduce_equalities(a.equality_columns(table), stats);
    let range: Vec<String> = a
        .columns
        .iter()
        .filter(|u| {
            u.table.as_deref() == Some(table)
                && u.clause == Clause::Where
                && matches!(
                    u.predicate,
                    Some(PredicateKind::Range | PredicateKind::LikePrefix)
                )
                && !equal.contains(&u.column)
        })
        .map(|u| u.column.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let joins: Vec<String> = a
        .join_columns(table)
        .into_iter()
        .filter(|c| !equal.contains(c))
        .collect();
    let order = order_keys(a, table);
    let asc = |cols: &[String]| cols.iter().map(IndexKey::ascending).collect::<Vec<_>>();
    let mut out: Vec<Vec<IndexKey>> = Vec::new();
    if !equal.is_empty() {
        out.push(asc(&equal));
    }
    for r in range.iter().take(2) {
        let mut keys = asc(&equal);
        keys.push(IndexKey::ascending(r));
        out.push(keys);
    }
    if let Some(order) = &order {
        let mut keys = asc(&equal);
        keys.extend(order.iter().filter(|k| !equal.contains(&k.column)).cloned());
        out.push(keys);
    }
    for j in &joins {
        out.push(vec![IndexKey::ascending(j)]);
        if !equal.is_empty() {
            let mut keys = asc(&equal);
            keys.push(IndexKey::ascending(j));
            out.push(keys);
        }
    }
    // Single columns: what several statements of a workload can share.
    if equal.len() > 1 {
        for c in &equal {
            out.push(vec![IndexKey::ascending(c)]);
        }
    }
    let mut seen = BTreeSet::new();
    out.into_iter()
        .filter(|keys| !keys.is_empty())
        .map(|mut keys| {
            keys.truncate(INDEX_MAX_KEYS);
            keys
        })
        .filter(|keys| seen.insert(keys.clone()))
        .map(|keys| Candidate {
            table: table.to_owned(),
            keys,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze;

    fn cols(c: &[Candidate]) -> Vec<Vec<String>> {
        c.iter()
            .map(|c| c.keys.iter().map(ToString::to_string).collect())
            .collect()
    }

    #[test]
    fn join_keys_make_candidates_on_the_inner_side_and_constants_propagate() {
        let a = analyze(
            "SELECT * FROM blogs JOIN posts ON blogs.id = posts.blog_id WHERE blogs.id = 1",
        )
        .unwrap();
        let posts = for_table(&a, "posts", &TableStats::default());
        assert_eq!(cols(&posts), [["blog_id"]]);
        let a =
            analyze("SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.email = $1")
                .unwrap();
        assert_eq!(
            cols(&for_table(&a, "orders", &TableStats::default())),
            [["user_id"]]
        );
        let users = cols(&for_table(&a, "users", &TableStats::default()));
        assert!(users.contains(&vec!["email".to_owned()]), "{users:?}");
    }

    #[test]
    fn order_by_keeps_its_order_and_directions_only_when_they_matter() {
        let a = analyze("SELECT a AS x, b FROM t ORDER BY 2 DESC, x DESC").unwrap();
        assert_eq!(
            cols(&for_table(&a, "t", &TableStats::default())),
            [["b", "a"]]
        );
        let a = analyze("SELECT * FROM t WHERE k = $1 ORDER BY b ASC, a DESC NULLS LAST").unwrap();
        let c = cols(&for_table(&a, "t", &TableStats::default()));
        assert!(
            c.contains(&vec![
                "k".to_owned(),
                "b".to_owned(),
                "a DESC NULLS LAST".to_owned()
            ]),
            "{c:?}"
        );
        let a = analyze("SELECT * FROM t ORDER BY b DESC, a ASC").unwrap();
        assert_eq!(
            cols(&for_table(&a, "t", &TableStats::default())),
            [["b", "a DESC"]]
        );
        let a = analyze("SELECT * FROM t ORDER BY b NULLS FIRST").unwrap();
        assert_eq!(
            cols(&for_table(&a, "t", &TableStats::default())),
            [["b NULLS FIRST"]]
        );
    }

    #[test]
    fn wide_equality_sets_keep_the_most_selective_columns_and_32_keys_at_most() {
        let wide: Vec<String> = (0..40).map(|i| format!("c{i} = ${}", i + 1)).collect();
        let a = analyze(&format!("SELECT * FROM t WHERE {}", wide.join(" AND "))).unwrap();
        let unknown = for_table(
            &a,
            "t",
            &TableStats {
                rows: 1e12,
                ..TableStats::default()
            },
        );
        assert!(unknown.iter().all(|c| c.keys.len() <= INDEX_MAX_KEYS));
        assert_eq!(unknown[0].keys.len(), INDEX_MAX_KEYS);
        let mut stats = TableStats {
            rows: 1_000_000.0,
            ..TableStats::default()
        };
        stats.distinct.insert("c7".into(), 1_000_000.0);
        stats.distinct.insert("c3".into(), 2.0);
        let known = for_table(&a, "t", &stats);
        assert_eq!(cols(&known)[0], ["c7"], "a unique column is enough");
    }
}
