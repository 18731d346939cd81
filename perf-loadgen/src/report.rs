//! The result of a run: [`RunReport`], its threshold verdicts, CSV export of
//! the timeline, and exact merging of reports from shards.

use std::collections::BTreeMap;
use std::time::Duration;

use perf_core::LatencyHistogram;
use serde::{Deserialize, Serialize};

use crate::scenario::{Threshold, ThresholdMetric};
use crate::stats::{TimelineRow, Totals, ms};
use crate::{Error, Result};

/// Latency figures in milliseconds (perf-core's one latency summary).
pub use perf_core::LatencyMs;

/// One threshold's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThresholdResult {
    /// The rule as written, e.g. `p95 < 50ms`.
    pub expr: String,
    /// The value seen, in the rule's unit (ms, fraction, req/s).
    pub observed: f64,
    /// Whether the rule held.
    pub passed: bool,
}

/// Why requests failed, as [`RunReport::errors_by_cause`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCause<'a> {
    /// A transport failure kind (`connect`, `tls`, `timeout`, `reset`, `protocol`...).
    Transport(&'a str),
    /// An answer with an error status (400 and above), as its code.
    Status(&'a str),
}

impl RunReport {
    /// Passes and fails over all checks.
    pub fn check_totals(&self) -> crate::CheckCount {
        sum_checks(&self.checks)
    }

    /// Failed requests by cause: the transport's kinds, then each error
    /// status (400 and above) the target answered with.
    pub fn errors_by_cause(&self) -> impl Iterator<Item = (ErrorCause<'_>, u64)> {
        let statuses = self
            .status_codes
            .iter()
            .filter(|(code, _)| code.parse::<u16>().is_ok_and(|c| c >= 400))
            .map(|(code, n)| (ErrorCause::Status(code.as_str()), *n));
        self.error_kinds
            .iter()
            .map(|(kind, n)| (ErrorCause::Transport(kind.as_str()), *n))
            .chain(statuses)
    }
}

impl ThresholdResult {
    /// The observed value in the threshold's unit: a percentage for
    /// `error_rate` and `checks`, req/s for `rps`, milliseconds otherwise.
    ///
    /// ```
    /// let t = perf_loadgen::ThresholdResult { expr: "error_rate < 0.1%".into(), observed: 0.0946, passed: false };
    /// assert_eq!(t.observed_with_unit(), "9.460 %");
    /// ```
    pub fn observed_with_unit(&self) -> String {
        let expr = self.expr.trim_start();
        if expr.starts_with("error_rate") || expr.starts_with("checks") {
            format!("{:.3} %", self.observed * 100.0)
        } else if expr.starts_with("rps") {
            format!("{:.1} req/s", self.observed)
        } else {
            format!("{:.2} ms", self.observed)
        }
    }
}

/// Figures of one request of the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestReport {
    /// Requests completed.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Latency from the intended send time.
    pub latency_ms: LatencyMs,
    /// Latency from the actual send time (open model only).
    pub latency_uncorrected_ms: Option<LatencyMs>,
}

/// The histograms behind the figures, kept so reports merge exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportHistograms {
    /// All requests, corrected.
    pub latency: LatencyHistogram,
    /// All requests, uncorrected.
    pub latency_uncorrected: LatencyHistogram,
    /// Per request name: (corrected, uncorrected).
    pub per_request: BTreeMap<String, (LatencyHistogram, LatencyHistogram)>,
    /// The phases of the exchanges.
    #[serde(default)]
    pub phases: PhaseHistograms,
}

/// Histograms of the phases of exchanges: connections opened and failed,
/// TLS handshakes, time to first byte.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PhaseHistograms {
    /// TCP connect time of connections that opened.
    pub connect: LatencyHistogram,
    /// Time failed connection attempts took (kept apart from every latency).
    pub connect_failed: LatencyHistogram,
    /// TLS handshakes, full and resumed.
    pub tls_handshake: LatencyHistogram,
    /// Of those, resumed.
    pub tls_resumed: u64,
    /// From the request's first byte written to the response's first byte.
    pub ttfb: LatencyHistogram,
}

impl PhaseHistograms {
    pub(crate) fn record(&mut self, phases: &crate::http::Phases) {
        use crate::stats::micros;
        match phases.connect {
            Some(Ok(t)) => {
                let _ = self.connect.record_micros(micros(t));
            }
            Some(Err(t)) => {
                let _ = self.connect_failed.record_micros(micros(t));
            }
            None => {}
        }
        if let Some((t, resumed)) = phases.handshake {
            let _ = self.tls_handshake.record_micros(micros(t));
            self.tls_resumed += u64::from(resumed);
        }
        if let Some(t) = phases.ttfb {
            let _ = self.ttfb.record_micros(micros(t));
        }
    }

