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
pub(crate) struct Timed {
    pub(crate) at: f64,
    pub(crate) value: u32,
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
        let stabilized = self.stabilize_legacy(now_s, wanted);
        let (to, condition) = legacy_limit(
            current,
            stabilized,
            self.policy.min_replicas,
            self.policy.max_replicas,
        );
        let note = match condition {
            Condition::DesiredWithinRange => (stabilized != wanted).then(|| {
                format!("held at {stabilized} by the 300 s down-scale stabilization window")
            }),
            other => Some(other.explain().to_owned()),
        };
        (to, note)
    }

    /// The highest recommendation of the last 300 s (recording this one).
    fn stabilize_legacy(&mut self, now_s: f64, wanted: u32) -> u32 {
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
        stabilized
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

    /// Within the windows: at least the lowest recommendation of the up
    /// window, at most the highest of the down window (recording this one).
    fn stabilize_with_behavior(
        &mut self,
        now_s: f64,
        current: u32,
        wanted: u32,
        up_window_s: u32,
        down_window_s: u32,
    ) -> u32 {
        let up_cut = now_s - f64::from(up_window_s);
        let down_cut = now_s - f64::from(down_window_s);
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
        stabilized
    }

    fn with_behavior(&mut self, now_s: f64, current: u32, wanted: u32) -> (u32, Option<String>) {
        let (Some(up), Some(down)) = (self.up.clone(), self.down.clone()) else {
            return (wanted, None);
        };
        let stabilized =
            self.stabilize_with_behavior(now_s, current, wanted, up.window_s, down.window_s);
        let (to, condition) = rate_limit(RateArgs {
            current,
            desired: stabilized,
            min: self.policy.min_replicas,
            max: self.policy.max_replicas,
            ups: &self.scale_up_events,
            downs: &self.scale_down_events,
            up: &up,
            down: &down,
            now_s,
        });
        let note = match condition {
            Condition::DesiredWithinRange => (stabilized != wanted).then(|| {
                format!(
                    "stabilized at {stabilized} (windows: up {} s, down {} s)",
                    up.window_s, down.window_s
                )
            }),
            other => Some(other.explain().to_owned()),
        };
        (to, note)
    }
}

/// Why a replica count was bounded, named as the HPA's conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    DesiredWithinRange,
    TooFewReplicas,
    TooManyReplicas,
    ScaleUpLimit,
    ScaleDownLimit,
}

impl Condition {
    fn explain(self) -> &'static str {
        match self {
            Self::DesiredWithinRange => "within range",
            Self::TooFewReplicas => "raised to min_replicas",
            Self::TooManyReplicas => "limited by max_replicas",
            Self::ScaleUpLimit => "limited by the scale-up rate",
            Self::ScaleDownLimit => "limited by the scale-down rate",
        }
    }
}

/// Legacy bounds: up to `max(2 × current, 4)` and `max_replicas`, at least
/// `min_replicas` (1 when 0).
pub(crate) fn legacy_limit(current: u32, desired: u32, min: u32, max: u32) -> (u32, Condition) {
    let up_limit = (2 * current).max(4);
    let (max_allowed, why) = if max > up_limit {
        (up_limit, Condition::ScaleUpLimit)
    } else {
        (max, Condition::TooManyReplicas)
    };
    let min_allowed = min.max(1);
    if desired < min_allowed {
        (min_allowed, Condition::TooFewReplicas)
    } else if desired > max_allowed {
        (max_allowed, why)
    } else {
        (desired, Condition::DesiredWithinRange)
    }
}

pub(crate) struct RateArgs<'a> {
    pub(crate) current: u32,
    pub(crate) desired: u32,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) ups: &'a [Timed],
    pub(crate) downs: &'a [Timed],
    pub(crate) up: &'a ResolvedRules,
    pub(crate) down: &'a ResolvedRules,
    pub(crate) now_s: f64,
}

