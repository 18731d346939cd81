//! Scenarios: the YAML users write, its validation, and the normalized
//! [`LoadPlan`] the executors run.

mod flow;
mod presets;
mod rate;
mod think;
mod threshold;

use std::collections::BTreeMap;
use std::time::Duration;

use perf_core::HumanDuration;
use serde::{Deserialize, Serialize};

pub(crate) use flow::compile_regex;
pub use flow::{
    CaptureSpec, CheckSpec, FlowSpec, MAX_CHECKS, MAX_FLOWS, MAX_KEPT_BODY, MAX_VAR_BYTES,
    OnCheckFailure, StatusSet, StepSpec,
};
pub use presets::{LOAD_SHAPE_KEYS, Preset, preset, scenario_keys, with_overrides};
pub use rate::{MIN_RATE, Rate};
pub use think::{ThinkDistribution, ThinkTime};
pub use threshold::{Operator, Threshold, ThresholdMetric};

use crate::{Error, Result};

/// Most virtual users one scenario may ask for.
pub const MAX_USERS: u32 = 1_000_000;
/// Highest arrival rate one scenario may ask for, requests per second.
pub const MAX_RATE: f64 = 10_000_000.0;
/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A scenario file: named scenarios under `load_tests`.
///
/// ```
/// let file = perf_loadgen::ScenarioFile::from_yaml(r#"
/// load_tests:
///   baseline: {duration: 10m, users: 1000, ramp_up: 2m, think_time: 1s}
///   stress:   {duration: 15m, users: 5000, ramp_up: 5m, think_time: 500ms}
///   spike:    {duration: 5m, users: 10000, ramp_up: 30s, think_time: 100ms}
/// "#).unwrap();
/// assert_eq!(file.load_tests.len(), 3);
/// let spike = file.get("spike").unwrap();
/// assert_eq!(spike.users, Some(10000));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Target applied to every scenario that names none.
    #[serde(default)]
    pub target: Option<Targets>,
    /// The scenarios by name.
    pub load_tests: BTreeMap<String, Scenario>,
}

impl ScenarioFile {
    /// Reads YAML; every scenario is validated (errors name scenario, key, value and range).
    pub fn from_yaml(text: &str) -> Result<Self> {
        let mut file: Self =
            serde_saphyr::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
        if file.load_tests.is_empty() {
            return Err(Error::Parse("`load_tests` has no scenario".to_owned()));
        }
        for (name, scenario) in &mut file.load_tests {
            if scenario.target.is_none() {
                scenario.target.clone_from(&file.target);
            }
            scenario.validate(name)?;
        }
        Ok(file)
    }

