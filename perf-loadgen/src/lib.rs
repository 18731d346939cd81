//! # perf-loadgen
//!
//! An HTTP load generator to embed in Rust programs (and behind
//! `perf-server run`):
//!
//! - scenarios in YAML ([`ScenarioFile`]) with the five mission presets ([`preset`]);
//! - a closed model (virtual users with ramp-up and think time, each on its own
//!   keep-alive connection) and an open model (requests on an intended schedule
//!   at a constant or ramping rate, bounded in flight, drops counted);
//! - latency without coordinated omission: in the open model every latency
//!   counts from the *intended* send time (and the uncorrected figure is kept
//!   beside it), in HdrHistograms from perf-core;
//! - per-second live snapshots, thresholds, a [`RunReport`] with a CSV timeline;
//! - [`split`] a scenario over machines and [`RunReport::merge`] their reports exactly;
//! - [`compare`] / [`compare_to_history`] say whether a run regressed beyond noise,
//!   [`change_points`] where a series of runs shifted.
//!
//! ```no_run
//! # async fn demo() -> Result<(), perf_loadgen::Error> {
//! let file = perf_loadgen::ScenarioFile::from_yaml(r#"
//! load_tests:
//!   smoke:
//!     target: http://127.0.0.1:8080
//!     duration: 10s
//!     users: 20
//!     ramp_up: 2s
//!     think_time: 100ms
//!     thresholds: ["p95 < 50ms", "error_rate < 0.1%"]
//! "#)?;
//! let run = perf_loadgen::start("smoke", file.get("smoke")?).await?;
//! let mut live = run.progress();
//! tokio::spawn(async move {
//!     while live.changed().await.is_ok() {
//!         let s = live.borrow().clone();
//!         eprintln!("{:.0}s {} users {:.0} req/s p95 {:.1} ms", s.elapsed_s, s.users, s.rps, s.p95_ms);
//!     }
//! });
//! let report = run.report().await?;
//! println!("{}", serde_json::to_string_pretty(&report).unwrap());
//! assert!(report.passed);
//! # Ok(())
//! # }
//! ```

mod busy_poll;
mod capacity;
mod compare;
mod coordinator;
mod error;
mod exposition;
mod html;
mod http;
mod http2;
mod http_workload;
mod journey;
#[cfg(feature = "junit")]
mod junit;
mod report;
mod request;
mod run;
mod safety;
mod scenario;
mod shard;
mod stats;
mod tls;
mod workload;

pub use busy_poll::{MAX_BUSY_POLL, busy_poll};
pub use capacity::{CapacityPlan, CapacityWindow, Slo, capacity_plan};
pub use compare::{
    CompareOptions, CompareOptionsBuilder, Comparison, MIN_TAIL_SAMPLES, MetricComparison, Verdict,
    change_points, compare, compare_to_history,
};
pub use coordinator::{
    Coordination, CoordinationEnd, Coordinator, Round, ShardClient, ShardState, ShardStatus,
};
pub use error::{Error, Result};
pub use exposition::{ExposedFigures, ExposedTest, render_prometheus};
pub use http_workload::{check, check_with, start, start_with_policy};
pub use journey::{CheckCount, FlowCount};
pub use report::{
    ErrorCause, GeneratorLoad, LatencyMs, PhasesReport, ReportHistograms, RequestReport, RunReport,
    StopReason, ThresholdResult, TlsReport,
};
pub use run::{LiveSnapshot, RunHandle, SecondFigures, start_workload};
pub use safety::{
    FeedAccess, IpNet, Limits, LimitsBuilder, MAX_FEED_BYTES, MemoryEstimate, TargetPolicy,
};
pub use scenario::{
    Arrivals, CaptureSpec, CheckSpec, FeederMode, FeederSpec, FlowSpec, LOAD_SHAPE_KEYS, LoadPlan,
    MAX_BODY_BYTES, MAX_CHECKS, MAX_DURATION, MAX_FLOWS, MAX_HEADERS, MAX_KEPT_BODY, MAX_RATE,
    MAX_REGEXES, MAX_REQUESTS, MAX_STAGES, MAX_TARGETS, MAX_THRESHOLDS, MAX_USERS, MAX_VAR_BYTES,
    MIN_RATE, OnCheckFailure, Operator, Preset, Protocol, Rate, RequestSpec, Scenario,
    ScenarioFile, Stage, StatusSet, StepSpec, Targets, ThinkDistribution, ThinkTime, Threshold,
    ThresholdMetric, TlsSpec, preset, scenario_keys, with_overrides,
};
pub use shard::split;
pub use stats::TimelineRow;
pub use tls::{MAX_PEM_BYTES, tls_client_config};
pub use workload::{Iteration, Operations, Workload};
