//! # perf-core
//!
//! The shared vocabulary of the perf toolkit. Every other crate speaks in these
//! types, so a latency recorded by the load generator, merged on another machine
//! and shown by the server is the same value everywhere.
//!
//! - [`LatencyHistogram`]: HdrHistogram in microseconds (up to one hour at three
//!   significant digits), exact merge, percentiles, and a compact base64 form for
//!   JSON transport.
//! - [`parse_duration`] / [`parse_size`] and their serde-friendly wrappers
//!   [`HumanDuration`] and [`ByteSize`]: `10m`, `500ms`, `1.5s`, `512MB`, `2GiB`.
//! - [`Id`]: time-ordered identifiers (UUID v7).
//! - [`unix_millis`]: the wall-clock timestamp every record carries.
//! - [`median`]: the one median of the workspace (leak trends, forecasts,
//!   regression baselines).
//! - [`SampleRing`]: a bounded series of timestamped samples, read by window.
//! - `system` (feature `system`, Linux): host and process sampling from `/proc`:
//!   CPU utilization over an interval, memory, network rates, TCP states.
//! - [`config_builder!`]: the validating builder every configuration struct
//!   of the toolkit has (they are `#[non_exhaustive]`).
//! - [`Error`]: the one error type of this crate.
//!
//! ```
//! use std::time::Duration;
//! use perf_core::{parse_duration, parse_size, LatencyHistogram};
//!
//! # fn main() -> Result<(), perf_core::Error> {
//! let mut latencies = LatencyHistogram::new();
//! for ms in 1..=100 {
//!     latencies.record(Duration::from_millis(ms))?;
//! }
//! // Ship it to another process as JSON and merge it there.
//! let wire = serde_json::to_string(&latencies).expect("histograms serialize");
//! let mut merged = LatencyHistogram::new();
//! merged.merge(&serde_json::from_str(&wire).expect("and deserialize"))?;
//! assert_eq!(merged.count(), 100);
//! assert!(merged.percentile(95.0) >= Duration::from_millis(95));
//!
//! assert_eq!(parse_duration("1.5s")?, Duration::from_millis(1500));
//! assert_eq!(parse_size("2GiB")?, 2 * 1024 * 1024 * 1024);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "system")]
pub mod cgroup;
pub mod config;
mod error;
mod histogram;
#[cfg(feature = "http-client")]
pub mod http_client;
mod id;
pub mod num;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod prometheus;
mod recommendation;
mod ring;
mod stats;
#[cfg(feature = "system")]
pub mod system;
mod time;
mod units;

pub use error::{Error, Result};
pub use histogram::{LatencyHistogram, LatencyMs};
pub use id::Id;
pub use recommendation::{Recommendation, Severity};
pub use ring::{SampleRing, Timestamped};
pub use stats::median;
pub use time::{format_rfc3339, saturating_secs, unix_millis};
pub use units::{ByteSize, HumanDuration, parse_duration, parse_size};