    /// Makes the relative paths of every scenario (`data.file`, `tls.ca_file`,
    /// `tls.client_cert`, `tls.client_key`) relative to `dir`, the directory
    /// of the scenario file, as a reader of the file expects (not to the
    /// directory the command happens to run in).
    ///
    /// ```
    /// let mut file = perf_loadgen::ScenarioFile::from_yaml(
    ///     "load_tests: {s: {target: 'http://127.0.0.1:8080', users: 1, duration: 1s, data: {file: items.csv}}}",
    /// )?;
    /// file.resolve_paths(std::path::Path::new("/srv/tests"));
    /// assert_eq!(file.get("s")?.data.as_ref().unwrap().file.as_deref(), Some("/srv/tests/items.csv"));
    /// # Ok::<(), perf_loadgen::Error>(())
    /// ```
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        let resolve = |path: &mut Option<String>| {
            if let Some(p) = path.as_mut()
                && std::path::Path::new(p.as_str()).is_relative()
            {
                *p = dir.join(p.as_str()).to_string_lossy().into_owned();
            }
        };
        for scenario in self.load_tests.values_mut() {
            if let Some(data) = scenario.data.as_mut() {
                resolve(&mut data.file);
            }
            if let Some(tls) = scenario.tls.as_mut() {
                resolve(&mut tls.ca_file);
                resolve(&mut tls.client_cert);
                resolve(&mut tls.client_key);
            }
        }
    }

    /// One scenario by name.
    pub fn get(&self, name: &str) -> Result<&Scenario> {
        self.load_tests
            .get(name)
            .ok_or_else(|| Error::UnknownScenario {
                name: name.to_owned(),
                available: self.names(),
            })
    }

    /// The scenario `name`, or without a name the file's only one, with
    /// its name; a file of several needs the name.
    ///
    /// ```
    /// let file = perf_loadgen::ScenarioFile::from_yaml(
    ///     "load_tests: {a: {users: 1, duration: 1s}, b: {users: 2, duration: 1s}}",
    /// )?;
    /// assert_eq!(file.pick(Some("b"))?.1.users, Some(2));
    /// assert!(file.pick(None).unwrap_err().to_string().contains("a, b"));
    /// # Ok::<(), perf_loadgen::Error>(())
    /// ```
    pub fn pick(&self, name: Option<&str>) -> Result<(&str, &Scenario)> {
        match name {
            Some(name) => self
                .load_tests
                .get_key_value(name)
                .map(|(n, s)| (n.as_str(), s))
                .ok_or_else(|| Error::UnknownScenario {
                    name: name.to_owned(),
                    available: self.names(),
                }),
            None if self.load_tests.len() == 1 => self
                .load_tests
                .iter()
                .next()
                .map(|(n, s)| (n.as_str(), s))
                .ok_or_else(|| Error::Parse("`load_tests` has no scenario".to_owned())),
            None => Err(Error::ScenarioNotNamed {
                available: self.names(),
            }),
        }
    }

    /// The scenarios' names, comma-separated.
    fn names(&self) -> String {
        self.load_tests
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One or more base URLs (`http://host:port`), used in turn by virtual users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Targets {
    /// One base URL.
    One(String),
    /// Several base URLs.
    Many(Vec<String>),
}

impl Targets {
    /// The URLs as a list.
    pub fn urls(&self) -> Vec<&str> {
        match self {
            Self::One(u) => vec![u.as_str()],
            Self::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// A request of the mix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Name under which its latencies are reported (default: `METHOD path`).
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP method (default GET).
    #[serde(default = "default_method")]
    pub method: String,
    /// Path and query, e.g. `/api/items?id=${id}`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body, sent with a Content-Length.
    #[serde(default)]
    pub body: Option<String>,
    /// Share of the mix relative to the other requests (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// What must hold of the answer (counted in the report's `checks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckSpec>,
}

fn default_method() -> String {
    "GET".to_owned()
}
fn default_path() -> String {
    "/".to_owned()
}
fn default_weight() -> u32 {
    1
}

impl RequestSpec {
    /// The name latencies are reported under.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{} {}", self.method, self.path))
    }
}

/// One step of a load shape: reach `users` (closed) or `rate` (open) linearly over `duration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Time to reach the level.
    pub duration: HumanDuration,
    /// Virtual users at the end of the stage (closed model).
    #[serde(default)]
    pub users: Option<u32>,
    /// Arrival rate at the end of the stage (open model).
    #[serde(default)]
    pub rate: Option<Rate>,
}

/// How rows of a data file are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FeederMode {
    /// Row after row, wrapping around, shared by all users.
    #[default]
    Sequential,
    /// A random row each time.
    Random,
    /// Each virtual user keeps one row (user i gets row i mod rows).
    PerUser,
}

/// CSV data whose columns replace `${column}` in path, headers and body:
/// a file (`file`) or the CSV text itself (`csv`), header row first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FeederSpec {
    /// CSV file with a header row. On the command line any file its user can
    /// read, relative to the scenario file ([`ScenarioFile::resolve_paths`]);
    /// through a service (perf-server) only a file name inside the feeds
    /// directory it is configured with (see [`crate::FeedAccess`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The CSV text itself, header row first (what a request to a service carries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<String>,
    /// Row selection.
    #[serde(default)]
    pub mode: FeederMode,
}

/// TLS settings for `https://` targets. Certificates and keys come from a
/// file (`ca_file`, `client_cert`, `client_key`: on the command line any
/// file, through a service only a name in its feeds directory) or inline as
/// PEM text (`ca_pem`, `client_cert_pem`, `client_key_pem`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of CA certificates trusted besides the system's roots (a
    /// relative path is taken as is; [`ScenarioFile::resolve_paths`] makes
    /// it relative to the scenario file, as `perf-server run` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The same, as PEM text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// PEM file of the client certificate chain (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// The same, as PEM text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    /// PEM file of the client's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// The same, as PEM text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_pem: Option<String>,
    /// Name sent in SNI and verified, instead of the target's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Take any server certificate (named in the report's warnings).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Resume TLS sessions on new connections (default true); `false`
    /// forces a full handshake each time, as a TLS terminator's stress test needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_resumption: Option<bool>,
}

/// The application protocol a scenario speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1: a keep-alive connection per virtual user (the default).
    #[default]
    H1,
    /// HTTP/2: ALPN `h2` over TLS, h2c with prior knowledge over plain http;
    /// requests multiplexed over `connections` per target.
    H2,
    /// HTTP/2 when the server agrees in ALPN (https only), else HTTP/1.1.
    Auto,
}

/// How the open model spaces its arrivals at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Evenly: at 100/s one arrival every 10 ms (wrk2's schedule).
    #[default]
    Uniform,
    /// A Poisson process of that rate (exponential gaps), which is how
    /// independent users arrive and what `pgbench -R` schedules: queues
    /// form at lower utilisation than with even spacing.
    Poisson,
}