    pub(crate) fn merge(&mut self, other: &PhaseHistograms) {
        let _ = self.connect.merge(&other.connect);
        let _ = self.connect_failed.merge(&other.connect_failed);
        let _ = self.tls_handshake.merge(&other.tls_handshake);
        self.tls_resumed += other.tls_resumed;
        let _ = self.ttfb.merge(&other.ttfb);
    }
}

/// Where the time of the exchanges went: opening connections (TCP, TLS)
/// and waiting for the first byte. `latency_ms` is the total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PhasesReport {
    /// Connections opened.
    pub connections_opened: u64,
    /// TCP connect time of those, ms.
    pub connect_ms: Option<LatencyMs>,
    /// Connection attempts that failed (refused, unreachable).
    pub connect_failures: u64,
    /// How long the failed attempts took, ms: kept beside, never inside the
    /// latency of completed requests.
    pub connect_failed_ms: Option<LatencyMs>,
    /// TLS handshakes done (full and resumed).
    pub tls_handshakes: u64,
    /// Of which resumed an earlier session.
    pub tls_resumed: u64,
    /// TLS handshake time, ms.
    pub tls_handshake_ms: Option<LatencyMs>,
    /// Time to first byte: from the request written to the first byte of
    /// its response, ms (without connect and handshake).
    pub ttfb_ms: Option<LatencyMs>,
}

impl PhasesReport {
    fn of(h: &PhaseHistograms) -> Self {
        let figures = |h: &LatencyHistogram| (!h.is_empty()).then(|| LatencyMs::of(h));
        Self {
            connections_opened: h.connect.count(),
            connect_ms: figures(&h.connect),
            connect_failures: h.connect_failed.count(),
            connect_failed_ms: figures(&h.connect_failed),
            tls_handshakes: h.tls_handshake.count(),
            tls_resumed: h.tls_resumed,
            tls_handshake_ms: figures(&h.tls_handshake),
            ttfb_ms: figures(&h.ttfb),
        }
    }
}

/// How the run's TLS was set up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsReport {
    /// Server certificates were not verified (`tls.insecure_skip_verify`).
    pub insecure_skip_verify: bool,
    /// Sessions were resumed on new connections (`tls.session_resumption`).
    pub session_resumption: bool,
}

/// The report of a run. Its JSON form is the documented schema of
/// `docs/load-testing.md`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// `closed` (virtual users) or `open` (arrival rate).
    pub model: String,
    /// Base URLs.
    pub targets: Vec<String>,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// Start, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Length of the run, seconds.
    pub duration_s: f64,
    /// Requests completed.
    pub requests: u64,
    /// Of which failed (connect, timeout, reset, protocol, or HTTP status >= 400).
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// `requests / duration_s`.
    pub rps: f64,
    /// Latency from the intended send time (in the closed model, the send time).
    pub latency_ms: LatencyMs,
    /// Latency from the actual send time, open model only: what a closed-loop tool would report.
    pub latency_uncorrected_ms: Option<LatencyMs>,
    /// Intended requests not sent because `max_in_flight` was reached (open model).
    pub dropped: u64,
    /// Responses by status code (`ok` for operations of a Rust workload that succeeded).
    pub status_codes: BTreeMap<String, u64>,
    /// Failures without a status, by kind: `connect`, `timeout`, `reset`, `protocol`.
    pub error_kinds: BTreeMap<String, u64>,
    /// Bytes written.
    pub bytes_sent: u64,
    /// Bytes read.
    pub bytes_received: u64,
    /// Figures per request name.
    pub per_request: BTreeMap<String, RequestReport>,
    /// Threshold verdicts.
    pub thresholds: Vec<ThresholdResult>,
    /// Whether every threshold held.
    pub passed: bool,
    /// Why the run ended early, if it did (written `cancelled` or
    /// `threshold failed: <expression>` in JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub stopped_early: Option<StopReason>,
    /// Set when no response came back at all, with the reason, e.g.
    /// `target unreachable: connect: Connection refused (os error 111)
    /// (127.0.0.1:9)`. Such a run never passes: there is nothing to judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_success: Option<String>,
    /// How hard the load generator itself worked, and whether it was the
    /// bottleneck (`generator.bound`): a saturated client is not a slow server.
    #[serde(default)]
    pub generator: GeneratorLoad,
    /// Application protocol spoken: `http/1.1`, `h2` (negotiated in ALPN
    /// or h2c), or `h2, http/1.1` when targets differ.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Where the time of the exchanges went (connect, TLS handshake, time
    /// to first byte), and connection attempts that failed.
    #[serde(default)]
    pub phases: PhasesReport,
    /// TLS settings, for a run against `https://` targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
    /// Pass and fail counts of every check (and capture, `<step>: capture
    /// <var>`), keyed `<request or step name>: <check>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, crate::CheckCount>,
    /// Iterations of each flow of a journey scenario.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flows: BTreeMap<String, crate::FlowCount>,
    /// Things a reader of the figures must know (certificates not verified).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Set when the run was stopped by a signal (Ctrl-C, SIGTERM): the
    /// figures cover only part of the plan.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Per-second rows.
    pub timeline: Vec<TimelineRow>,
    /// Histograms for exact merging.
    pub histograms: ReportHistograms,
}

