//! What-if simulation: replay a recorded load through a policy before
//! deploying it. The load is a series of (time, total demand) points in the
//! unit of the policy's first metric summed over all replicas (requests per
//! second in total, CPU millicores in total); each evaluation period the
//! demand is shared evenly by the ready replicas, the engine decides, and
//! new replicas become ready after a start-up delay.

use serde::{Deserialize, Serialize};

use crate::decision::{Autoscaler, Observation, Reading};
use crate::policy::{MetricKind, MetricTarget, ScalingPolicy};
use crate::replicas::Pod;
use crate::{Error, Result};

/// The most decisions one simulation makes (half a year at the HPA's 15 s).
pub const MAX_SIMULATION_STEPS: usize = 1_051_200;

/// The most replica-decisions (decisions times replicas) one simulation
/// makes: minutes of CPU, not days.
pub const MAX_SIMULATION_WORK: f64 = 2e8;

/// The latest time a trace may name, seconds (about 31,700 years: Unix
/// timestamps fit, and a time plus a decision period stays exact to the
/// microsecond).
pub const MAX_TRACE_SECONDS: f64 = 1e12;

/// One point of a recorded load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TracePoint {
    /// Seconds since the start of the recording.
    pub t_s: f64,
    /// Total demand at that time.
    pub value: f64,
}

/// Reads a trace from CSV: a header, then `time,value` rows (time in
/// seconds, increasing). Errors name the line.
///
/// ```
/// let trace = perf_scaling::parse_trace_csv("t_s,rps\n0,100\n10,250\n")?;
/// assert_eq!(trace.len(), 2);
/// assert!(perf_scaling::parse_trace_csv("t_s,rps\n0,100\n-5,1\n").is_err());
/// # Ok::<(), perf_scaling::Error>(())
/// ```
pub fn parse_trace_csv(text: &str) -> Result<Vec<TracePoint>> {
    let mut points: Vec<TracePoint> = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut cols = line.split(',');
        let parse = |c: Option<&str>, what: &str| -> Result<f64> {
            c.map(str::trim)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    Error::Input(format!(
                        "trace line {}: {what} is not a number: {line:?}",
                        i + 1
                    ))
                })
        };
        let t_s = parse(cols.next(), "time")?;
        let value = parse(cols.next(), "value")?;
        if value < 0.0 {
            return Err(Error::Input(format!(
                "trace line {}: value {value} is negative",
                i + 1
            )));
        }
        if let Some(last) = points.last()
            && t_s <= last.t_s
        {
            return Err(Error::Input(format!(
                "trace line {}: time {t_s} does not increase (previous {})",
                i + 1,
                last.t_s
            )));
        }
        if t_s > MAX_TRACE_SECONDS {
            return Err(Error::Input(format!(
                "trace line {}: time {t_s} is beyond {MAX_TRACE_SECONDS:e} s",
                i + 1
            )));
        }
        if points.is_empty() && t_s < 0.0 {
            return Err(Error::Input(format!(
                "trace line {}: time {t_s} is negative",
                i + 1
            )));
        }
        points.push(TracePoint { t_s, value });
    }
    if points.is_empty() {
        return Err(Error::Input(
            "the trace has no rows after its header".to_owned(),
        ));
    }
    Ok(points)
}

/// The decision periods a simulation of `trace` spans (it makes one
/// decision more: at the start and after each period) and its
/// replica-decisions (periods times the most replicas it may run): what [`simulate`]
/// checks against [`MAX_SIMULATION_STEPS`] and [`MAX_SIMULATION_WORK`],
/// for a caller with tighter bounds of its own (a server answering a
/// request).
pub fn simulation_size(
    policy: &ScalingPolicy,
    trace: &[TracePoint],
    settings: &SimulationSettings,
) -> (f64, f64) {
    let (Some(first), Some(last)) = (trace.first(), trace.last()) else {
        return (0.0, 0.0);
    };
    let initial = settings
        .initial_replicas
        .unwrap_or(policy.min_replicas)
        .clamp(1, policy.max_replicas.max(1));
    let steps = (last.t_s - first.t_s) / settings.period_s;
    (steps, steps * f64::from(policy.max_replicas.max(initial)))
}

