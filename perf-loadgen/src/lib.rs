//! # perf-loadgen
//!
//! The HTTP load generator of the perf toolkit: scenarios in YAML, closed
//! (virtual users) and open (arrival rate) executors, latency without
//! coordinated omission in [`perf_core::LatencyHistogram`], thresholds, run
//! comparison and distributed runs.
//!
//! **Not built yet**: this crate is an empty member of the workspace until the
//! perf-loadgen issue lands. It exports nothing, so nothing can depend on
//! behaviour it does not have.
