//! # perf-db
//!
//! Database performance for the perf toolkit. Built so far: statement
//! fingerprints that group SQL the way pg_stat_statements and libpg_query do
//! ([`fingerprint`], [`normalize`]); the tables and columns a statement uses
//! with their predicate kinds ([`analyze`]); the slowest statements from
//! pg_stat_statements ([`slow_queries`]); index advice verified with hypopg
//! ([`advise_indexes`]); index health ([`index_health`]); a result cache
//! invalidated by table ([`QueryCache`]); partitioning advice
//! ([`partition_advice`]); instrumented deadpool-postgres and bb8 pools and a
//! pool size tuner ([`InstrumentedPool`], [`recommend_pool_size`]); the
//! server's activity: connections by state, buffer cache hit ratio
//! ([`database_activity`]). Views named in statements are seen through
//! ([`Views`], [`analyze_with_views`]); advice is applied only on request
//! ([`apply_index`]).
//!
//! ```
//! use perf_db::fingerprint;
//! let a = fingerprint("SELECT * FROM users WHERE id IN (1, 2, 3) -- first page")?;
//! let b = fingerprint("select *   from users where id in ($1)")?;
//! assert_eq!(a, b);
//! assert_ne!(a, fingerprint("SELECT * FROM orders WHERE id = 1")?);
//! # Ok::<(), perf_db::Error>(())
//! ```

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
    health_recommendations, index_recommendations, pool_recommendation, workload_recommendations,
};
pub use analysis::{
    Clause, ColumnRef, ColumnUse, OrderKey, PredicateKind, QueryAnalysis, Views, analyze,
    analyze_with_views,
};
pub use error::{Error, Result};
pub use fingerprint::{Fingerprint, fingerprint, normalize};
pub use index_advice::{
    Advice, AdviceOptions, AppliedIndex, INDEX_MAX_KEYS, IndexAdvice, IndexKey, RejectedCandidate,
    SkippedStatement, StatementGain, WorkloadAdvice, WorkloadIndex, WorkloadOptions,
    WorkloadStatement, advise_indexes, advise_workload, apply_index,
};
pub use index_health::{
    DuplicateIndex, HealthOptions, IndexHealth, SeqScanHint, UnusedIndex, index_health,
};
pub use partitioning::{PartitionAdvice, PartitionOptions, PartitionStrategy, partition_advice};
pub use pool::{
    InstrumentedPool, PoolLatencies, PoolObservation, PoolRecommendation, PoolSettings,
    PooledConnection, describe_pool_metrics, recommend_pool_size, render_pool_latencies,
};
pub use query_cache::{QueryCache, QueryCacheStats};
pub use slow_queries::{
    OWN_STATEMENT_MARKER, ObservedWorkload, SlowQuery, SlowQueryFilter, observed_workload,
    slow_queries,
};
