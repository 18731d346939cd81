//! # perf-db
//!
//! Database performance for a Rust service on PostgreSQL: find the
//! statements that cost the most, learn which indexes would help (and prove
//! it with the planner before anything is built), size the pool, cache what
//! is read often, and watch the server.
//!
//! | you want to | use |
//! | --- | --- |
//! | group statements that differ only by constants, as pg_stat_statements does | [`fingerprint`], [`normalize`] |
//! | the tables and columns a statement uses, with its predicate kinds, joins and orderings | [`analyze`], [`analyze_with_views`] |
//! | the slowest statements and the workload they form | [`slow_queries`], [`observed_workload`] |
//! | indexes to add, each verified with hypopg against the planner's costs | [`advise_indexes`], [`advise_workload`]; [`apply_index`] only on request |
//! | unused, duplicate and bloated indexes | [`index_health`] |
//! | partitioning advice for a large table | [`partition_advice`] |
//! | a pool (deadpool-postgres or bb8) that measures waits and holds, and its right size | [`InstrumentedPool`], [`recommend_pool_size`] |
//! | a result cache invalidated by the tables a write touches | [`QueryCache`] |
//! | connections by state and the buffer cache hit ratio | [`database_activity`] |
//!
//! Everything that talks to PostgreSQL takes a `tokio_postgres` client (or
//! the pool's connection), so it runs inside your service. The analysis needs
//! no database at all:
//!
//! ```
//! use perf_db::{analyze, fingerprint, Clause, PredicateKind};
//!
//! // Two spellings of one statement are one fingerprint.
//! let a = fingerprint("SELECT * FROM users WHERE id IN (1, 2, 3) -- first page")?;
//! let b = fingerprint("select *   from users where id in ($1)")?;
//! assert_eq!(a, b);
//! assert_ne!(a, fingerprint("SELECT * FROM orders WHERE id = 1")?);
//!
//! // What an index would have to serve: the filtered, joined and sorted columns.
//! let q = analyze("SELECT o.total FROM orders o JOIN customers c ON c.id = o.customer_id \
//!                  WHERE o.created_at > $1 ORDER BY o.created_at")?;
//! assert!(q.tables.contains("orders") && q.tables.contains("customers"));
//! assert!(q.columns.iter().any(|u| u.column == "created_at"
//!     && u.clause == Clause::Where && u.predicate == Some(PredicateKind::Range)));
//! assert_eq!(q.join_keys.len(), 1);
//! # Ok::<(), perf_db::Error>(())
//! ```
//!
//! With a database, `docs/database-optimization.md` walks the whole
//! workflow (its Rust blocks run as tests), and `examples/pg_lookup.rs` load
//! tests a lookup through [`InstrumentedPool`].

/// The Rust blocks of `docs/database-optimization.md`, compiled and run.
#[cfg(doctest)]
#[doc = include_str!("../../docs/database-optimization.md")]
struct DatabaseOptimizationGuide;

mod activity;
mod advice;
mod analysis;
mod error;
mod fingerprint;
mod index_advice;
mod index_health;
mod partitioning;
mod pool;
mod query_cache;
mod slow_queries;

pub use activity::{DatabaseActivity, database_activity};
pub use advice::{
    DatabaseAdvice, RESERVED_CONNECTIONS, database_advice, health_recommendations,
    index_recommendations, pool_recommendation, workload_recommendations,
};
pub use analysis::{
    Clause, ColumnRef, ColumnUse, OrderKey, PredicateKind, QueryAnalysis, Views, analyze,
    analyze_with_views,
};
pub use error::{Error, Result};
pub use fingerprint::{Fingerprint, fingerprint, normalize};
pub use index_advice::{
    Advice, AdviceOptions, AdviceOptionsBuilder, AppliedIndex, INDEX_MAX_KEYS, IndexAdvice,
    IndexKey, RejectedCandidate, SkippedStatement, StatementGain, WorkloadAdvice, WorkloadIndex,
    WorkloadOptions, WorkloadOptionsBuilder, WorkloadStatement, advise_indexes, advise_workload,
    apply_index,
};
pub use index_health::{
    DuplicateIndex, HealthOptions, HealthOptionsBuilder, IndexHealth, SeqScanHint, UnusedIndex,
    index_health,
};
pub use partitioning::{
    PartitionAdvice, PartitionOptions, PartitionOptionsBuilder, PartitionStrategy, partition_advice,
};
pub use pool::{
    InstrumentedPool, PoolLatencies, PoolObservation, PoolRecommendation, PoolSettings,
    PoolSettingsBuilder, PooledConnection, describe_pool_metrics, recommend_pool_size,
    render_pool_latencies,
};
pub use query_cache::{QueryCache, QueryCacheStats};
pub use slow_queries::{
    OWN_STATEMENT_MARKER, ObservedWorkload, SlowQuery, SlowQueryFilter, SlowQueryFilterBuilder,
    observed_workload, slow_queries,
};
