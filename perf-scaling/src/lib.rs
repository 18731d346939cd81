//! # perf-scaling
//!
//! Autoscaling for the perf toolkit: a decision engine with Kubernetes HPA
//! semantics, the autoscaler loop, instance managers (local processes,
//! Kubernetes), load-balancing strategies and what-if simulation.
//!
//! **Not built yet**: this crate is an empty member of the workspace until the
//! perf-scaling issue lands. It exports nothing.