/// One load test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Base URL(s); may come from the file level or the command line.
    #[serde(default)]
    pub target: Option<Targets>,
    /// Length of the run (with `stages`, the remainder after them holds the last level).
    #[serde(default)]
    pub duration: Option<HumanDuration>,
    /// Virtual users (closed model).
    #[serde(default)]
    pub users: Option<u32>,
    /// Time to start all users, linearly.
    #[serde(default)]
    pub ramp_up: Option<HumanDuration>,
    /// Pause between iterations of a user.
    #[serde(default)]
    pub think_time: Option<ThinkTime>,
    /// The request mix (default: `GET /`).
    #[serde(default)]
    pub requests: Vec<RequestSpec>,
    /// User journeys instead of a request mix: weighted flows of ordered steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<FlowSpec>,
    /// A load shape of several steps.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// Arrival rate (open model): requests start on schedule, whatever the responses do.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Most requests in flight in the open model; beyond it requests are dropped and counted.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// How arrivals are spaced in the open model: `uniform` (the default,
    /// as wrk2) or `poisson` (as `pgbench -R` and real independent users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<Arrivals>,
    /// Data file.
    #[serde(default)]
    pub data: Option<FeederSpec>,
    /// Per-request timeout (default 30s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Send a W3C `traceparent` and an `x-request-id` (the trace id) with
    /// every request so servers and meshes can correlate them (default true).
    #[serde(default)]
    pub trace_headers: Option<bool>,
    /// TLS settings for `https://` targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// `h1` (default), `h2` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// HTTP/2: connections per target (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// HTTP/2: streams at once on one connection (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_streams_per_connection: Option<u32>,
    /// Pass/fail rules.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// Stop the run as soon as a threshold fails (checked every second after 5 s).
    #[serde(default)]
    pub abort_on_fail: bool,
}

/// The load shape an executor runs, derived from a [`Scenario`].
#[derive(Debug, Clone, PartialEq)]
pub enum LoadPlan {
    /// Virtual users: `(time to reach, users)` steps from 0, then hold.
    Closed {
        /// Steps.
        steps: Vec<(Duration, u32)>,
        /// Total length.
        total: Duration,
    },
    /// Arrival rate: starting at `start` req/s, `(time to reach, rate)` steps, then hold.
    Open {
        /// Rate at time zero.
        start: f64,
        /// Steps.
        steps: Vec<(Duration, f64)>,
        /// Total length.
        total: Duration,
        /// Bound on requests in flight.
        max_in_flight: u32,
        /// How arrivals are spaced.
        arrivals: Arrivals,
    },
}

impl LoadPlan {
    /// Total length of the run.
    pub fn total(&self) -> Duration {
        match self {
            Self::Closed { total, .. } | Self::Open { total, .. } => *total,
        }
    }

    /// The level (users or req/s) at `t` into the run.
    pub fn level_at(&self, t: Duration) -> f64 {
        let (start, steps): (f64, Vec<(Duration, f64)>) = match self {
            Self::Closed { steps, .. } => {
                (0.0, steps.iter().map(|&(d, u)| (d, f64::from(u))).collect())
            }
            Self::Open { start, steps, .. } => (*start, steps.clone()),
        };
        let mut level = start;
        let mut elapsed = Duration::ZERO;
        for (d, target) in steps {
            if t < elapsed + d {
                let frac = (t - elapsed).as_secs_f64() / d.as_secs_f64().max(1e-9);
                return level + (target - level) * frac;
            }
            elapsed += d;
            level = target;
        }
        level
    }
}

/// When the requests of an open-model plan are due: the k-th request (from
/// 0) starts when the integral of the arrival rate reaches k, so a ramp from
/// 0 to 50/s over 5 s sends about 125 requests (not one request at the first
/// non-zero rate, then nothing for the reciprocal of that rate).
#[derive(Debug, Clone)]
pub(crate) struct ArrivalSchedule {
    /// `(start, length, rate at start, rate at end)`, in seconds and req/s;
    /// the last one holds until the end of the run.
    segments: Vec<(f64, f64, f64, f64)>,
    total: f64,
    /// Segment the last answer came from, and the arrivals before it.
    cursor: usize,
    before: f64,
    /// Expected arrivals (the integral of the rate) at the next arrival.
    k: f64,
    arrivals: Arrivals,
    rng: fastrand::Rng,
}