fn default_protocol() -> String {
    "http/1.1".to_owned()
}

/// Why a run ended before its planned duration.
///
/// Written as text in reports (`cancelled`, `threshold failed: p95 < 300ms`),
/// so reports written before this type existed still read.
///
/// ```
/// use perf_loadgen::StopReason;
/// let reason: StopReason = "threshold failed: p95 < 300ms".parse()?;
/// assert_eq!(reason, StopReason::ThresholdFailed { threshold: "p95 < 300ms".into() });
/// assert_eq!(StopReason::Cancelled.to_string(), "cancelled");
/// let unknown: StopReason = "drained".parse()?;
/// assert_eq!(unknown, StopReason::Other("drained".into()));
/// # Ok::<(), perf_loadgen::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// Cancelled from outside (an API call, Ctrl-C, SIGTERM).
    Cancelled,
    /// `abort_on_fail`: this threshold failed while the run went on.
    ThresholdFailed {
        /// The threshold's expression, e.g. `p95 < 300ms`.
        threshold: String,
    },
    /// A reason this version does not know (a report written by another
    /// version), kept as written so the report still reads.
    Other(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cancelled => f.write_str("cancelled"),
            Self::ThresholdFailed { threshold } => write!(f, "threshold failed: {threshold}"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

impl std::str::FromStr for StopReason {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.strip_prefix("threshold failed: ") {
            Some(threshold) => Ok(Self::ThresholdFailed {
                threshold: threshold.to_owned(),
            }),
            None if text == "cancelled" => Ok(Self::Cancelled),
            None => Ok(Self::Other(text.to_owned())),
        }
    }
}

impl Serialize for StopReason {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The load generator's own figures over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GeneratorLoad {
    /// CPU time the generating process used, seconds (less any time spent
    /// busy polling, which is idle time: see [`busy_poll`](crate::busy_poll)).
    pub cpu_s: f64,
    /// Worker threads it ran on (the cores it was given).
    pub cores: u32,
    /// `cpu_s / (duration × cores)`: 1.0 is every given core busy all the time.
    pub cpu_utilization: f64,
    /// Open model: requests that left more than 10 ms after their intended time.
    pub late_requests: u64,
    /// Open model: the longest delay of a request behind its intended time, ms.
    pub max_schedule_lag_ms: f64,
    /// Whether the generator was the bottleneck: CPU utilization above 0.9
    /// of the given cores, or (open model) more than 1 % of requests left
    /// more than 10 ms late, or requests were dropped for want of capacity.
    pub bound: bool,
    /// Which of those held, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl GeneratorLoad {
    /// Judges the figures against the documented bounds.
    pub(crate) fn judged(mut self, requests: u64, dropped: u64) -> Self {
        let mut reasons = Vec::new();
        if self.cpu_utilization > 0.9 {
            reasons.push(format!(
                "CPU {:.0} % of its {} core(s)",
                self.cpu_utilization * 100.0,
                self.cores
            ));
        }
        if requests > 0 && self.late_requests as f64 > 0.01 * requests as f64 {
            reasons.push(format!(
                "{} of {requests} requests left over 10 ms late (up to {:.1} ms)",
                self.late_requests, self.max_schedule_lag_ms
            ));
        }
        if dropped > 0 {
            reasons.push(format!("{dropped} requests dropped at max_in_flight"));
        }
        self.bound = !reasons.is_empty();
        self.reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        self
    }
}

/// What [`RunReport::build`] needs besides the totals.
#[derive(Debug, Clone)]
pub(crate) struct ReportMeta {
    pub(crate) scenario: String,
    pub(crate) open_model: bool,
    pub(crate) targets: Vec<String>,
    pub(crate) started_at_ms: u64,
    pub(crate) duration: Duration,
    pub(crate) dropped: u64,
    pub(crate) stopped_early: Option<StopReason>,
    pub(crate) thresholds: Vec<Threshold>,
    /// What the first failure said (a connect error's text and address).
    pub(crate) first_failure: Option<String>,
    /// The generator's own load (judged when the report is assembled).
    pub(crate) generator: GeneratorLoad,
    /// TLS settings of a run against `https://` targets.
    pub(crate) tls: Option<TlsReport>,
    /// Check counts.
    pub(crate) checks: BTreeMap<String, crate::CheckCount>,
    /// Flow iterations.
    pub(crate) flows: BTreeMap<String, crate::FlowCount>,
    /// `http/1.1`, `h2`, or both.
    pub(crate) protocol: String,
}

impl ReportMeta {
    /// The meta of a run of `scenario` (named `name`) about to start.
    pub(crate) fn new(
        name: &str,
        plan: &crate::LoadPlan,
        scenario: &crate::Scenario,
        targets: Vec<String>,
    ) -> Self {
        Self {
            scenario: name.to_owned(),
            open_model: matches!(plan, crate::LoadPlan::Open { .. }),
            targets,
            started_at_ms: perf_core::unix_millis(),
            duration: Duration::ZERO,
            dropped: 0,
            stopped_early: None,
            thresholds: scenario.thresholds.clone(),
            first_failure: None,
            generator: GeneratorLoad::default(),
            tls: None,
            checks: BTreeMap::new(),
            flows: BTreeMap::new(),
            protocol: default_protocol(),
        }
    }

    /// Passes and fails over all checks.
    fn check_totals(&self) -> crate::CheckCount {
        sum_checks(&self.checks)
    }
}

/// Passes and fails of several checks together.
fn sum_checks(checks: &BTreeMap<String, crate::CheckCount>) -> crate::CheckCount {
    let (p, f) = checks
        .values()
        .fold((0, 0), |(p, f), c| (p + c.passes, f + c.fails));
    crate::CheckCount::of(p, f)
}

/// `amount` per second over `seconds` (0 for a run of no length).
fn per_second(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { amount / seconds } else { 0.0 }
}

/// Bytes in the unit a reader takes in at a glance: B, kB, MB, GB (powers of 1000).
fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl RunReport {
    pub(crate) fn build(
        meta: ReportMeta,
        names: &[String],
        totals: &Totals,
        timeline: Vec<TimelineRow>,
    ) -> Self {
        let mut per_request = BTreeMap::new();
        let mut per_request_h = BTreeMap::new();
        for (name, stats) in names.iter().zip(&totals.per_name) {
            let entry = per_request_h
                .entry(name.clone())
                .or_insert_with(|| (LatencyHistogram::new(), LatencyHistogram::new()));
            let _ = entry.0.merge(&stats.corrected);
            let _ = entry.1.merge(&stats.uncorrected);
            let counts: &mut (u64, u64) = per_request.entry(name.clone()).or_default();
            counts.0 += stats.requests;
            counts.1 += stats.errors;
        }
        let histograms = ReportHistograms {
            latency: totals.corrected.clone(),
            latency_uncorrected: totals.uncorrected.clone(),
            per_request: per_request_h,
            phases: totals.phases.clone(),
        };
        let counts = Counts {
            requests: totals.requests,
            errors: totals.errors,
            status_codes: totals
                .status_codes
                .iter()
                .map(|(k, v)| {
                    // 0: an operation of a Rust workload that succeeded.
                    let key = if *k == 0 {
                        "ok".to_owned()
                    } else {
                        k.to_string()
                    };
                    (key, *v)
                })
                .collect(),
            error_kinds: totals
                .failures
                .iter()
                .map(|(k, v)| (k.name().to_owned(), *v))
                .collect(),
            bytes_sent: totals.bytes_sent,
            bytes_received: totals.bytes_received,
            per_request,
        };
        Self::assemble(meta, counts, histograms, timeline)
    }

    fn assemble(
        meta: ReportMeta,
        counts: Counts,
        histograms: ReportHistograms,
        timeline: Vec<TimelineRow>,
    ) -> Self {
        let duration_s = meta.duration.as_secs_f64();
        let error_rate = if counts.requests == 0 {
            0.0
        } else {
            counts.errors as f64 / counts.requests as f64
        };
        let rps = if duration_s > 0.0 {
            counts.requests as f64 / duration_s
        } else {
            0.0
        };
        let per_request = counts
            .per_request
            .iter()
            .map(|(name, &(requests, errors))| {
                let (c, u) = histograms
                    .per_request
                    .get(name)
                    .cloned()
                    .unwrap_or_default();
                let report = RequestReport {
                    requests,
                    errors,
                    latency_ms: LatencyMs::of(&c),
                    latency_uncorrected_ms: meta.open_model.then(|| LatencyMs::of(&u)),
                };
                (name.clone(), report)
            })
            .collect();
        let latency_ms = LatencyMs::of(&histograms.latency);
        // Nothing to judge when no response came back at all: the target was
        // unreachable or broke every exchange. (A server that answers only
        // errors is reachable: the thresholds judge it.)
        let no_success = counts.status_codes.is_empty().then(|| {
            if counts.requests == 0 {
                "no request completed".to_owned()
            } else if let Some(first) = &meta.first_failure {
                format!("target unreachable: {first}")
            } else {
                format!("no response came back: {:?}", counts.error_kinds)
            }
        });
        let check_rate = meta.check_totals().pass_rate;
        let thresholds: Vec<ThresholdResult> = meta
            .thresholds
            .iter()
            .map(|t| {
                let observed = observe(t, &histograms.latency, error_rate, rps, check_rate);
                ThresholdResult {
                    expr: t.expr().to_owned(),
                    observed,
                    passed: t.holds(observed),
                }
            })
            .collect();
        let mut warnings = Vec::new();
        if meta.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
            warnings.push(
                "TLS certificates were NOT verified (tls.insecure_skip_verify): \
                 the figures may come from any server"
                    .to_owned(),
            );
        }
        Self {
            scenario: meta.scenario,
            model: if meta.open_model { "open" } else { "closed" }.to_owned(),
            targets: meta.targets,
            started_at: perf_core::format_rfc3339(meta.started_at_ms),
            started_at_ms: meta.started_at_ms,
            duration_s,
            requests: counts.requests,
            errors: counts.errors,
            error_rate,
            rps,
            latency_ms,
            latency_uncorrected_ms: meta
                .open_model
                .then(|| LatencyMs::of(&histograms.latency_uncorrected)),
            dropped: meta.dropped,
            status_codes: counts.status_codes,
            error_kinds: counts.error_kinds,
            bytes_sent: counts.bytes_sent,
            bytes_received: counts.bytes_received,
            per_request,
            passed: thresholds.iter().all(|t| t.passed) && no_success.is_none(),
            thresholds,
            stopped_early: meta.stopped_early,
            no_success,
            generator: meta.generator.judged(counts.requests, meta.dropped),
            interrupted: false,
            protocol: meta.protocol,
            phases: PhasesReport::of(&histograms.phases),
            tls: meta.tls,
            checks: meta.checks,
            flows: meta.flows,
            warnings,
            timeline,
            histograms,
        }
    }

    /// The summary a person reads at the end of a run: what ran, counts,
    /// latency (with the phases), checks, thresholds with units, the
    /// generator's own load, warnings and the verdict (`PASSED`, `FAILED`,
    /// `NOTHING TO JUDGE: ...`, `INTERRUPTED`).
    pub fn summary(&self) -> String {
        let r = self;
        let mut s = String::new();
        s.push_str(&format!(
            "scenario    {} ({} model) against {}\n",
            r.scenario,
            r.model,
            if r.targets.is_empty() {
                "a Rust workload".to_owned()
            } else {
                r.targets.join(", ")
            }
        ));
        s.push_str(&format!(
            "duration    {:.1} s{}\n",
            r.duration_s,
            r.stopped_early
                .as_ref()
                .map(|w| format!(" (stopped early: {w})"))
                .unwrap_or_default()
        ));
        s.push_str(&format!(
            "requests    {}  ({:.1} req/s)\n",
            r.requests, r.rps
        ));
        let iterations: u64 = r.flows.values().map(|f| f.iterations).sum();
        if !r.flows.is_empty() {
            let aborted: u64 = r.flows.values().map(|f| f.aborted).sum();
            s.push_str(&format!(
                "iterations  {iterations}  ({:.1}/s; {aborted} aborted after a failed check)\n",
                per_second(iterations as f64, r.duration_s)
            ));
        }
        if r.bytes_sent > 0 || r.bytes_received > 0 {
            s.push_str(&format!(
                "data        sent {} ({}/s), received {} ({}/s)\n",
                bytes(r.bytes_sent as f64),
                bytes(per_second(r.bytes_sent as f64, r.duration_s)),
                bytes(r.bytes_received as f64),
                bytes(per_second(r.bytes_received as f64, r.duration_s)),
            ));
        }
        s.push_str(&format!(
            "errors      {}  ({:.3} %)  {:?}\n",
            r.errors,
            r.error_rate * 100.0,
            r.error_kinds
        ));
        if r.model == "open" {
            s.push_str(&format!("dropped     {}\n", r.dropped));
        }
        s.push_str(&format!("status      {:?}\n", r.status_codes));
        s.push_str("latency ms       p50      p90      p95      p99     p999      max     mean\n");
        let row = |label: &str, l: &LatencyMs| {
            format!(
                "{label:<12}{:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                l.p50, l.p90, l.p95, l.p99, l.p999, l.max, l.mean
            )
        };
        if r.model == "open" {
            // From the intended send time: coordinated omission corrected.
            s.push_str(&row("  intended", &r.latency_ms));
        } else {
            // The closed model has no schedule: service time from the actual send.
            s.push_str(&row("  service", &r.latency_ms));
        }
        if let Some(u) = &r.latency_uncorrected_ms {
            s.push_str(&row("  from send", u));
        }
        for (name, req) in &r.per_request {
            s.push_str(&row(&format!("  {}", truncate(name, 10)), &req.latency_ms));
        }
        let p = &r.phases;
        for (label, figures) in [
            ("  ttfb", &p.ttfb_ms),
            ("  connect", &p.connect_ms),
            ("  tls", &p.tls_handshake_ms),
        ] {
            if let Some(l) = figures {
                s.push_str(&row(label, l));
            }
        }
        if r.protocol != "workload" {
            s.push_str(&format!(
                "protocol    {}; {} connections opened{}\n",
                r.protocol,
                p.connections_opened,
                r.tls
                    .as_ref()
                    .map(|t| format!(
                        "; TLS {} handshakes, {} resumed (resumption {})",
                        p.tls_handshakes,
                        p.tls_resumed,
                        if t.session_resumption { "on" } else { "off" }
                    ))
                    .unwrap_or_default()
            ));
        }
        for (label, c) in &r.checks {
            s.push_str(&format!(
                "check       {:<40} {:>7.2} %  {} passed, {} failed\n",
                truncate(label, 40),
                c.pass_rate * 100.0,
                c.passes,
                c.fails
            ));
        }
        for (name, f) in &r.flows {
            s.push_str(&format!(
                "flow        {name}: {} iterations, {} aborted after a failed check\n",
                f.iterations, f.aborted
            ));
        }
        for t in &r.thresholds {
            let observed = t.observed_with_unit();
            s.push_str(&format!(
                "threshold   {:<24} observed {:>14}  {}\n",
                t.expr,
                observed,
                if t.passed { "PASS" } else { "FAIL" }
            ));
        }
        let g = &r.generator;
        s.push_str(&format!(
            "generator   CPU {:.1} s on {} core(s) ({:.0} %){}{}\n",
            g.cpu_s,
            g.cores,
            g.cpu_utilization * 100.0,
            if r.model == "open" {
                format!(
                    ", {} requests left >10 ms late (max lag {:.1} ms)",
                    g.late_requests, g.max_schedule_lag_ms
                )
            } else {
                String::new()
            },
            g.reason
                .as_ref()
                .map(|why| format!("\nWARNING     the generator was the bottleneck: {why}; the figures understate the server"))
                .unwrap_or_default()
        ));
        if p.connect_failures > 0 || r.error_kinds.contains_key("tls") {
            s.push_str(&format!(
                "note        {} failed connects{} are counted as errors, outside the latency figures{}\n",
                p.connect_failures,
                r.error_kinds
                    .get("tls")
                    .map(|n| format!(" and {n} failed TLS handshakes"))
                    .unwrap_or_default(),
                p.connect_failed_ms
                    .map(|l| format!(" (they took p50 {:.2} ms, max {:.2} ms)", l.p50, l.max))
                    .unwrap_or_default()
            ));
        }
        for w in &r.warnings {
            s.push_str(&format!("WARNING     {w}\n"));
        }
        let failed_checks: u64 = r.checks.values().map(|c| c.fails).sum();
        if failed_checks > 0
            && !r
                .thresholds
                .iter()
                .any(|t| t.expr.trim_start().starts_with("checks"))
        {
            s.push_str(&format!(
                "WARNING     {failed_checks} checks failed and no threshold judges them: add e.g. 'checks > 0.99'\n"
            ));
        }
        if r.errors > 0 && r.thresholds.is_empty() {
            s.push_str(&format!(
                "WARNING     {} errors ({:.3} %) and no thresholds: nothing fails this run; add e.g. 'error_rate < 0.1%'\n",
                r.errors,
                r.error_rate * 100.0
            ));
        }
        if r.interrupted {
            s.push_str("result      INTERRUPTED (the figures cover only part of the plan)\n");
        } else if let Some(reason) = &r.no_success {
            s.push_str(&format!("result      NOTHING TO JUDGE: {reason}\n"));
        } else {
            s.push_str(if r.passed {
                "result      PASSED\n"
            } else {
                "result      FAILED\n"
            });
        }
        s
    }

    /// The timeline as CSV (header row, then one row per timeline entry).
    pub fn timeline_csv(&self) -> String {
        let mut out = String::from(
            "t_s,span_s,requests,errors,rps,p50_ms,p95_ms,p99_ms,max_ms,users,in_flight,dropped,bytes_sent,bytes_received,connects,ttfb_p95_ms,tls_handshake_p95_ms\n",
        );
        for r in &self.timeline {
            out.push_str(&format!(
                "{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{},{:.3},{:.3}\n",
                r.t_s,
                r.span_s,
                r.requests,
                r.errors,
                r.rps,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.max_ms,
                r.users,
                r.in_flight,
                r.dropped,
                r.bytes_sent,
                r.bytes_received,
                r.connects,
                r.ttfb_p95_ms,
                r.tls_handshake_p95_ms
            ));
        }
        out
    }

    /// Merges the reports of shards of one run into one: counts add up,
    /// histograms merge exactly (so percentiles are those of all samples),
    /// timelines add up second by second, thresholds are judged again.
    pub fn merge(reports: &[RunReport]) -> Result<RunReport> {
        let first = reports
            .first()
            .ok_or_else(|| Error::Merge("no reports".to_owned()))?;
        if reports.iter().any(|r| r.model != first.model) {
            return Err(Error::Merge(
                "reports of the open and the closed model cannot be merged".to_owned(),
            ));
        }
        let mut histograms = ReportHistograms {
            latency: LatencyHistogram::new(),
            latency_uncorrected: LatencyHistogram::new(),
            per_request: BTreeMap::new(),
            phases: PhaseHistograms::default(),
        };
        let mut counts = Counts::default();
        let mut timeline: BTreeMap<u64, TimelineRow> = BTreeMap::new();
        let mut targets = Vec::new();
        for r in reports {
            histograms.latency.merge(&r.histograms.latency)?;
            histograms
                .latency_uncorrected
                .merge(&r.histograms.latency_uncorrected)?;
            histograms.phases.merge(&r.histograms.phases);
            for (name, (c, u)) in &r.histograms.per_request {
                let e = histograms.per_request.entry(name.clone()).or_default();
                e.0.merge(c)?;
                e.1.merge(u)?;
            }
            counts.requests += r.requests;
            counts.errors += r.errors;
            counts.bytes_sent += r.bytes_sent;
            counts.bytes_received += r.bytes_received;
            for (k, v) in &r.status_codes {
                *counts.status_codes.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &r.error_kinds {
                *counts.error_kinds.entry(k.clone()).or_default() += v;
            }
            for (name, rr) in &r.per_request {
                let e = counts.per_request.entry(name.clone()).or_default();
                e.0 += rr.requests;
                e.1 += rr.errors;
            }
            for row in &r.timeline {
                timeline
                    .entry(row.t_s)
                    .and_modify(|m| {
                        m.requests += row.requests;
                        m.errors += row.errors;
                        m.rps += row.rps;
                        m.p50_ms = m.p50_ms.max(row.p50_ms);
                        m.p95_ms = m.p95_ms.max(row.p95_ms);
                        m.p99_ms = m.p99_ms.max(row.p99_ms);
                        m.max_ms = m.max_ms.max(row.max_ms);
                        m.users += row.users;
                        m.in_flight += row.in_flight;
                        m.dropped += row.dropped;
                        m.bytes_sent += row.bytes_sent;
                        m.bytes_received += row.bytes_received;
                        m.connects += row.connects;
                        m.ttfb_p95_ms = m.ttfb_p95_ms.max(row.ttfb_p95_ms);
                        m.tls_handshake_p95_ms =
                            m.tls_handshake_p95_ms.max(row.tls_handshake_p95_ms);
                    })
                    .or_insert_with(|| row.clone());
            }
            for t in &r.targets {
                if !targets.contains(t) {
                    targets.push(t.clone());
                }
            }
        }
        let thresholds = first
            .thresholds
            .iter()
            .map(|t| t.expr.parse::<Threshold>().map_err(Error::Merge))
            .collect::<Result<Vec<_>>>()?;
        let meta = ReportMeta {
            scenario: first.scenario.clone(),
            open_model: first.model == "open",
            targets,
            started_at_ms: reports.iter().map(|r| r.started_at_ms).min().unwrap_or(0),
            duration: perf_core::saturating_secs(
                reports.iter().map(|r| r.duration_s).fold(0.0, f64::max),
            ),
            dropped: reports.iter().map(|r| r.dropped).sum(),
            stopped_early: reports.iter().find_map(|r| r.stopped_early.clone()),
            thresholds,
            generator: {
                let cpu_s: f64 = reports.iter().map(|r| r.generator.cpu_s).sum();
                let cores: u32 = reports.iter().map(|r| r.generator.cores).sum();
                // Each shard had its own cores: the busiest one's utilization counts.
                GeneratorLoad {
                    cpu_s,
                    cores,
                    cpu_utilization: reports
                        .iter()
                        .map(|r| r.generator.cpu_utilization)
                        .fold(0.0, f64::max),
                    late_requests: reports.iter().map(|r| r.generator.late_requests).sum(),
                    max_schedule_lag_ms: reports
                        .iter()
                        .map(|r| r.generator.max_schedule_lag_ms)
                        .fold(0.0, f64::max),
                    bound: false,
                    reason: None,
                }
            },
            tls: reports.iter().find_map(|r| r.tls.clone()),
            protocol: first.protocol.clone(),
            checks: {
                let mut all: BTreeMap<String, (u64, u64)> = BTreeMap::new();
                for (k, c) in reports.iter().flat_map(|r| &r.checks) {
                    let e = all.entry(k.clone()).or_default();
                    e.0 += c.passes;
                    e.1 += c.fails;
                }
                all.into_iter()
                    .map(|(k, (p, f))| (k, crate::CheckCount::of(p, f)))
                    .collect()
            },
            flows: {
                let mut all: BTreeMap<String, crate::FlowCount> = BTreeMap::new();
                for (k, c) in reports.iter().flat_map(|r| &r.flows) {
                    let e = all.entry(k.clone()).or_default();
                    e.iterations += c.iterations;
                    e.aborted += c.aborted;
                }
                all
            },
            first_failure: reports
                .iter()
                .find_map(|r| r.no_success.as_deref())
                .map(|reason| reason.trim_start_matches("target unreachable: ").to_owned()),
        };
        Ok(Self::assemble(
            meta,
            counts,
            histograms,
            timeline.into_values().collect(),
        ))
    }
}

#[derive(Debug, Default)]
struct Counts {
    requests: u64,
    errors: u64,
    status_codes: BTreeMap<String, u64>,
    error_kinds: BTreeMap<String, u64>,
    bytes_sent: u64,
    bytes_received: u64,
    per_request: BTreeMap<String, (u64, u64)>,
}

/// The value a threshold looks at, in its unit.
pub(crate) fn observe(
    t: &Threshold,
    latency: &LatencyHistogram,
    error_rate: f64,
    rps: f64,
    check_rate: f64,
) -> f64 {
    match t.metric {
        ThresholdMetric::Checks => check_rate,
        ThresholdMetric::Percentile(p) => ms(latency.percentile(f64::from(p) / 10.0)),
        ThresholdMetric::Mean => ms(latency.mean()),
        ThresholdMetric::Max => ms(latency.max()),
        ThresholdMetric::ErrorRate => error_rate,
        ThresholdMetric::Rps => rps,
    }
}

fn truncate(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_owned()
    } else {
        text.chars().take(n - 1).chain(['…']).collect()
    }
}
