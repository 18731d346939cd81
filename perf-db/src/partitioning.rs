//! Partitioning advice for large tables: when statements filter a big table
//! by range on a time column, range partitions sized to a target; when they
//! filter by equality on a key, list partitions (few distinct values) or hash
//! partitions (many).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::db_error;
use crate::{Clause, Error, PredicateKind, Result, analyze};

/// Thresholds of [`partition_advice`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PartitionOptions {
    /// Tables at least this big (table + indexes + toast) are considered (default 10 GiB).
    pub min_table_bytes: i64,
    /// The partition size to aim for (default 1 GiB).
    pub target_partition_bytes: i64,
    /// A key with at most this many distinct values gets list partitions (default 50).
    pub max_list_values: f64,
}

impl Default for PartitionOptions {
    fn default() -> Self {
        Self {
            min_table_bytes: 10 << 30,
            target_partition_bytes: 1 << 30,
            max_list_values: 50.0,
        }
    }
}

/// How to partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PartitionStrategy {
    /// By ranges of a time column.
    Range,
    /// One partition per value of a low-cardinality key.
    List,
    /// By hash of a high-cardinality key.
    Hash,
}

/// One recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionAdvice {
    /// Table.
    pub table: String,
    /// Strategy.
    pub strategy: PartitionStrategy,
    /// Partition key column.
    pub key: String,
    /// For range partitions: `day`, `week`, `month` or `year`.
    pub interval: Option<String>,
    /// About how many partitions the data fills now.
    pub partitions: i64,
    /// About how big each partition is.
    pub partition_bytes: i64,
    /// Table size now.
    pub table_bytes: i64,
    /// Why, in a sentence.
    pub reason: String,
    /// The statement that creates the partitioned table to move the data into.
    pub create_statement: String,
}

/// Advice for the large tables the statements filter.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn partition_advice(
    client: &Client,
    queries: &[String],
    options: &PartitionOptions,
) -> Result<Vec<PartitionAdvice>> {
    options.validate()?;
    // (table, column) -> (range uses, equality uses)
    let mut uses: BTreeMap<String, BTreeMap<String, (u32, u32)>> = BTreeMap::new();
    for q in queries {
        let Ok(a) = analyze(q) else { continue };
        for u in a.columns.iter().filter(|u| u.clause == Clause::Where) {
            let Some(table) = &u.table else { continue };
            let entry = uses
                .entry(table.clone())
                .or_default()
                .entry(u.column.clone())
                .or_default();
            match u.predicate {
                Some(PredicateKind::Range) => entry.0 += 1,
                Some(PredicateKind::Equality) => entry.1 += 1,
                _ => {}
            }
        }
    }
    let mut advice = Vec::new();
    for (table, columns) in uses {
        let Some(size_row) = client
            .query_opt("/* perf-db */ SELECT pg_total_relation_size(to_regclass($1)), c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)", &[&table])
            .await
            .map_err(db_error)?
        else {
            continue;
        };
        let size: i64 = size_row.try_get(0).map_err(db_error)?;
        let kind: String = size_row.try_get(1).map_err(db_error)?;
        if size < options.min_table_bytes || kind != "r" {
            continue;
        }
        let types: BTreeMap<String, String> = client
            .query("/* perf-db */ SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = $1", &[&table.rsplit('.').next().unwrap_or(&table)])
            .await
            .map_err(db_error)?
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect();
        let is_time = |c: &str| {
            types
                .get(c)
                .is_some_and(|t| t.starts_with("timestamp") || t == "date")
        };
        let range_key = columns
            .iter()
            .filter(|(c, (r, _))| *r > 0 && is_time(c))
            .max_by_key(|(_, (r, _))| *r)
            .map(|(c, _)| c.clone());
        if let Some(key) = range_key {
            // Span of the data from the planner's statistics (cheap on any size).
            let span = client
                .query_opt(
                    "/* perf-db */ SELECT extract(epoch FROM (histogram_bounds::text::timestamptz[])[array_length(histogram_bounds::text::timestamptz[], 1)]
                                          - (histogram_bounds::text::timestamptz[])[1])::float8
                     FROM pg_stats WHERE tablename = $1 AND attname = $2",
                    &[&table.rsplit('.').next().unwrap_or(&table), &key],
                )
                .await
                .map_err(db_error)?
                .and_then(|r| r.try_get::<_, Option<f64>>(0).ok().flatten())
                .filter(|s| *s > 0.0);
            let Some(span) = span else { continue };
            let bytes_per_sec = size as f64 / span;
            let intervals = [
                ("day", 86_400.0),
                ("week", 7.0 * 86_400.0),
                ("month", 30.0 * 86_400.0),
                ("year", 365.0 * 86_400.0),
            ];
            let (interval, secs) = intervals
                .iter()
                .rev()
                .find(|(_, s)| bytes_per_sec * s <= options.target_partition_bytes as f64)
                .copied()
                .unwrap_or(intervals[0]);
            let partition_bytes = perf_core::num::saturating_i64(bytes_per_sec * secs);
            advice.push(PartitionAdvice {
                strategy: PartitionStrategy::Range,
                interval: Some(interval.to_owned()),
                partitions: perf_core::num::saturating_i64((span / secs).ceil().max(1.0)),
                partition_bytes,
                table_bytes: size,
                reason: format!("{table} is {size} bytes and statements filter {key} by range: one partition per {interval} keeps partitions near the target and lets old ones be dropped whole"),
                create_statement: format!("CREATE TABLE {table}_partitioned (LIKE {table} INCLUDING ALL) PARTITION BY RANGE ({key})"),
                table: table.clone(),
                key,
            });
            continue;
        }
        let Some(key) = columns
            .iter()
            .filter(|(_, (_, e))| *e > 0)
            .max_by_key(|(_, (_, e))| *e)
            .map(|(c, _)| c.clone())
        else {
            continue;
        };
        let rows: f64 = client
            .query_one(
                "/* perf-db */ SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = to_regclass($1)",
                &[&table],
            )
            .await
            .map_err(db_error)?
            .try_get(0)
            .map_err(db_error)?;
        let n_distinct: f64 = client
            .query_opt(
                "/* perf-db */ SELECT n_distinct::float8 FROM pg_stats WHERE tablename = $1 AND attname = $2",
                &[&table.rsplit('.').next().unwrap_or(&table), &key],
            )
            .await
            .map_err(db_error)?
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(-1.0);
        let distinct = if n_distinct < 0.0 {
            -n_distinct * rows
        } else {
            n_distinct
        };
        let (strategy, partitions) = if distinct >= 1.0 && distinct <= options.max_list_values {
            (
                PartitionStrategy::List,
                perf_core::num::saturating_i64(distinct.round()),
            )
        } else {
            let wanted = perf_core::num::saturating_i64(
                (size as f64 / options.target_partition_bytes as f64)
                    .ceil()
                    .clamp(2.0, 1024.0),
            );
            (
                PartitionStrategy::Hash,
                i64::from(u32::try_from(wanted).unwrap_or(1024).next_power_of_two()),
            )
        };
        let by = if strategy == PartitionStrategy::List {
            "LIST"
        } else {
            "HASH"
        };
        advice.push(PartitionAdvice {
            reason: format!(
                "{table} is {size} bytes and statements filter {key} by equality ({distinct:.0} distinct values): {} partitions let each query read one",
                by.to_lowercase()
            ),
            create_statement: format!("CREATE TABLE {table}_partitioned (LIKE {table} INCLUDING ALL) PARTITION BY {by} ({key})"),
            table: table.clone(),
            strategy,
            key,
            interval: None,
            partitions,
            partition_bytes: size / partitions.max(1),
            table_bytes: size,
        });
    }
    Ok(advice)
}