impl ArrivalSchedule {
    /// The schedule of an open plan; `None` for a closed one.
    pub(crate) fn of(plan: &LoadPlan) -> Option<Self> {
        let LoadPlan::Open {
            start,
            steps,
            total,
            arrivals,
            ..
        } = plan
        else {
            return None;
        };
        let mut segments = Vec::with_capacity(steps.len() + 1);
        let (mut t, mut level) = (0.0, *start);
        for &(d, target) in steps {
            let d = d.as_secs_f64();
            if d > 0.0 {
                segments.push((t, d, level, target));
            }
            t += d;
            level = target;
        }
        segments.push((t, f64::INFINITY, level, level));
        Some(
            Self {
                segments,
                total: total.as_secs_f64(),
                cursor: 0,
                before: 0.0,
                k: 0.0,
                arrivals: *arrivals,
                rng: fastrand::Rng::new(),
            }
            .started(),
        )
    }

    /// A Poisson process's first arrival comes after an exponential gap too,
    /// not at the start; even spacing starts at 0.
    fn started(mut self) -> Self {
        if self.arrivals == Arrivals::Poisson {
            self.k = self.gap();
        }
        self
    }

    /// The expected arrivals to the next one.
    fn gap(&mut self) -> f64 {
        match self.arrivals {
            Arrivals::Uniform => 1.0,
            // 1 - u is in (0, 1]: the logarithm is finite.
            Arrivals::Poisson => -(1.0 - self.rng.f64()).ln(),
        }
    }

    /// When the next arrival is due, from the start of the run; `None`
    /// after the end. Evenly spaced arrivals come at `k = 0, 1, 2…` expected
    /// arrivals; a Poisson process's at sums of exponential gaps of mean 1
    /// (the time-rescaling theorem: exact under ramps too).
    pub(crate) fn next(&mut self) -> Option<Duration> {
        let due = self.due(self.k);
        self.k += self.gap();
        due
    }

    /// When the rate's integral reaches `k` expected arrivals, from the
    /// start of the run; `None` when that is after the end. Calls must come
    /// with `k` not decreasing.
    fn due(&mut self, k: f64) -> Option<Duration> {
        while let Some(&(t0, d, r0, r1)) = self.segments.get(self.cursor) {
            let area = if d.is_infinite() {
                if r0 > 0.0 { f64::INFINITY } else { 0.0 }
            } else {
                (r0 + r1) / 2.0 * d
            };
            let m = k - self.before;
            // A stretch without load sends nothing, not one request at its start.
            if area > 0.0 && m <= area {
                // Solve r0 x + (r1 - r0) / (2 d) x^2 = m for x in [0, d], in
                // the form that stays exact when r1 == r0 or r0 == 0.
                let a = if d.is_infinite() {
                    0.0
                } else {
                    (r1 - r0) / (2.0 * d)
                };
                let root = (r0 * r0 + 4.0 * a * m).max(0.0).sqrt();
                let x = if m <= 0.0 || r0 + root <= 0.0 {
                    0.0
                } else {
                    (2.0 * m / (r0 + root)).min(d)
                };
                let t = t0 + x;
                return (t < self.total).then(|| perf_core::saturating_secs(t));
            }
            if d.is_infinite() {
                return None;
            }
            self.before += area;
            self.cursor += 1;
        }
        None
    }
}

fn invalid(scenario: &str, key: &str, value: impl std::fmt::Display, allowed: &str) -> Error {
    Error::Invalid {
        scenario: scenario.to_owned(),
        key: key.to_owned(),
        value: value.to_string(),
        allowed: allowed.to_owned(),
    }
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Most entries in `requests`: each request name keeps its own histograms.
pub const MAX_REQUESTS: usize = 100;
/// Most entries in `stages`.
pub const MAX_STAGES: usize = 1000;
/// Most entries in `thresholds`.
pub const MAX_THRESHOLDS: usize = 100;
/// Most headers of one request.
pub const MAX_HEADERS: usize = 64;
/// Most target URLs of one scenario.
pub const MAX_TARGETS: usize = 64;
/// Largest body of one request.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most regular expressions (`body_regex` checks and `regex` captures) of one scenario.
pub const MAX_REGEXES: usize = 50;

/// Headers the engine owns: framing and connection management a scenario
/// must not set (a `Transfer-Encoding: chunked` with a crafted body would
/// smuggle a second request past the target's front end).
const RESERVED_HEADERS: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "expect",
];

/// Whether `s` is an HTTP token (RFC 9110, 5.6.2): a valid header name.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `s` may be sent as a header value: no CR, LF, NUL or other
/// control characters (horizontal tab allowed).
pub(crate) fn is_field_value(s: &str) -> bool {
    s.len() <= 16 * 1024 && !s.chars().any(|c| c.is_control() && c != '\t')
}

