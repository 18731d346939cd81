//! The horizontal controller: from readings to a replica count, with the
//! HPA's bounds handling, the maximum over metrics, stabilization and rate
//! limits. Time is passed in (seconds on any monotonic clock), so the same
//! engine runs live, in tests and in simulation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::{
    MetricKind, MetricTarget, RatePolicyKind, ResolvedRules, ScalingPolicy, ScalingRules,
    SelectPolicy,
};
use crate::replicas::{
    MetricRecommendation, Pod, average_value_replicas, pod_average_replicas, ready_pods,
    resource_utilization_replicas, value_replicas,
};
use crate::{Error, Result};

/// What a metric source measured for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// A value per pod (resource and pods metrics).
    PerPod(BTreeMap<String, f64>),
    /// One value (object and external metrics).
    Single(f64),
    /// The source could not read it, and why.
    Unavailable(String),
}

/// Everything one decision looks at.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Observation {
    /// The instances.
    pub pods: Vec<Pod>,
    /// Readings by metric name.
    pub readings: BTreeMap<String, Reading>,
}

/// One metric's part in a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricOutcome {
    /// The metric.
    pub name: String,
    /// The observed figure (utilization percent, average or value).
    pub observed: Option<f64>,
    /// The target figure.
    pub target: f64,
    /// Replicas it asked for.
    pub replicas: Option<u32>,
    /// Why it gave nothing.
    pub error: Option<String>,
}

/// A decision and its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When (the caller's clock, seconds).
    pub at_s: f64,
    /// Replicas before.
    pub from: u32,
    /// Replicas to run.
    pub to: u32,
    /// What the metrics asked for before stabilization and limits.
    pub proposed: Option<u32>,
    /// Why `to` is what it is.
    pub reason: String,
    /// Each metric's reading and proposal.
    pub metrics: Vec<MetricOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Timed {
    at: f64,
    value: u32,
}

/// The decision engine for one scaled workload: keeps the recommendation
/// history (for stabilization) and the scale events (for rate limits).
///
/// ```
/// use std::collections::BTreeMap;
/// use perf_scaling::{Autoscaler, Observation, Pod, Reading, ScalingPolicy};
/// let policy: ScalingPolicy = serde_json::from_str(r#"{"min_replicas": 1, "max_replicas": 10,
///     "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}]}"#)?;
/// let mut hpa = Autoscaler::new(policy)?;
/// let pods = vec![Pod::running("a", None), Pod::running("b", None)];
/// let rps: BTreeMap<String, f64> = [("a".to_owned(), 250.0), ("b".to_owned(), 250.0)].into();
/// let observation = Observation { pods, readings: [("rps".to_owned(), Reading::PerPod(rps))].into() };
/// let d = hpa.decide(0.0, 2, &observation);
/// assert_eq!((d.from, d.to), (2, 4)); // 250 per pod against 100: 5 wanted, legacy limit max(2x2, 4) = 4
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: ScalingPolicy,
    up: Option<ResolvedRules>,
    down: Option<ResolvedRules>,
    recommendations: Vec<Timed>,
    scale_up_events: Vec<Timed>,
    scale_down_events: Vec<Timed>,
}

/// The legacy down-scale stabilization window (the controller's default).
const LEGACY_DOWN_WINDOW_S: f64 = 300.0;