/// How the simulated system behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SimulationSettings {
    /// Replicas at the start (default: the policy's minimum).
    pub initial_replicas: Option<u32>,
    /// Seconds between decisions (default 15, the HPA's period).
    pub period_s: f64,
    /// Seconds from a decision to a new replica being ready (default 30).
    pub startup_s: f64,
    /// For a utilization target: the request of one replica in the trace's
    /// unit (default 100, so the trace is in percent of one replica).
    pub request_per_replica: f64,
}

impl Default for SimulationSettings {
    fn default() -> Self {
        Self {
            initial_replicas: None,
            period_s: 15.0,
            startup_s: 30.0,
            request_per_replica: 100.0,
        }
    }
}

/// The state after one decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulationStep {
    /// Time, seconds.
    pub t_s: f64,
    /// Total demand.
    pub load: f64,
    /// Replicas ready (serving).
    pub ready: u32,
    /// Replicas asked for (ready + starting).
    pub replicas: u32,
    /// Replicas the demand needs at the target.
    pub needed: u32,
    /// The decision's reason.
    pub reason: String,
}

/// What a policy did with a recorded load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulationReport {
    /// One row per evaluation period.
    pub timeline: Vec<SimulationStep>,
    /// Seconds from the demand needing more replicas than were ready to
    /// enough being ready, each time it happened.
    pub scale_up_times_s: Vec<f64>,
    /// The slowest of those.
    pub max_time_to_scale_up_s: Option<f64>,
    /// Replica-seconds ready beyond what the demand needed.
    pub over_provisioned_instance_s: f64,
    /// Replica-seconds missing against what the demand needed.
    pub under_provisioned_instance_s: f64,
    /// Replica-seconds paid for: replicas asked for (ready or starting)
    /// times the time they were held.
    pub replica_seconds: f64,
    /// Most replicas at once.
    pub peak_replicas: u32,
    /// Changes of the replica count.
    pub scale_events: u32,
    /// Decisions in which the forecast raised the count.
    pub forecast_raises: u32,
}

impl SimulationReport {
    /// The mean of `scale_up_times_s` (time to ready after a rise).
    pub fn mean_time_to_ready_s(&self) -> Option<f64> {
        (!self.scale_up_times_s.is_empty())
            .then(|| self.scale_up_times_s.iter().sum::<f64>() / self.scale_up_times_s.len() as f64)
    }
}

/// The same trace through the reactive policy and the predictive one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyComparison {
    /// The policy without its `predictive` block.
    pub reactive: SimulationReport,
    /// The policy with predictive scaling in `scale` mode.
    pub predictive: SimulationReport,
    /// The predictive settings used (the policy's, or `lead_time` = start-up
    /// plus one period when it has none).
    pub settings: crate::forecast::PredictiveSettings,
}