/// Checks one request (of the mix, or a flow's step at `at`).
fn validate_request(name: &str, at: &str, r: &RequestSpec) -> Result<()> {
    let key = |k: &str| format!("{at}.{k}");
    if !METHODS.contains(&r.method.as_str()) {
        return Err(invalid(
            name,
            &key("method"),
            &r.method,
            &format!("one of {}", METHODS.join(", ")),
        ));
    }
    if !r.path.starts_with('/') {
        return Err(invalid(
            name,
            &key("path"),
            &r.path,
            "a path starting with /",
        ));
    }
    if r.path.chars().any(|c| c.is_whitespace() || c.is_control()) || r.path.len() > 8192 {
        return Err(invalid(
            name,
            &key("path"),
            format!("{:?}", r.path),
            "no spaces or control characters (percent-encode them)",
        ));
    }
    if r.headers.len() > MAX_HEADERS {
        return Err(invalid(
            name,
            &key("headers"),
            format!("{} headers", r.headers.len()),
            &format!("at most {MAX_HEADERS} headers"),
        ));
    }
    for (h, v) in &r.headers {
        if !is_token(h) {
            return Err(invalid(
                name,
                &key("headers"),
                format!("{h:?}"),
                "header names that are HTTP tokens (letters, digits and !#$%&'*+-.^_`|~)",
            ));
        }
        if RESERVED_HEADERS.iter().any(|r| h.eq_ignore_ascii_case(r)) {
            return Err(invalid(
                name,
                &key("headers"),
                h,
                "no framing or connection headers (Content-Length, Transfer-Encoding, TE, \
                 Trailer, Connection, Keep-Alive, Upgrade, Expect): the engine sets them",
            ));
        }
        if !is_field_value(v) {
            return Err(invalid(
                name,
                &key(&format!("headers.{h}")),
                format!("{v:?}"),
                "a value without line breaks, NUL or other control characters",
            ));
        }
    }
    if let Some(body) = &r.body
        && body.len() > MAX_BODY_BYTES
    {
        return Err(invalid(
            name,
            &key("body"),
            format!("{} bytes", body.len()),
            &format!("at most {MAX_BODY_BYTES} bytes"),
        ));
    }
    if let Some(n) = &r.name
        && (n.is_empty() || n.len() > 200 || n.chars().any(char::is_control))
    {
        return Err(invalid(
            name,
            &key("name"),
            format!("{n:?}"),
            "1 to 200 characters, no control characters",
        ));
    }
    if r.checks.len() > MAX_CHECKS {
        return Err(invalid(
            name,
            &key("checks"),
            format!("{} checks", r.checks.len()),
            &format!("at most {MAX_CHECKS}"),
        ));
    }
    for (k, c) in r.checks.iter().enumerate() {
        c.validate().map_err(|(field, value, allowed)| {
            let at = format!("checks[{k}]");
            let k = if field.is_empty() {
                at
            } else {
                format!("{at}.{field}")
            };
            invalid(name, &key(&k), value, &allowed)
        })?;
    }
    Ok(())
}