impl PartitionOptions {
    /// Checks every field; the error names the bad one and the range.
    pub fn validate(&self) -> Result<()> {
        if self.min_table_bytes < 0 {
            return Err(Error::Invalid(format!(
                "min_table_bytes: {} must be at least 0",
                self.min_table_bytes
            )));
        }
        if self.target_partition_bytes < 1 << 20 {
            return Err(Error::Invalid(format!(
                "target_partition_bytes: {} must be at least 1 MiB (1048576)",
                self.target_partition_bytes
            )));
        }
        if !(self.max_list_values.is_finite() && self.max_list_values >= 1.0) {
            return Err(Error::Invalid(format!(
                "max_list_values: {} must be a number at least 1",
                self.max_list_values
            )));
        }
        Ok(())
    }
}

perf_core::config_builder! {
    /// Builds [`PartitionOptions`].
    PartitionOptions => PartitionOptionsBuilder, Error {
        min_table_bytes: i64,
        target_partition_bytes: i64,
        max_list_values: f64,
    }
}

#[cfg(test)]
mod tests {
    use super::PartitionOptions;
    use crate::HealthOptions;

    #[test]
    fn options_out_of_range_are_refused_by_name() {
        let options = PartitionOptions::builder()
            .min_table_bytes(1 << 30)
            .build()
            .unwrap();
        assert_eq!(options.min_table_bytes, 1 << 30);
        for (built, field) in [
            (
                PartitionOptions::builder().min_table_bytes(-1).build(),
                "min_table_bytes",
            ),
            (
                PartitionOptions::builder()
                    .target_partition_bytes(10)
                    .build(),
                "target_partition_bytes",
            ),
            (
                PartitionOptions::builder()
                    .max_list_values(f64::NAN)
                    .build(),
                "max_list_values",
            ),
        ] {
            let err = built.unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
        let err = HealthOptions::builder()
            .large_table_rows(-5)
            .build()
            .unwrap_err();
        assert!(err.to_string().starts_with("large_table_rows"), "{err}");
    }
}