impl PolicyComparison {
    /// The side-by-side table `perf-server scaling simulate --compare` prints:
    /// replica-seconds short, over and paid, times to ready, peaks and
    /// scale events, reactive beside predictive.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let lead = self.settings.lead_time;
        out.push_str(&format!(
            "{:<34}{:>14}{:>14}\n",
            "", "reactive", "predictive"
        ));
        let mut row = |label: &str, a: String, b: String| {
            out.push_str(&format!("{label:<34}{a:>14}{b:>14}\n"));
        };
        let (r, p) = (&self.reactive, &self.predictive);
        row(
            "under-provisioned replica-s",
            format!("{:.0}", r.under_provisioned_instance_s),
            format!("{:.0}", p.under_provisioned_instance_s),
        );
        row(
            "over-provisioned replica-s",
            format!("{:.0}", r.over_provisioned_instance_s),
            format!("{:.0}", p.over_provisioned_instance_s),
        );
        row(
            "replica-seconds paid",
            format!("{:.0}", r.replica_seconds),
            format!("{:.0}", p.replica_seconds),
        );
        let secs = |v: Option<f64>| v.map_or("-".to_owned(), |s| format!("{s:.0} s"));
        row(
            "time to ready after a rise, mean",
            secs(r.mean_time_to_ready_s()),
            secs(p.mean_time_to_ready_s()),
        );
        row(
            "time to ready after a rise, max",
            secs(r.max_time_to_scale_up_s),
            secs(p.max_time_to_scale_up_s),
        );
        row(
            "rises that left it short",
            r.scale_up_times_s.len().to_string(),
            p.scale_up_times_s.len().to_string(),
        );
        row(
            "scale events",
            r.scale_events.to_string(),
            p.scale_events.to_string(),
        );
        row(
            "peak replicas",
            r.peak_replicas.to_string(),
            p.peak_replicas.to_string(),
        );
        row(
            "decisions raised by the forecast",
            "-".to_owned(),
            p.forecast_raises.to_string(),
        );
        let ratio = |a: f64, b: f64| {
            if a > 0.0 {
                format!("{:.3}", b / a)
            } else {
                "-".to_owned()
            }
        };
        out.push_str(&format!(
            "predictive / reactive: under-provisioned {}, replica-seconds {} (lead time {lead}, model {:?})\n",
            ratio(r.under_provisioned_instance_s, p.under_provisioned_instance_s),
            ratio(r.replica_seconds, p.replica_seconds),
            self.settings.model,
        ));
        out
    }
}

/// Replays `trace` through `policy` reactive and predictive, side by side.
///
/// ```
/// use perf_scaling::{compare_reactive_predictive, ScalingPolicy, SimulationSettings, TracePoint};
/// let policy: ScalingPolicy = serde_json::from_str(r#"{"min_replicas": 1, "max_replicas": 50,
///     "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}], "behavior": {}}"#)?;
/// // A ramp repeats nothing: the forecast stays inactive and both agree.
/// let trace: Vec<TracePoint> = (0..=120).map(|m| TracePoint { t_s: m as f64 * 60.0, value: 100.0 + 20.0 * m as f64 }).collect();
/// let c = compare_reactive_predictive(&policy, &trace, &SimulationSettings::default())?;
/// assert_eq!(c.reactive.under_provisioned_instance_s, c.predictive.under_provisioned_instance_s);
/// assert_eq!(c.predictive.forecast_raises, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn compare_reactive_predictive(
    policy: &ScalingPolicy,
    trace: &[TracePoint],
    settings: &SimulationSettings,
) -> Result<PolicyComparison> {
    let reactive = ScalingPolicy {
        predictive: None,
        ..policy.clone()
    };
    // Without a block: provision the start-up plus one decision ahead (at
    // most the hour a lead time may be).
    let mut predictive_settings = policy.predictive.clone().unwrap_or_else(|| {
        crate::forecast::PredictiveSettings::scale(
            (settings.startup_s + settings.period_s).clamp(1.0, 3600.0),
        )
    });
    predictive_settings.mode = crate::forecast::PredictiveMode::Scale;
    let predictive = ScalingPolicy {
        predictive: Some(predictive_settings.clone()),
        ..policy.clone()
    };
    predictive.validate()?;
    // The simulation replays one load: the first metric's.
    if predictive.forecast_metric().map(|m| &m.name) != Some(&policy.metrics[0].name) {
        return Err(Error::invalid(
            "predictive.metric",
            format!(
                "a simulation replays the first metric ({}); the forecast must be of it",
                policy.metrics[0].name
            ),
        ));
    }
    if trace.iter().any(|p| p.t_s > crate::forecast::MAX_CLOCK_S) {
        return Err(Error::Input(format!(
            "trace times above {} s cannot be learnt from; are they milliseconds?",
            crate::forecast::MAX_CLOCK_S
        )));
    }
    Ok(PolicyComparison {
        reactive: simulate(&reactive, trace, settings)?,
        predictive: simulate(&predictive, trace, settings)?,
        settings: predictive_settings,
    })
}