impl Scenario {
    /// Checks every key; the error names the scenario, the key, the value and the allowed range.
    pub fn validate(&self, name: &str) -> Result<()> {
        self.plan(name).map(|_| ())?;
        if let Some(targets) = &self.target {
            let urls = targets.urls();
            if urls.is_empty() {
                return Err(invalid(
                    name,
                    "target",
                    "[]",
                    "give at least one base URL such as http://127.0.0.1:8080",
                ));
            }
            if urls.len() > MAX_TARGETS {
                return Err(invalid(
                    name,
                    "target",
                    format!("{} URLs", urls.len()),
                    &format!("at most {MAX_TARGETS} target URLs"),
                ));
            }
            for (i, url) in urls.iter().enumerate() {
                crate::http::Endpoint::parse(url)
                    .map_err(|why| invalid(name, &format!("target[{i}]"), url, &why))?;
            }
        }
        for (key, count, max) in [
            ("requests", self.requests.len(), MAX_REQUESTS),
            ("stages", self.stages.len(), MAX_STAGES),
            ("thresholds", self.thresholds.len(), MAX_THRESHOLDS),
        ] {
            if count > max {
                return Err(invalid(
                    name,
                    key,
                    format!("{count} entries"),
                    &format!("at most {max} entries"),
                ));
            }
        }
        let total_weight: u64 = self.requests.iter().map(|r| u64::from(r.weight)).sum();
        for (i, r) in self.requests.iter().enumerate() {
            validate_request(name, &format!("requests[{i}]"), r)?;
            if r.weight > 1_000_000 {
                return Err(invalid(
                    name,
                    &format!("requests[{i}].weight"),
                    r.weight,
                    "0 to 1000000",
                ));
            }
        }
        self.validate_flows(name)?;
        for (key, value) in [
            ("connections", self.connections),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection,
            ),
        ] {
            if let Some(v) = value {
                if self.protocol.unwrap_or_default() == Protocol::H1 {
                    return Err(invalid(
                        name,
                        key,
                        v,
                        "only with protocol: h2 or auto (HTTP/1.1 uses a connection per user)",
                    ));
                }
                if !(1..=1000).contains(&v) {
                    return Err(invalid(name, key, v, "1 to 1000"));
                }
            }
        }
        let targets = self.target.as_ref().map_or(1, |t| t.urls().len().max(1)) as u64;
        if let Some(c) = self.connections
            && u64::from(c) * targets > 1000
        {
            return Err(invalid(
                name,
                "connections",
                c,
                &format!("at most 1000 HTTP/2 connections over all {targets} targets"),
            ));
        }
        let regexes = self
            .request_mix()
            .iter()
            .flat_map(|r| &r.checks)
            .filter(|c| c.body_regex.is_some())
            .count()
            + self
                .flows
                .iter()
                .flat_map(|f| &f.steps)
                .flat_map(|s| &s.captures)
                .filter(|c| c.regex.is_some())
                .count();
        if regexes > MAX_REGEXES {
            return Err(invalid(
                name,
                "flows",
                format!("{regexes} regular expressions"),
                &format!("at most {MAX_REGEXES} body_regex checks and regex captures in all"),
            ));
        }
        if !self.requests.is_empty() && total_weight == 0 {
            return Err(invalid(
                name,
                "requests",
                "all weights 0",
                "at least one request with weight > 0",
            ));
        }
        if let Some(t) = self.timeout
            && (t.0.is_zero() || t.0 > Duration::from_secs(600))
        {
            return Err(invalid(name, "timeout", t, "above 0 and at most 10m"));
        }
        if let Some(ThinkTime::Distribution(ThinkDistribution::Uniform { min, max })) =
            self.think_time
            && min > max
        {
            return Err(invalid(
                name,
                "think_time.uniform",
                format!("min {min} > max {max}"),
                "min <= max",
            ));
        }
        if let Some(think) = self.think_time
            && think.mean() > Duration::from_secs(3600)
        {
            return Err(invalid(
                name,
                "think_time",
                format!("{:?}", think.mean()),
                "a mean of at most 1h",
            ));
        }
        if let Some(data) = &self.data {
            match (&data.file, &data.csv) {
                (Some(file), None) if file.trim().is_empty() || file.contains('\0') => {
                    return Err(invalid(
                        name,
                        "data.file",
                        "\"\"",
                        "a path to a CSV file with a header row",
                    ));
                }
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(invalid(
                        name,
                        "data",
                        "file and csv both or neither",
                        "exactly one of data.file (a CSV file) or data.csv (the CSV text)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks `flows`: their number, weights, steps, checks and captures.
    fn validate_flows(&self, name: &str) -> Result<()> {
        if self.flows.is_empty() {
            return Ok(());
        }
        if !self.requests.is_empty() {
            return Err(invalid(
                name,
                "flows",
                "given with requests",
                "either requests (a mix of independent requests) or flows (journeys), not both",
            ));
        }
        if self.flows.len() > MAX_FLOWS {
            return Err(invalid(
                name,
                "flows",
                format!("{} flows", self.flows.len()),
                &format!("at most {MAX_FLOWS} flows"),
            ));
        }
        let steps: usize = self.flows.iter().map(|f| f.steps.len()).sum();
        if steps > MAX_REQUESTS {
            return Err(invalid(
                name,
                "flows",
                format!("{steps} steps"),
                &format!("at most {MAX_REQUESTS} steps over all flows"),
            ));
        }
        if self.flows.iter().all(|f| f.weight == 0) {
            return Err(invalid(
                name,
                "flows",
                "all weights 0",
                "at least one flow with weight > 0",
            ));
        }
        for (i, flow) in self.flows.iter().enumerate() {
            let at = format!("flows[{i}]");
            if flow.weight > 1_000_000 {
                return Err(invalid(
                    name,
                    &format!("{at}.weight"),
                    flow.weight,
                    "0 to 1000000",
                ));
            }
            if flow.steps.is_empty() {
                return Err(invalid(
                    name,
                    &format!("{at}.steps"),
                    "[]",
                    "at least one step",
                ));
            }
            if let Some(n) = &flow.name
                && (n.is_empty() || n.len() > 200 || n.chars().any(char::is_control))
            {
                return Err(invalid(
                    name,
                    &format!("{at}.name"),
                    format!("{n:?}"),
                    "1 to 200 characters, no control characters",
                ));
            }
            for (j, step) in flow.steps.iter().enumerate() {
                let at = format!("{at}.steps[{j}]");
                validate_request(name, &at, &step.request())?;
                if step.captures.len() > MAX_CHECKS {
                    return Err(invalid(
                        name,
                        &format!("{at}.captures"),
                        format!("{} captures", step.captures.len()),
                        &format!("at most {MAX_CHECKS}"),
                    ));
                }
                for (k, c) in step.captures.iter().enumerate() {
                    c.validate().map_err(|(field, value, allowed)| {
                        let key = if field.is_empty() {
                            format!("{at}.captures[{k}]")
                        } else {
                            format!("{at}.captures[{k}].{field}")
                        };
                        invalid(name, &key, value, &allowed)
                    })?;
                }
                if let Some(think) = step.think_time
                    && think.mean() > Duration::from_secs(3600)
                {
                    return Err(invalid(
                        name,
                        &format!("{at}.think_time"),
                        format!("{:?}", think.mean()),
                        "a mean of at most 1h",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The flows as run: the given ones, each with a name.
    pub(crate) fn flow_names(&self) -> Vec<String> {
        self.flows
            .iter()
            .enumerate()
            .map(|(i, f)| f.name.clone().unwrap_or_else(|| format!("flow{i}")))
            .collect()
    }

    /// The normalized load shape.
    pub fn plan(&self, name: &str) -> Result<LoadPlan> {
        let closed = self.users.is_some() || self.stages.iter().any(|s| s.users.is_some());
        let open = self.rate.is_some() || self.stages.iter().any(|s| s.rate.is_some());
        if closed && open {
            return Err(invalid(
                name,
                "rate",
                "given with users",
                "either users (closed model) or rate (open model), not both",
            ));
        }
        if !closed && !open {
            return Err(invalid(
                name,
                "users",
                "missing",
                "set users (closed model) or rate (open model)",
            ));
        }
        let mut steps_time = Duration::ZERO;
        for (i, s) in self.stages.iter().enumerate() {
            if s.users.is_some() == s.rate.is_some() {
                return Err(invalid(
                    name,
                    &format!("stages[{i}]"),
                    "users and rate both or neither",
                    "each stage sets exactly one of users or rate",
                ));
            }
            steps_time += s.duration.0;
        }
        let total = self.duration.map_or(steps_time, |d| d.0.max(steps_time));
        if total.is_zero() {
            return Err(invalid(
                name,
                "duration",
                "0",
                "above 0 (e.g. 10m), or stages",
            ));
        }
        if total > MAX_DURATION {
            return Err(invalid(
                name,
                "duration",
                HumanDuration(total),
                "at most 7d",
            ));
        }
        if let Some(ramp) = self.ramp_up {
            if ramp.0 > total {
                return Err(invalid(
                    name,
                    "ramp_up",
                    ramp,
                    &format!("at most the duration {}", HumanDuration(total)),
                ));
            }
            if !self.stages.is_empty() {
                return Err(invalid(
                    name,
                    "ramp_up",
                    ramp,
                    "not with stages (a stage already ramps)",
                ));
            }
        }
        if closed {
            if self.max_in_flight.is_some() {
                return Err(invalid(
                    name,
                    "max_in_flight",
                    self.max_in_flight.unwrap_or(0),
                    "only with rate (open model)",
                ));
            }
            if let Some(arrivals) = self.arrivals {
                return Err(invalid(
                    name,
                    "arrivals",
                    format!("{arrivals:?}").to_lowercase(),
                    "only with rate (open model)",
                ));
            }
            let mut steps = Vec::new();
            if let Some(users) = self.users {
                if users == 0 || users > MAX_USERS {
                    return Err(invalid(name, "users", users, &format!("1 to {MAX_USERS}")));
                }
                if !self.stages.is_empty() {
                    return Err(invalid(
                        name,
                        "users",
                        users,
                        "not with stages; give users in each stage",
                    ));
                }
                steps.push((self.ramp_up.map_or(Duration::ZERO, |r| r.0), users));
            }
            for (i, s) in self.stages.iter().enumerate() {
                let users = s.users.unwrap_or(0);
                if users > MAX_USERS {
                    return Err(invalid(
                        name,
                        &format!("stages[{i}].users"),
                        users,
                        &format!("0 to {MAX_USERS}"),
                    ));
                }
                steps.push((s.duration.0, users));
            }
            if steps.iter().all(|&(_, u)| u == 0) {
                return Err(invalid(
                    name,
                    "stages",
                    "0 users throughout",
                    "at least one stage with users > 0",
                ));
            }
            Ok(LoadPlan::Closed { steps, total })
        } else {
            if self.think_time.is_some() {
                return Err(invalid(
                    name,
                    "think_time",
                    "set",
                    "only with users (closed model); the open model has no users",
                ));
            }
            let check_rate = |key: &str, r: Rate| {
                let per_second = r.per_second();
                if !per_second.is_finite()
                    || per_second > MAX_RATE
                    || (per_second != 0.0 && per_second < MIN_RATE)
                {
                    Err(invalid(name, key, r, &format!("0, or 1/h to {MAX_RATE}/s")))
                } else {
                    Ok(per_second)
                }
            };
            let start = match self.rate {
                Some(r) => check_rate("rate", r)?,
                None => 0.0,
            };
            let mut steps = Vec::new();
            for (i, s) in self.stages.iter().enumerate() {
                steps.push((
                    s.duration.0,
                    check_rate(
                        &format!("stages[{i}].rate"),
                        s.rate.unwrap_or(Rate::per_second_of(0.0)),
                    )?,
                ));
            }
            if start == 0.0 && steps.iter().all(|&(_, r)| r == 0.0) {
                return Err(invalid(name, "rate", "0/s", "above 0 somewhere in the run"));
            }
            let max_in_flight = self.max_in_flight.unwrap_or(10_000);
            if !(1..=1_000_000).contains(&max_in_flight) {
                return Err(invalid(
                    name,
                    "max_in_flight",
                    max_in_flight,
                    "1 to 1000000",
                ));
            }
            Ok(LoadPlan::Open {
                start,
                steps,
                total,
                max_in_flight,
                arrivals: self.arrivals.unwrap_or_default(),
            })
        }
    }

    /// The request mix, `GET /` when none is given.
    pub fn request_mix(&self) -> Vec<RequestSpec> {
        if !self.flows.is_empty() {
            // Every step of every flow, in order: each keeps its figures.
            return self
                .flows
                .iter()
                .flat_map(|f| f.steps.iter().map(StepSpec::request))
                .collect();
        }
        if self.requests.is_empty() {
            vec![RequestSpec {
                name: None,
                method: default_method(),
                path: default_path(),
                headers: BTreeMap::new(),
                body: None,
                weight: 1,
                checks: Vec::new(),
            }]
        } else {
            self.requests.clone()
        }
    }

    /// Per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.timeout.map_or(Duration::from_secs(30), |t| t.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(yaml: &str) -> ArrivalSchedule {
        let file = ScenarioFile::from_yaml(yaml).expect("scenario");
        let plan = file.get("t").expect("t").plan("t").expect("plan");
        ArrivalSchedule::of(&plan).expect("open")
    }

    fn arrivals(mut s: ArrivalSchedule) -> Vec<f64> {
        std::iter::from_fn(|| s.next().map(|d| d.as_secs_f64())).collect()
    }

    #[test]
    fn uniform_arrivals_are_evenly_spaced() {
        let times = arrivals(schedule(
            "load_tests:\n  t: {duration: 10s, rate: 100/s, target: 'http://127.0.0.1:1'}",
        ));
        assert_eq!(times.len(), 1000);
        for w in times.windows(2) {
            assert!((w[1] - w[0] - 0.01).abs() < 1e-9, "{w:?}");
        }
    }

    #[test]
    fn poisson_arrivals_have_exponential_gaps_and_follow_a_ramp() {
        let times = arrivals(schedule(
            "load_tests:\n  t: {duration: 10s, rate: 1000/s, arrivals: poisson, target: 'http://127.0.0.1:1'}",
        ));
        // 10,000 expected; the standard deviation of a Poisson count is 100.
        assert!((9_500..=10_500).contains(&times.len()), "{}", times.len());
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        // An exponential's coefficient of variation is 1 (even spacing: 0).
        assert!((0.9..1.1).contains(&(sd / mean)), "cv {}", sd / mean);
        assert!(times.windows(2).all(|w| w[1] >= w[0]));
        // The first arrival too comes after a gap, not at the start.
        assert!(times[0] > 0.0);
        // A ramp from 0 to 1000/s over 10 s: 5,000 expected, a quarter in the first half.
        let ramp = arrivals(schedule(
            "load_tests:\n  t:\n    target: 'http://127.0.0.1:1'\n    arrivals: poisson\n    stages: [{duration: 10s, rate: 1000/s}]",
        ));
        assert!((4_600..=5_400).contains(&ramp.len()), "{}", ramp.len());
        let first_half = ramp.iter().filter(|&&t| t < 5.0).count() as f64 / ramp.len() as f64;
        assert!((0.22..0.28).contains(&first_half), "{first_half}");
    }

    #[test]
    fn arrivals_belong_to_the_open_model() {
        let err = ScenarioFile::from_yaml(
            "load_tests:\n  t: {duration: 1s, users: 2, arrivals: poisson, target: 'http://127.0.0.1:1'}",
        )
        .expect_err("closed model")
        .to_string();
        assert!(
            err.contains("arrivals") && err.contains("open model"),
            "{err}"
        );
    }
}