/// The behavior's rate policies and the bounds applied to a stabilized count.
pub(crate) fn rate_limit(a: RateArgs<'_>) -> (u32, Condition) {
    if a.desired > a.current {
        let limit = scale_up_limit(a.current, a.ups, a.downs, a.up, a.now_s).max(a.current);
        let (max_allowed, why) = if a.max > limit {
            (limit, Condition::ScaleUpLimit)
        } else {
            (a.max, Condition::TooManyReplicas)
        };
        if max_allowed < a.desired {
            return (max_allowed, why);
        }
    } else if a.desired < a.current {
        let limit = scale_down_limit(a.current, a.ups, a.downs, a.down, a.now_s).min(a.current);
        let (min_allowed, why) = if a.min < limit {
            (limit, Condition::ScaleDownLimit)
        } else {
            (a.min, Condition::TooFewReplicas)
        };
        if min_allowed > a.desired {
            return (min_allowed, why);
        }
    }
    (a.desired, Condition::DesiredWithinRange)
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

/// Kubernetes' own controller tests (`pkg/controller/podautoscaler/horizontal_test.go`):
/// `TestScalingWithRules`, `TestNormalizeDesiredReplicas`,
/// `TestNormalizeDesiredReplicasWithBehavior` and the invalid-metric cases,
/// ported with the same inputs and expectations.
#[cfg(test)]
#[allow(clippy::type_complexity)]
mod k8s_controller_tests {
    use super::*;
    use crate::policy::{RatePolicy, RatePolicyKind};

    const NOW: f64 = 10_000.0;

    fn rules(
        pods: u32,
        pods_period: u32,
        percent: u32,
        percent_period: u32,
        window: u32,
    ) -> ScalingRules {
        let mut policies = Vec::new();
        if pods != 0 {
            policies.push(RatePolicy {
                kind: RatePolicyKind::Pods,
                value: pods,
                period_seconds: pods_period,
            });
        }
        if percent != 0 {
            policies.push(RatePolicy {
                kind: RatePolicyKind::Percent,
                value: percent,
                period_seconds: percent_period,
            });
        }
        ScalingRules {
            stabilization_window_seconds: Some(window),
            select_policy: Some(SelectPolicy::Max),
            policies: Some(policies),
        }
    }

    /// `generateEventsUniformDistribution`: events spread over the last
    /// `period` seconds, each in the middle of its segment.
    fn events(raw: &[u32], period: f64) -> Vec<Timed> {
        let segment = period / raw.len() as f64;
        raw.iter()
            .enumerate()
            .map(|(i, v)| Timed {
                at: NOW - (period - segment * (i + 1) as f64 + segment / 2.0),
                value: *v,
            })
            .collect()
    }

    struct Rule {
        ups: Vec<Timed>,
        downs: Vec<Timed>,
        min: u32,
        max: u32,
        up: Option<ScalingRules>,
        down: Option<ScalingRules>,
        current: u32,
        desired: u32,
        expected: u32,
        condition: Condition,
    }

    fn base(
        min: u32,
        max: u32,
        current: u32,
        desired: u32,
        expected: u32,
        condition: Condition,
    ) -> Rule {
        Rule {
            ups: Vec::new(),
            downs: Vec::new(),
            min,
            max,
            up: None,
            down: None,
            current,
            desired,
            expected,
            condition,
        }
    }

    use Condition::{
        DesiredWithinRange as Within, ScaleDownLimit as DownLimit, ScaleUpLimit as UpLimit,
        TooFewReplicas as TooFew, TooManyReplicas as TooMany,
    };

    #[test]
    fn scaling_with_rules() {
        let up = |r: Rule, rules: ScalingRules| Rule {
            up: Some(rules),
            ..r
        };
        let down = |r: Rule, rules: ScalingRules| Rule {
            down: Some(rules),
            ..r
        };
        let with_ups = |r: Rule, e: Vec<Timed>| Rule { ups: e, ..r };
        let with_downs = |r: Rule, e: Vec<Timed>| Rule { downs: e, ..r };
        let cases: Vec<(&str, Rule)> = vec![
            (
                "prenormalized desired replicas within range",
                base(3, 8, 5, 7, 7, Within),
            ),
            (
                "prenormalized desired replicas < minReplicas",
                base(2, 8, 3, 1, 2, TooFew),
            ),
            (
                "prenormalized desired replicas within range when minReplicas is 0",
                base(0, 10, 1, 0, 0, Within),
            ),
            (
                "maxReplicas is the limit because maxReplicas < scaleUpLimit",
                base(1, 10, 20, 1000, 10, TooMany),
            ),
            (
                "desired replica count is more than the maximum replica count",
                base(100, 150, 100, 1000, 150, TooMany),
            ),
            (
                "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
                up(base(1, 2000, 3, 1000, 4, UpLimit), rules(0, 0, 1, 60, 0)),
            ),
            (
                "scaleDownLimit is the limit because scaleDownLimit > minReplicas with user defined policies",
                down(
                    base(3, 2000, 1000, 3, 980, DownLimit),
                    rules(20, 60, 0, 0, 0),
                ),
            ),
            (
                "scaleUp with default behavior",
                base(1, 1000, 10, 50, 20, UpLimit),
            ),
            (
                "scaleUp with pods policy larger than percent policy",
                up(
                    base(1, 1000, 10, 500, 110, UpLimit),
                    rules(100, 60, 100, 60, 0),
                ),
            ),
            (
                "scaleUp with percent policy larger than pods policy",
                up(
                    base(1, 1000, 10, 500, 20, UpLimit),
                    rules(2, 60, 100, 60, 0),
                ),
            ),
            (
                "scaleUp with spec MaxReplicas limitation with large pod policy",
                up(base(1, 1000, 10, 50, 50, Within), rules(100, 60, 0, 0, 0)),
            ),
            (
                "scaleUp with spec MaxReplicas limitation with large percent policy",
                up(base(1, 1000, 10, 50, 50, Within), rules(10000, 60, 0, 0, 0)),
            ),
            (
                "scaleUp with pod policy limitation",
                up(base(1, 1000, 10, 50, 40, UpLimit), rules(30, 60, 0, 0, 0)),
            ),
            (
                "scaleUp with percent policy limitation",
                up(base(1, 1000, 10, 50, 30, UpLimit), rules(0, 0, 200, 60, 0)),
            ),
            (
                "scaleDown with percent policy larger than pod policy",
                down(
                    base(1, 1000, 100, 2, 80, DownLimit),
                    rules(20, 60, 1, 60, 300),
                ),
            ),
            (
                "scaleDown with pod policy larger than percent policy",
                down(
                    base(1, 1000, 100, 2, 98, DownLimit),
                    rules(2, 60, 1, 60, 300),
                ),
            ),
            (
                "scaleDown with spec MinReplicas=nil limitation with large pod policy",
                down(base(1, 1000, 10, 0, 1, TooFew), rules(100, 60, 0, 0, 300)),
            ),
            (
                "scaleDown with spec MinReplicas limitation with large pod policy",
                down(base(1, 1000, 10, 0, 1, TooFew), rules(100, 60, 0, 0, 300)),
            ),
            (
                "scaleDown with spec MinReplicas limitation with large percent policy",
                down(base(5, 1000, 10, 2, 5, TooFew), rules(0, 0, 100, 60, 300)),
            ),
            (
                "scaleDown with pod policy limitation",
                down(base(1, 1000, 10, 2, 5, DownLimit), rules(5, 60, 0, 0, 300)),
            ),
            (
                "scaleDown with percent policy limitation",
                down(base(1, 1000, 10, 5, 5, Within), rules(0, 0, 50, 60, 300)),
            ),
            (
                "scaleUp with spec MaxReplicas limitation with large pod policy and events",
                up(
                    with_ups(
                        base(1, 200, 100, 500, 200, TooMany),
                        events(&[1, 5, 9], 120.0),
                    ),
                    rules(300, 60, 0, 0, 0),
                ),
            ),
            (
                "scaleUp with spec MaxReplicas limitation with large percent policy and events",
                up(
                    with_ups(
                        base(1, 200, 100, 500, 200, TooMany),
                        events(&[1, 5, 9], 120.0),
                    ),
                    rules(0, 0, 10000, 60, 0),
                ),
            ),
            (
                "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
                up(
                    with_ups(
                        base(1, 1000, 100, 500, 100, UpLimit),
                        events(&[1, 5, 9], 120.0),
                    ),
                    rules(5, 120, 0, 0, 0),
                ),
            ),
            (
                "scaleUp with pod policy and previous scale up events",
                up(
                    with_ups(
                        base(1, 1000, 100, 500, 235, UpLimit),
                        events(&[1, 5, 9], 120.0),
                    ),
                    rules(150, 120, 0, 0, 0),
                ),
            ),
            (
                "scaleUp with percent policy and previous scale up events",
                up(
                    with_ups(
                        base(1, 1000, 100, 500, 255, UpLimit),
                        events(&[1, 5, 9], 120.0),
                    ),
                    rules(0, 0, 200, 120, 0),
                ),
            ),
            (
                "scaleUp with percent policy and previous scale up and down events",
                up(
                    with_downs(
                        with_ups(base(1, 1000, 6, 24, 16, UpLimit), events(&[4], 120.0)),
                        events(&[2], 120.0),
                    ),
                    rules(0, 0, 300, 300, 0),
                ),
            ),
            (
                "scaleDown with default policy and previous events",
                with_downs(base(1, 1000, 10, 5, 5, Within), events(&[1, 5, 9], 120.0)),
            ),
            (
                "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
                down(
                    with_downs(base(1, 1000, 100, 0, 1, TooFew), events(&[1, 5, 9], 120.0)),
                    rules(115, 120, 0, 0, 300),
                ),
            ),
            (
                "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
                down(
                    with_downs(base(5, 1000, 100, 0, 5, TooFew), events(&[1, 5, 9], 120.0)),
                    rules(130, 120, 0, 0, 300),
                ),
            ),
            (
                "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
                down(
                    with_downs(base(5, 1000, 100, 2, 5, TooFew), events(&[1, 5, 9], 120.0)),
                    rules(0, 0, 100, 120, 300),
                ),
            ),
            (
                "scaleDown with pod policy limitation and previous events",
                down(
                    with_downs(
                        base(1, 1000, 100, 2, 100, DownLimit),
                        events(&[1, 5, 9], 120.0),
                    ),
                    rules(5, 120, 0, 0, 300),
                ),
            ),
            (
                "scaleDown with percent policy limitation and previous events",
                down(
                    with_downs(
                        base(1, 1000, 100, 0, 56, DownLimit),
                        events(&[2, 4, 6], 120.0),
                    ),
                    rules(0, 0, 50, 120, 300),
                ),
            ),
            (
                "scaleDown with percent policy and previous scale up and down events",
                down(
                    with_downs(
                        with_ups(base(1, 1000, 10, 1, 6, DownLimit), events(&[2], 120.0)),
                        events(&[4], 120.0),
                    ),
                    rules(0, 0, 50, 180, 0),
                ),
            ),
            (
                "scaleDown with previous events preventing further scale down",
                down(
                    with_downs(
                        base(1, 1000, 100, 0, 100, DownLimit),
                        events(&[10, 10, 10], 120.0),
                    ),
                    rules(0, 0, 10, 120, 300),
                ),
            ),
            (
                "scaleDown with with previous events still allowing more scale down",
                down(
                    with_downs(
                        base(1, 1000, 10, 5, 5, Within),
                        events(&[10, 10, 10], 120.0),
                    ),
                    rules(0, 0, 1000, 120, 300),
                ),
            ),
            (
                "check 'outdated' flag for events for one behavior for up",
                up(
                    with_ups(
                        base(1, 1000, 100, 200, 200, Within),
                        events(&[8, 12, 9, 11], 120.0),
                    ),
                    rules(1000, 60, 0, 0, 0),
                ),
            ),
            (
                "check that events were not marked 'outdated' for two different policies in the behavior for up",
                up(
                    with_ups(
                        base(1, 1000, 100, 200, 200, Within),
                        events(&[8, 12, 9, 11], 120.0),
                    ),
                    rules(1000, 120, 100, 60, 0),
                ),
            ),
            (
                "check that events were marked 'outdated' for two different policies in the behavior for up",
                up(
                    with_ups(
                        base(1, 1000, 100, 200, 200, Within),
                        events(&[8, 12, 9, 11], 120.0),
                    ),
                    rules(1000, 30, 100, 60, 0),
                ),
            ),
            (
                "check 'outdated' flag for events for one behavior for down",
                down(
                    with_downs(
                        base(1, 1000, 100, 5, 5, Within),
                        events(&[8, 12, 9, 11], 120.0),
                    ),
                    rules(1000, 60, 0, 0, 300),
                ),
            ),
            (
                "check that events were not marked 'outdated' for two different policies in the behavior for down",
                down(
                    with_downs(
                        base(1, 1000, 100, 5, 5, Within),
                        events(&[8, 12, 9, 11], 120.0),
                    ),
                    rules(1000, 120, 100, 60, 300),
                ),
            ),
            (
                "check that events were marked 'outdated' for two different policies in the behavior for down",
                down(
                    with_downs(
                        base(1, 1000, 100, 5, 5, Within),
                        events(&[8, 12, 9, 11], 120.0),
                    ),
                    rules(1000, 30, 100, 60, 300),
                ),
            ),
        ];
        let mut failures = Vec::new();
        for (name, c) in &cases {
            let up = ScalingRules::resolve(c.up.as_ref(), true);
            let down = ScalingRules::resolve(c.down.as_ref(), false);
            let got = rate_limit(RateArgs {
                current: c.current,
                desired: c.desired,
                min: c.min,
                max: c.max,
                ups: &c.ups,
                downs: &c.downs,
                up: &up,
                down: &down,
                now_s: NOW,
            });
            if got != (c.expected, c.condition) {
                failures.push(format!(
                    "{name}: got {got:?}, expected {:?}",
                    (c.expected, c.condition)
                ));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(cases.len(), 42);
    }

    fn engine(
        behavior: Option<crate::policy::Behavior>,
        recommendations: &[(u32, f64)],
    ) -> Autoscaler {
        let policy = ScalingPolicy {
            min_replicas: 1,
            max_replicas: 1000,
            metrics: vec![crate::policy::MetricSpec {
                name: "cpu".into(),
                kind: crate::policy::MetricKind::Resource,
                target: MetricTarget::Utilization(50.0),
            }],
            behavior,
            tolerance: crate::replicas::Tolerance::default(),
        };
        let mut a = Autoscaler::new(policy).unwrap();
        a.recommendations = recommendations
            .iter()
            .map(|(value, ago)| Timed {
                at: NOW - ago,
                value: *value,
            })
            .collect();
        a
    }

    #[test]
    fn normalize_desired_replicas() {
        // (recommendations (value, seconds ago), prenormalized, stabilized, log length)
        let cases: [(&str, Vec<(u32, f64)>, u32, u32, usize); 5] = [
            ("empty log", vec![], 5, 5, 1),
            ("stabilize", vec![(4, 120.0), (5, 60.0)], 3, 5, 3),
            ("no stabilize", vec![(1, 120.0), (2, 60.0)], 3, 3, 3),
            (
                "no stabilize - old recommendations",
                vec![(10, 600.0), (9, 540.0)],
                3,
                3,
                2,
            ),
            (
                "stabilize - old recommendations",
                vec![(10, 600.0), (4, 60.0), (5, 120.0), (9, 540.0)],
                3,
                5,
                4,
            ),
        ];
        for (name, recs, wanted, expected, log) in cases {
            let mut a = engine(None, &recs);
            assert_eq!(a.stabilize_legacy(NOW, wanted), expected, "{name}");
            assert_eq!(a.recommendations.len(), log, "{name}");
        }
    }

    #[test]
    fn normalize_desired_replicas_with_behavior() {
        // (name, recommendations, current, prenormalized, stabilized, stored values, up window, down window)
        let cases: Vec<(
            &str,
            Vec<(u32, f64)>,
            u32,
            u32,
            u32,
            Option<Vec<u32>>,
            u32,
            u32,
        )> = vec![
            (
                "empty recommendations for scaling down",
                vec![],
                100,
                5,
                5,
                Some(vec![5]),
                0,
                0,
            ),
            (
                "simple scale down stabilization",
                vec![(4, 120.0), (5, 60.0)],
                100,
                3,
                5,
                Some(vec![4, 5, 3]),
                0,
                180,
            ),
            (
                "simple scale up stabilization",
                vec![(4, 120.0), (5, 60.0)],
                1,
                7,
                4,
                Some(vec![4, 5, 7]),
                300,
                0,
            ),
            (
                "no scale down stabilization",
                vec![(1, 120.0), (2, 60.0)],
                100,
                3,
                3,
                Some(vec![1, 2, 3]),
                300,
                0,
            ),
            (
                "no scale up stabilization",
                vec![(4, 120.0), (5, 60.0)],
                1,
                3,
                3,
                Some(vec![4, 5, 3]),
                0,
                300,
            ),
            (
                "no scale down stabilization, reuse recommendation element",
                vec![(10, 600.0), (9, 540.0)],
                100,
                3,
                3,
                Some(vec![10, 3]),
                0,
                0,
            ),
            (
                "no scale up stabilization, reuse recommendation element",
                vec![(10, 600.0), (9, 540.0)],
                1,
                100,
                100,
                Some(vec![10, 100]),
                0,
                0,
            ),
            (
                "scale down stabilization, reuse one of obsolete recommendation element",
                vec![(10, 600.0), (4, 60.0), (5, 120.0), (9, 540.0)],
                100,
                3,
                5,
                Some(vec![10, 4, 5, 3]),
                0,
                180,
            ),
            (
                "scale up stabilization, reuse one of obsolete recommendation element",
                vec![(10, 6000.0), (6, 60.0), (5, 120.0), (9, 180.0)],
                1,
                100,
                5,
                Some(vec![100, 6, 5, 9]),
                300,
                300,
            ),
            (
                "scale up and down stabilization, do not scale up when prenormalized rec goes down",
                vec![(2, 6000.0), (3, 180.0)],
                2,
                1,
                2,
                None,
                300,
                300,
            ),
            (
                "scale up and down stabilization, do not scale down when prenormalized rec goes up",
                vec![(2, 6000.0), (1, 180.0)],
                2,
                3,
                2,
                None,
                300,
                300,
            ),
        ];
        for (name, recs, current, wanted, expected, stored, up_w, down_w) in cases {
            let mut a = engine(Some(crate::policy::Behavior::default()), &recs);
            assert_eq!(
                a.stabilize_with_behavior(NOW, current, wanted, up_w, down_w),
                expected,
                "{name}"
            );
            if let Some(stored) = stored {
                let got: Vec<u32> = a.recommendations.iter().map(|r| r.value).collect();
                assert_eq!(got, stored, "{name}");
            }
        }
    }

    fn cpu_observation(levels: &[f64], requests: f64) -> Observation {
        let pods: Vec<Pod> = (0..levels.len())
            .map(|i| Pod::running(format!("p{i}"), Some(requests)))
            .collect();
        let cpu = levels
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("p{i}"), *l))
            .collect();
        Observation {
            pods,
            readings: [("cpu".to_owned(), Reading::PerPod(cpu))].into(),
        }
    }

    fn two_metric_policy(min: u32, max: u32, cpu_target: f64) -> ScalingPolicy {
        ScalingPolicy {
            min_replicas: min,
            max_replicas: max,
            metrics: vec![
                crate::policy::MetricSpec {
                    name: "cpu".into(),
                    kind: crate::policy::MetricKind::Resource,
                    target: MetricTarget::Utilization(cpu_target),
                },
                crate::policy::MetricSpec {
                    name: "qps".into(),
                    kind: crate::policy::MetricKind::External,
                    target: MetricTarget::Value(0.1),
                },
            ],
            behavior: None,
            tolerance: crate::replicas::Tolerance::default(),
        }
    }

    #[test]
    fn scale_up_one_metric_empty() {
        // TestScaleUpOneMetricEmpty: CPU asks for 4, the external metric fails: still scale up.
        let mut a = Autoscaler::new(two_metric_policy(2, 6, 30.0)).unwrap();
        let mut seen = cpu_observation(&[300.0, 400.0, 500.0], 1000.0);
        seen.readings.insert(
            "qps".into(),
            Reading::Unavailable("something went wrong".into()),
        );
        let d = a.decide(NOW, 3, &seen);
        assert_eq!(d.to, 4, "{d:?}");
    }

    #[test]
    fn no_scale_down_one_metric_invalid_or_empty() {
        // TestNoScaleDownOneMetricInvalid / TestNoScaleDownOneMetricEmpty: CPU
        // asks for less, the other metric is invalid: no scale down.
        let mut a = Autoscaler::new(two_metric_policy(2, 6, 50.0)).unwrap();
        let mut seen = cpu_observation(&[100.0, 300.0, 500.0, 250.0, 250.0], 1000.0);
        seen.readings.insert(
            "qps".into(),
            Reading::Unavailable("something went wrong".into()),
        );
        let d = a.decide(NOW, 5, &seen);
        assert_eq!(d.to, 5, "{d:?}");
        assert!(d.reason.contains("1 of 2 metrics invalid"), "{}", d.reason);
        let mut seen = cpu_observation(&[100.0, 300.0, 500.0, 250.0, 250.0], 1000.0);
        seen.readings
            .insert("qps".into(), Reading::PerPod(BTreeMap::new()));
        let d = a.decide(NOW, 5, &seen);
        assert_eq!(d.to, 5, "{d:?}");
    }
}