fn demand_at(trace: &[TracePoint], t: f64) -> f64 {
    // Step interpolation: the latest point at or before t.
    let i = trace.partition_point(|p| p.t_s <= t);
    if i == 0 {
        trace[0].value
    } else {
        trace[i - 1].value
    }
}

/// The demand shared by the ready pods in whole milli-units, as real
/// pods report it: the shares add up to the demand (some pods get one
/// milli-unit more), so the HPA's truncated average sees the demand itself.
fn share_in_millis<'a>(
    load: f64,
    ready: impl Iterator<Item = &'a Pod>,
) -> std::collections::BTreeMap<String, f64> {
    let names: Vec<&String> = ready.map(|p| &p.name).collect();
    let n = names.len().max(1) as f64;
    let total = (load * 1000.0).round();
    let base = (total / n).floor();
    let extra = total - base * n;
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let milli = base + if (i as f64) < extra { 1.0 } else { 0.0 };
            (name.clone(), milli / 1000.0)
        })
        .collect()
}

/// Replays `trace` through `policy`.
///
/// ```
/// use perf_scaling::{simulate, ScalingPolicy, SimulationSettings, TracePoint};
/// let policy: ScalingPolicy = serde_json::from_str(r#"{"min_replicas": 1, "max_replicas": 10,
///     "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}], "behavior": {}}"#)?;
/// let trace = [TracePoint { t_s: 0.0, value: 50.0 }, TracePoint { t_s: 60.0, value: 450.0 }, TracePoint { t_s: 600.0, value: 450.0 }];
/// let report = simulate(&policy, &trace, &SimulationSettings::default())?;
/// assert_eq!(report.peak_replicas, 5);
/// assert!(report.max_time_to_scale_up_s.unwrap() <= 45.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn simulate(
    policy: &ScalingPolicy,
    trace: &[TracePoint],
    settings: &SimulationSettings,
) -> Result<SimulationReport> {
    if trace.is_empty() {
        return Err(Error::Input("the trace is empty".to_owned()));
    }
    settings.validate()?;
    let mut engine = Autoscaler::new(policy.clone())?;
    let spec = &policy.metrics[0];
    let per_replica_target = match spec.target {
        MetricTarget::Utilization(pct) => pct / 100.0 * settings.request_per_replica,
        MetricTarget::AverageValue(v) | MetricTarget::Value(v) => v,
    };
    let initial = settings
        .initial_replicas
        .unwrap_or(policy.min_replicas)
        .clamp(1, policy.max_replicas.max(1));
    // Each replica: the time it becomes ready.
    let mut replicas: Vec<f64> = vec![f64::NEG_INFINITY; initial as usize];
    let end = trace[trace.len() - 1].t_s;
    let (steps, work) = simulation_size(policy, trace, settings);
    if !(work.is_finite() && work <= MAX_SIMULATION_WORK) {
        return Err(Error::Input(format!(
            "{steps:.0} decisions over up to {} replicas is too much to simulate (at most {MAX_SIMULATION_WORK:e} replica-decisions); use a longer period, a shorter trace or fewer max_replicas",
            policy.max_replicas.max(initial)
        )));
    }
    if !(steps.is_finite() && steps <= MAX_SIMULATION_STEPS as f64) {
        return Err(Error::Input(format!(
            "the trace spans {:.0} s: at {} s per decision that is more than {MAX_SIMULATION_STEPS} decisions; use a longer period or a shorter trace",
            end - trace[0].t_s,
            settings.period_s
        )));
    }
    let mut timeline = Vec::new();
    let mut over = 0.0;
    let mut under = 0.0;
    let mut short_since: Option<f64> = None;
    let mut scale_up_times = Vec::new();
    let mut scale_events = 0;
    let mut forecast_raises = 0;
    let mut replica_seconds = 0.0;
    let mut peak = initial;
    let first = trace[0].t_s;
    let mut step = 0u64;
    let mut t = first;
    // Counted, not only compared: far from 0 a time plus a period can round
    // back to itself.
    // Rounded up: a span that is a whole number of periods may divide to
    // just under it; `t <= end` ends the loop where it should.
    let last_step = perf_core::num::saturating_u64(steps.ceil());
    while step <= last_step && t <= end {
        let load = demand_at(trace, t);
        let ready = u32::try_from(replicas.iter().filter(|r| **r <= t).count()).unwrap_or(u32::MAX);
        let needed = perf_core::num::saturating_u32((load / per_replica_target).ceil().max(0.0));
        let current = u32::try_from(replicas.len()).unwrap_or(u32::MAX);
        over += f64::from(ready.saturating_sub(needed)) * settings.period_s;
        under += f64::from(needed.saturating_sub(ready)) * settings.period_s;
        match (needed > ready, short_since) {
            (true, None) => short_since = Some(t),
            (false, Some(since)) => {
                scale_up_times.push(t - since);
                short_since = None;
            }
            _ => {}
        }
        // The readings: demand shared by the ready replicas; starting ones
        // are pending.
        let pods: Vec<Pod> = replicas
            .iter()
            .enumerate()
            .map(|(i, ready_at)| {
                let mut p = Pod::running(format!("r{i}"), Some(settings.request_per_replica));
                if *ready_at > t {
                    p.phase = crate::replicas::PodPhase::Pending;
                    p.ready = false;
                }
                p
            })
            .collect();
        let reading = match spec.kind {
            MetricKind::Resource | MetricKind::Pods => {
                Reading::PerPod(share_in_millis(load, pods.iter().filter(|p| p.ready)))
            }
            MetricKind::Object | MetricKind::External => Reading::Single(load),
        };
        let observation = Observation {
            pods,
            readings: [(spec.name.clone(), reading)].into(),
        };
        let decision = engine.decide_quietly(t, current, &observation);
        if decision.prediction.is_some_and(|p| p.applied) {
            forecast_raises += 1;
        }
        if decision.to > current {
            replicas.extend(std::iter::repeat_n(
                t + settings.startup_s,
                (decision.to - current) as usize,
            ));
            scale_events += 1;
        } else if decision.to < current {
            // Remove starting replicas first, then the newest ready ones.
            replicas.sort_by(|a, b| b.total_cmp(a));
            replicas.drain(..(current - decision.to) as usize);
            scale_events += 1;
        }
        peak = peak.max(u32::try_from(replicas.len()).unwrap_or(u32::MAX));
        replica_seconds += replicas.len() as f64 * settings.period_s;
        timeline.push(SimulationStep {
            t_s: t,
            load,
            ready,
            replicas: u32::try_from(replicas.len()).unwrap_or(u32::MAX),
            needed,
            reason: decision.reason,
        });
        step += 1;
        t = first + step as f64 * settings.period_s;
    }
    let max_time = scale_up_times.iter().copied().reduce(f64::max);
    Ok(SimulationReport {
        timeline,
        max_time_to_scale_up_s: max_time,
        scale_up_times_s: scale_up_times,
        over_provisioned_instance_s: over,
        under_provisioned_instance_s: under,
        replica_seconds,
        peak_replicas: peak,
        scale_events,
        forecast_raises,
    })
}

impl SimulationSettings {
    /// Checks every field; the error names the bad one and the range.
    pub fn validate(&self) -> Result<()> {
        if !(self.period_s >= 1.0 && self.period_s <= 3600.0) {
            return Err(Error::invalid(
                "period_s",
                format!("{} is outside 1 to 3600", self.period_s),
            ));
        }
        if !(self.startup_s >= 0.0 && self.startup_s <= 3600.0) {
            return Err(Error::invalid(
                "startup_s",
                format!("{} is outside 0 to 3600", self.startup_s),
            ));
        }
        if self.request_per_replica.is_nan() || self.request_per_replica <= 0.0 {
            return Err(Error::invalid("request_per_replica", "must be above 0"));
        }
        Ok(())
    }
}

perf_core::config_builder! {
    /// Builds [`SimulationSettings`].
    SimulationSettings => SimulationSettingsBuilder, Error {
        initial_replicas: Option<u32> => into,
        period_s: f64,
        startup_s: f64,
        request_per_replica: f64,
    }
}
