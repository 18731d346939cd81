//! # perf-db
//!
//! Database performance for the perf toolkit: SQL analysis (sqlparser),
//! PostgreSQL statistics, index advice verified with hypothetical indexes,
//! connection-pool tuning, a query cache and partitioning advice.
//!
//! **Not built yet**: this crate is an empty member of the workspace until the
//! perf-db issue lands. It exports nothing. Its tests will run against the
//! throwaway PostgreSQL clusters of the `testkit` crate.