impl Autoscaler {
    /// An engine for `policy` (validated).
    pub fn new(policy: ScalingPolicy) -> Result<Self> {
        policy.validate()?;
        let (up, down) = match &policy.behavior {
            Some(b) => (
                Some(ScalingRules::resolve(b.scale_up.as_ref(), true)),
                Some(ScalingRules::resolve(b.scale_down.as_ref(), false)),
            ),
            None => (None, None),
        };
        Ok(Self {
            policy,
            up,
            down,
            recommendations: Vec::new(),
            scale_up_events: Vec::new(),
            scale_down_events: Vec::new(),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &ScalingPolicy {
        &self.policy
    }

    /// Replaces the policy, keeping the history.
    pub fn set_policy(&mut self, policy: ScalingPolicy) -> Result<()> {
        let fresh = Self::new(policy)?;
        self.policy = fresh.policy;
        self.up = fresh.up;
        self.down = fresh.down;
        Ok(())
    }

    /// Records a change made outside [`Autoscaler::decide`] (a manual
    /// scale), so rate limits count it.
    pub fn record_scale(&mut self, at_s: f64, from: u32, to: u32) {
        if self.policy.behavior.is_none() || from == to {
            return;
        }
        let longest = |r: &Option<ResolvedRules>| {
            r.as_ref().map_or(0, |r| {
                r.policies
                    .iter()
                    .map(|p| p.period_seconds)
                    .max()
                    .unwrap_or(0)
            })
        };
        let keep = f64::from(longest(&self.up).max(longest(&self.down)));
        self.scale_up_events.retain(|e| at_s - e.at <= keep);
        self.scale_down_events.retain(|e| at_s - e.at <= keep);
        if to > from {
            self.scale_up_events.push(Timed {
                at: at_s,
                value: to - from,
            });
        } else {
            self.scale_down_events.push(Timed {
                at: at_s,
                value: from - to,
            });
        }
    }

    /// What one metric asks for.
    fn metric_replicas(
        &self,
        current: u32,
        spec: &crate::policy::MetricSpec,
        observation: &Observation,
    ) -> Result<MetricRecommendation> {
        let reading = observation
            .readings
            .get(&spec.name)
            .ok_or_else(|| Error::NoMetrics(format!("no reading for {}", spec.name)))?;
        let tolerance = self.policy.tolerance;
        match (reading, spec.kind, spec.target) {
            (Reading::Unavailable(why), _, _) => Err(Error::NoMetrics(why.clone())),
            (Reading::PerPod(values), MetricKind::Resource, MetricTarget::Utilization(t)) => {
                resource_utilization_replicas(
                    current,
                    t,
                    &observation.pods,
                    values,
                    tolerance,
                    spec.name == "cpu",
                )
            }
            (
                Reading::PerPod(values),
                MetricKind::Resource | MetricKind::Pods,
                MetricTarget::AverageValue(t),
            ) => pod_average_replicas(current, t, &observation.pods, values, tolerance),
            (
                Reading::Single(v),
                MetricKind::Object | MetricKind::External,
                MetricTarget::Value(t),
            ) => value_replicas(current, t, *v, ready_pods(&observation.pods), tolerance),
            (
                Reading::Single(v),
                MetricKind::Object | MetricKind::External,
                MetricTarget::AverageValue(t),
            ) => average_value_replicas(current, t, *v, tolerance),
            _ => Err(Error::NoMetrics(format!(
                "the reading of {} does not fit a {:?} metric with that target",
                spec.name, spec.kind
            ))),
        }
    }

    /// Decides at time `now_s` with `current` replicas; the result is taken
    /// as applied (its change is recorded for the rate limits).
    pub fn decide(&mut self, now_s: f64, current: u32, observation: &Observation) -> Decision {
        let p = &self.policy;
        let mut outcomes = Vec::new();
        let decision = |to: u32,
                        proposed: Option<u32>,
                        reason: String,
                        metrics: Vec<MetricOutcome>| Decision {
            at_s: now_s,
            from: current,
            to,
            proposed,
            reason,
            metrics,
        };
        if current == 0 {
            return decision(
                0,
                None,
                "scaling is disabled while the workload has 0 replicas".to_owned(),
                outcomes,
            );
        }
        if current > p.max_replicas {
            let to = p.max_replicas;
            self.record_scale(now_s, current, to);
            return decision(
                to,
                None,
                format!("current replicas above max_replicas {to}"),
                outcomes,
            );
        }
        if current < p.min_replicas {
            let to = p.min_replicas;
            self.record_scale(now_s, current, to);
            return decision(
                to,
                None,
                format!("current replicas below min_replicas {to}"),
                outcomes,
            );
        }
        let mut proposed: Option<(u32, String)> = None;
        let mut invalid = 0usize;
        let mut first_error = None;
        for spec in &p.metrics {
            let target = match spec.target {
                MetricTarget::Utilization(v)
                | MetricTarget::AverageValue(v)
                | MetricTarget::Value(v) => v,
            };
            match self.metric_replicas(current, spec, observation) {
                Ok(r) => {
                    if proposed.as_ref().is_none_or(|(best, _)| r.replicas > *best) {
                        proposed = Some((r.replicas, spec.name.clone()));
                    }
                    outcomes.push(MetricOutcome {
                        name: spec.name.clone(),
                        observed: Some(r.observed),
                        target,
                        replicas: Some(r.replicas),
                        error: None,
                    });
                }
                Err(e) => {
                    invalid += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                    outcomes.push(MetricOutcome {
                        name: spec.name.clone(),
                        observed: None,
                        target,
                        replicas: None,
                        error: Some(e.to_string()),
                    });
                }
            }
        }
        let total = p.metrics.len();
        let (wanted, by) = match proposed {
            Some(x) if invalid == 0 || x.0 > current => x,
            _ => {
                return decision(
                    current,
                    None,
                    format!(
                        "no change: {invalid} of {total} metrics invalid ({}) and the others would not scale up",
                        first_error.unwrap_or_default()
                    ),
                    outcomes,
                );
            }
        };
        let (to, limit) = if self.policy.behavior.is_some() {
            self.with_behavior(now_s, current, wanted)
        } else {
            self.legacy(now_s, current, wanted)
        };
        self.record_scale(now_s, current, to);
        let reason = match (to.cmp(&current), limit) {
            (std::cmp::Ordering::Equal, None) => format!("{by} asks for {wanted}: no change"),
            (_, None) => format!("{by} asks for {wanted}"),
            (_, Some(limit)) => format!("{by} asks for {wanted}; {limit}"),
        };
        decision(to, Some(wanted), reason, outcomes)
    }

    /// No behavior: a 300 s down window and `max(2 × current, 4)` up.
    fn legacy(&mut self, now_s: f64, current: u32, wanted: u32) -> (u32, Option<String>) {
        let mut stabilized = wanted;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at < now_s - LEGACY_DOWN_WINDOW_S {
                old = Some(i);
            } else if r.value > stabilized {
                stabilized = r.value;
            }
        }
        self.remember(old, now_s, wanted);
        let up_limit = (2 * current).max(4);
        let p = &self.policy;
        let (max_allowed, max_reason) = if p.max_replicas > up_limit {
            (
                up_limit,
                "limited by the scale-up limit max(2 x current, 4)",
            )
        } else {
            (p.max_replicas, "limited by max_replicas")
        };
        let min_allowed = p.min_replicas.max(1);
        if stabilized < min_allowed {
            return (min_allowed, Some("raised to min_replicas".to_owned()));
        }
        if stabilized > max_allowed {
            return (max_allowed, Some(max_reason.to_owned()));
        }
        let note = (stabilized != wanted)
            .then(|| format!("held at {stabilized} by the 300 s down-scale stabilization window"));
        (stabilized, note)
    }

    fn remember(&mut self, old: Option<usize>, now_s: f64, wanted: u32) {
        let rec = Timed {
            at: now_s,
            value: wanted,
        };
        match old {
            Some(i) => self.recommendations[i] = rec,
            None => self.recommendations.push(rec),
        }
    }

    fn with_behavior(&mut self, now_s: f64, current: u32, wanted: u32) -> (u32, Option<String>) {
        let (Some(up), Some(down)) = (self.up.clone(), self.down.clone()) else {
            return (wanted, None);
        };
        // Stabilize: the least of the recent recommendations up, the most down.
        let up_cut = now_s - f64::from(up.window_s);
        let down_cut = now_s - f64::from(down.window_s);
        let mut up_rec = wanted;
        let mut down_rec = wanted;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at > up_cut {
                up_rec = up_rec.min(r.value);
            }
            if r.at > down_cut {
                down_rec = down_rec.max(r.value);
            }
            if r.at < up_cut && r.at < down_cut {
                old = Some(i);
            }
        }
        let mut stabilized = current;
        if stabilized < up_rec {
            stabilized = up_rec;
        }
        if stabilized > down_rec {
            stabilized = down_rec;
        }
        self.remember(old, now_s, wanted);
        let mut note = (stabilized != wanted).then(|| {
            format!(
                "stabilized at {stabilized} (windows: up {} s, down {} s)",
                up.window_s, down.window_s
            )
        });
        let p = &self.policy;
        if stabilized > current {
            let limit = scale_up_limit(
                current,
                &self.scale_up_events,
                &self.scale_down_events,
                &up,
                now_s,
            )
            .max(current);
            let (max_allowed, why) = if p.max_replicas > limit {
                (limit, "limited by the scale-up policies")
            } else {
                (p.max_replicas, "limited by max_replicas")
            };
            if stabilized > max_allowed {
                return (max_allowed, Some(why.to_owned()));
            }
        } else if stabilized < current {
            let limit = scale_down_limit(
                current,
                &self.scale_up_events,
                &self.scale_down_events,
                &down,
                now_s,
            )
            .min(current);
            let (min_allowed, why) = if p.min_replicas < limit {
                (limit, "limited by the scale-down policies")
            } else {
                (p.min_replicas, "limited by min_replicas")
            };
            if stabilized < min_allowed {
                note = Some(why.to_owned());
                return (min_allowed, note);
            }
        }
        (stabilized, note)
    }
}

fn change_in_period(events: &[Timed], period_s: u32, now_s: f64) -> i64 {
    let cut = now_s - f64::from(period_s);
    events
        .iter()
        .filter(|e| e.at > cut)
        .map(|e| i64::from(e.value))
        .sum()
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// The most replicas the scale-up policies allow now.
fn scale_up_limit(
    current: u32,
    ups: &[Timed],
    downs: &[Timed],
    rules: &ResolvedRules,
    now_s: f64,
) -> u32 {
    let pick: fn(i64, i64) -> i64 = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => i64::min,
        SelectPolicy::Max => i64::max,
    };
    let mut result: Option<i64> = None;
    for policy in &rules.policies {
        let start = i64::from(current) - change_in_period(ups, policy.period_seconds, now_s)
            + change_in_period(downs, policy.period_seconds, now_s);
        let proposed = match policy.kind {
            RatePolicyKind::Pods => start + i64::from(policy.value),
            RatePolicyKind::Percent => {
                (start as f64 * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i64
            }
        };
        result = Some(result.map_or(proposed, |r| pick(r, proposed)));
    }
    clamp_u32(result.unwrap_or(i64::from(current)))
}

/// The fewest replicas the scale-down policies allow now.
fn scale_down_limit(
    current: u32,
    ups: &[Timed],
    downs: &[Timed],
    rules: &ResolvedRules,
    now_s: f64,
) -> u32 {
    // The policy allowing the most change gives the lowest count.
    let pick: fn(i64, i64) -> i64 = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => i64::max,
        SelectPolicy::Max => i64::min,
    };
    let mut result: Option<i64> = None;
    for policy in &rules.policies {
        let start = i64::from(current) - change_in_period(ups, policy.period_seconds, now_s)
            + change_in_period(downs, policy.period_seconds, now_s);
        let proposed = match policy.kind {
            RatePolicyKind::Pods => start - i64::from(policy.value),
            RatePolicyKind::Percent => {
                (start as f64 * (1.0 - f64::from(policy.value) / 100.0)) as i64
            }
        };
        result = Some(result.map_or(proposed, |r| pick(r, proposed)));
    }
    clamp_u32(result.unwrap_or(i64::from(current)))
}

#[cfg(test)]
pub(crate) mod limits {
    //! The rate-limit functions exposed to the crate's tests.
    pub(crate) use super::{Timed, scale_down_limit, scale_up_limit};
}
