//! The horizontal controller: from readings to a replica count, with the
//! HPA's bounds handling, the maximum over metrics, stabilization and rate
//! limits, and its status conditions. Time is passed in (seconds on any
//! clock the caller keeps for the engine's life, e.g. Unix seconds), so the
//! same engine runs live, in tests, in simulation, and across a restart
//! (see [`History`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::forecast::{
    DemandHistory, ForecastStatus, Forecaster, MAX_CLOCK_S, Prediction, PredictiveMode,
};
use crate::policy::{
    MetricKind, MetricSpec, MetricTarget, RatePolicyKind, ResolvedRules, ScalingPolicy,
    ScalingRules, SelectPolicy,
};
use crate::replicas::{
    MAX_REPLICA_COUNT, MetricRecommendation, Pod, PodPhase, average_value_replicas, ceil_replicas,
    pod_average_replicas, ready_pods, resource_utilization_replicas, value_replicas,
};
use crate::{Error, Result};

/// The legacy down-scale stabilization window, seconds (the controller's
/// `--horizontal-pod-autoscaler-downscale-stabilization` default), used
/// without a `behavior`.
pub const LEGACY_DOWNSCALE_STABILIZATION_S: u32 = 300;
/// Without a `behavior`, one decision scales up to at most
/// `max(LEGACY_SCALE_UP_FACTOR × current, LEGACY_SCALE_UP_MINIMUM)`.
pub const LEGACY_SCALE_UP_FACTOR: f64 = 2.0;
/// See [`LEGACY_SCALE_UP_FACTOR`].
pub const LEGACY_SCALE_UP_MINIMUM: u32 = 4;
/// The most entries each list of a restored [`History`] may hold.
pub const MAX_HISTORY_ENTRIES: usize = 10_000;

/// What a metric source measured for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Observation {
    /// The instances.
    pub pods: Vec<Pod>,
    /// Readings by metric name.
    pub readings: BTreeMap<String, Reading>,
}

/// One metric's part in a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// The HPA's status condition types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConditionType {
    /// Whether the controller can scale (and whether stabilization holds it).
    AbleToScale,
    /// Whether the metrics gave a replica count.
    ScalingActive,
    /// Whether the count was clamped by the bounds or the rate limits.
    ScalingLimited,
}

/// The reasons upstream gives for its conditions, with their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConditionReason {
    /// AbleToScale: the current scale was read.
    SucceededGetScale,
    /// AbleToScale: the new count was applied.
    SucceededRescale,
    /// AbleToScale: the recommendation stands as computed.
    ReadyForNewScale,
    /// AbleToScale: held up by lower recent recommendations.
    ScaleUpStabilized,
    /// AbleToScale: held up by higher recent recommendations.
    ScaleDownStabilized,
    /// ScalingActive: a metric gave a count.
    ValidMetricFound,
    /// ScalingActive false: the target has 0 replicas and `min_replicas` > 0.
    ScalingDisabled,
    /// ScalingActive false: a resource metric failed.
    FailedGetResourceMetric,
    /// ScalingActive false: a pods metric failed.
    FailedGetPodsMetric,
    /// ScalingActive false: an object metric failed.
    FailedGetObjectMetric,
    /// ScalingActive false: an external metric failed.
    FailedGetExternalMetric,
    /// ScalingActive false: the reading does not fit the metric's kind
    /// (one value for a per-pod metric, or the reverse).
    InvalidMetricSourceType,
    /// ScalingLimited false: within the bounds and rates.
    DesiredWithinRange,
    /// ScalingLimited: raised to `min_replicas`.
    TooFewReplicas,
    /// ScalingLimited: cut to `max_replicas`.
    TooManyReplicas,
    /// ScalingLimited: cut by the scale-up rate.
    ScaleUpLimit,
    /// ScalingLimited: held by the scale-down rate.
    ScaleDownLimit,
}

impl ConditionReason {
    /// Upstream's message for the limit reasons (others carry their own).
    fn limit_message(self) -> &'static str {
        match self {
            Self::TooFewReplicas => {
                "the desired replica count is less than the minimum replica count"
            }
            Self::TooManyReplicas => {
                "the desired replica count is more than the maximum replica count"
            }
            Self::ScaleUpLimit => {
                "the desired replica count is increasing faster than the maximum scale rate"
            }
            Self::ScaleDownLimit => {
                "the desired replica count is decreasing faster than the maximum scale rate"
            }
            _ => "the desired count is within the acceptable range",
        }
    }
}

/// One status condition, as an HPA's `status.conditions` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HpaCondition {
    /// Which condition.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// True or false.
    pub status: bool,
    /// Why, as upstream names it.
    pub reason: ConditionReason,
    /// Upstream's message.
    pub message: String,
}

/// A decision and its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    /// When (the caller's clock, seconds).
    pub at_s: f64,
    /// Replicas before.
    pub from: u32,
    /// Replicas to run: the stabilized count after bounds and rate limits.
    pub to: u32,
    /// What the metrics asked for (the maximum over them), before
    /// stabilization and limits.
    pub proposed: Option<u32>,
    /// The recommendation after stabilization, before bounds and rate limits.
    pub stabilized: Option<u32>,
    /// Why `to` is what it is.
    pub reason: String,
    /// Each metric's reading and proposal.
    pub metrics: Vec<MetricOutcome>,
    /// The status conditions after this decision (each type once).
    #[serde(default)]
    pub conditions: Vec<HpaCondition>,
    /// What the forecast asked for, when predictive scaling is on and
    /// forecasting (in `forecast_only` mode: what it would have done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
}

impl Decision {
    /// The condition of this type, if set.
    pub fn condition(&self, kind: ConditionType) -> Option<&HpaCondition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timed {
    pub(crate) at: f64,
    pub(crate) value: u32,
}

/// A replica count at a time (the engine's clock, seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TimedReplicas {
    /// When.
    pub at_s: f64,
    /// How many (a recommendation, or the size of a change).
    pub replicas: u32,
}

/// What the engine remembers between decisions, to save and restore it
/// (across a restart of the process that embeds it).
///
/// `recommendations: None` means no history yet: the first decision then
/// records `{current replicas, now}` as upstream's
/// `recordInitialRecommendation` does, so a restarted autoscaler does not
/// scale down at once. `Some(vec![])` is an empty history, kept as such.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct History {
    /// Past recommendations, for the stabilization windows.
    pub recommendations: Option<Vec<TimedReplicas>>,
    /// Past scale-ups (replicas added), for the rate policies.
    pub scale_up_events: Vec<TimedReplicas>,
    /// Past scale-downs (replicas removed), for the rate policies.
    pub scale_down_events: Vec<TimedReplicas>,
    /// The status conditions of the last decision.
    pub conditions: Vec<HpaCondition>,
    /// The forecast metric's demand, per minute (predictive scaling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demand: Option<DemandHistory>,
}

fn timed_from(list: &[TimedReplicas], field: &str) -> Result<Vec<Timed>> {
    if list.len() > MAX_HISTORY_ENTRIES {
        return Err(Error::invalid(
            field,
            format!(
                "{} entries; at most {MAX_HISTORY_ENTRIES} are kept",
                list.len()
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            if !(0.0..=MAX_CLOCK_S).contains(&t.at_s) {
                Err(Error::invalid(
                    format!("{field}[{i}].at_s"),
                    format!("{} is outside 0 to {MAX_CLOCK_S} seconds", t.at_s),
                ))
            } else if t.replicas > MAX_REPLICA_COUNT {
                Err(Error::invalid(
                    format!("{field}[{i}].replicas"),
                    format!("{} is above {MAX_REPLICA_COUNT}", t.replicas),
                ))
            } else {
                Ok(Timed {
                    at: t.at_s,
                    value: t.replicas,
                })
            }
        })
        .collect()
}

fn timed_to(list: &[Timed]) -> Vec<TimedReplicas> {
    list.iter()
        .map(|t| TimedReplicas {
            at_s: t.at,
            replicas: t.value,
        })
        .collect()
}

/// The decision engine for one scaled workload: keeps the recommendation
/// history (for stabilization), the scale events (for rate limits) and the
/// status conditions.
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
/// // Save the history and restore it in a new engine (after a restart).
/// let saved = serde_json::to_string(&hpa.history())?;
/// let restored = Autoscaler::with_history(hpa.policy().clone(), serde_json::from_str(&saved)?)?;
/// assert_eq!(restored.history(), hpa.history());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: ScalingPolicy,
    up: Option<ResolvedRules>,
    down: Option<ResolvedRules>,
    recommendations: Option<Vec<Timed>>,
    scale_up_events: Vec<Timed>,
    scale_down_events: Vec<Timed>,
    conditions: Vec<HpaCondition>,
    forecaster: Option<Forecaster>,
    /// The demand one replica takes at the target, last seen.
    capacity: Option<f64>,
    /// Restored from a non-empty history and not yet decided: the first
    /// decision records `{current, now}` too, as a restarted controller does.
    restored: bool,
}

/// The forecast metric's total demand now and the demand one replica takes
/// at the target, from an observation.
fn demand_and_capacity(policy: &ScalingPolicy, observation: &Observation) -> Option<(f64, f64)> {
    let spec = policy.forecast_metric()?;
    let live: std::collections::BTreeMap<&str, &Pod> = observation
        .pods
        .iter()
        .filter(|p| !p.deleting && p.phase != PodPhase::Failed)
        .map(|p| (p.name.as_str(), p))
        .collect();
    let per_pod_sum = |values: &BTreeMap<String, f64>| -> f64 {
        values
            .iter()
            .filter(|(name, _)| live.contains_key(name.as_str()))
            .map(|(_, v)| *v)
            .sum()
    };
    match (observation.readings.get(&spec.name)?, spec.target) {
        (Reading::PerPod(values), MetricTarget::Utilization(t)) => {
            let requests: Vec<f64> = live.values().filter_map(|p| p.request).collect();
            if requests.is_empty() {
                return None;
            }
            let mean = requests.iter().sum::<f64>() / requests.len() as f64;
            Some((per_pod_sum(values), mean * t / 100.0))
        }
        (Reading::PerPod(values), MetricTarget::AverageValue(t)) => Some((per_pod_sum(values), t)),
        (Reading::Single(v), MetricTarget::AverageValue(t)) => Some((*v, t)),
        _ => None,
    }
    .filter(|(demand, capacity)| demand.is_finite() && *capacity > 0.0)
}

/// What the metrics proposed.
struct Proposal {
    replicas: u32,
    metric: String,
    invalid: usize,
    first_error: Option<(ConditionReason, String)>,
}

impl Autoscaler {
    /// An engine for `policy` (validated), with no history yet.
    pub fn new(policy: ScalingPolicy) -> Result<Self> {
        policy.validate()?;
        let (up, down) = match &policy.behavior {
            Some(b) => (
                Some(ScalingRules::resolve(b.scale_up.as_ref(), true)),
                Some(ScalingRules::resolve(b.scale_down.as_ref(), false)),
            ),
            None => (None, None),
        };
        let forecaster = policy.predictive.clone().map(Forecaster::new);
        Ok(Self {
            policy,
            up,
            down,
            recommendations: None,
            scale_up_events: Vec::new(),
            scale_down_events: Vec::new(),
            conditions: Vec::new(),
            forecaster,
            capacity: None,
            restored: false,
        })
    }

    /// An engine for `policy` that carries on from a saved [`History`]
    /// (checked: finite times, at most [`MAX_HISTORY_ENTRIES`] per list).
    pub fn with_history(policy: ScalingPolicy, history: History) -> Result<Self> {
        let mut engine = Self::new(policy)?;
        engine.recommendations = history
            .recommendations
            .as_deref()
            .map(|r| timed_from(r, "history.recommendations"))
            .transpose()?;
        engine.scale_up_events = timed_from(&history.scale_up_events, "history.scale_up_events")?;
        engine.scale_down_events =
            timed_from(&history.scale_down_events, "history.scale_down_events")?;
        for (i, c) in history.conditions.iter().enumerate() {
            if history.conditions[..i].iter().any(|d| d.kind == c.kind) {
                return Err(Error::invalid(
                    format!("history.conditions[{i}].type"),
                    format!("{:?} is there twice; one condition of each type", c.kind),
                ));
            }
        }
        engine.conditions = history.conditions;
        engine.conditions.sort_by_key(|c| c.kind);
        engine.restored = engine
            .recommendations
            .as_ref()
            .is_some_and(|r| !r.is_empty());
        let identity = engine.forecast_identity();
        if let (Some(f), Some(demand)) = (engine.forecaster.as_mut(), history.demand) {
            demand.check()?;
            // Demand of another metric (the policy changed) is not this one's.
            if demand.metric == identity {
                f.history = demand;
                f.period_cache.clear();
            }
        }
        Ok(engine)
    }

    /// What the engine remembers, to save (see [`Autoscaler::with_history`]).
    pub fn history(&self) -> History {
        History {
            recommendations: self.recommendations.as_deref().map(timed_to),
            scale_up_events: timed_to(&self.scale_up_events),
            scale_down_events: timed_to(&self.scale_down_events),
            conditions: self.conditions.clone(),
            demand: self.forecaster.as_ref().map(|f| f.history.clone()),
        }
    }

    /// How much the engine remembers, counted without copying it.
    pub fn history_summary(&self) -> crate::controller::HistorySummary {
        crate::controller::HistorySummary {
            recommendations: self.recommendations.as_ref().map(Vec::len),
            scale_events: self.scale_up_events.len() + self.scale_down_events.len(),
            demand_s: self.forecaster.as_ref().map_or(0.0, |f| f.history.span_s()),
        }
    }

    /// The forecast (next hour) and whether it acts, when the policy has a
    /// `predictive` block.
    pub fn forecast_status(&self) -> Option<ForecastStatus> {
        self.forecaster.as_ref().map(|f| f.status(self.capacity))
    }

    /// The policy.
    pub fn policy(&self) -> &ScalingPolicy {
        &self.policy
    }

    /// The status conditions after the last decision.
    pub fn conditions(&self) -> &[HpaCondition] {
        &self.conditions
    }

    /// Replaces the policy, keeping the history (the demand history too
    /// while the policy stays predictive).
    pub fn set_policy(&mut self, policy: ScalingPolicy) -> Result<()> {
        let fresh = Self::new(policy)?;
        let demand = self.forecaster.take().map(|f| f.history);
        let same_metric = fresh.forecast_identity() == self.forecast_identity();
        self.policy = fresh.policy;
        self.up = fresh.up;
        self.down = fresh.down;
        if !same_metric {
            self.capacity = None;
        }
        self.forecaster = fresh.forecaster.map(|mut f| {
            if let Some(d) = demand.filter(|_| same_metric) {
                f.history = d;
            }
            f.period_cache.clear();
            f
        });
        Ok(())
    }

    /// What the demand history is of: the forecast metric's name, kind and
    /// target type.
    fn forecast_identity(&self) -> Option<String> {
        self.policy.forecast_metric().map(|m| {
            let target = match m.target {
                MetricTarget::Utilization(_) => "utilization",
                MetricTarget::AverageValue(_) => "average_value",
                MetricTarget::Value(_) => "value",
            };
            format!("{}/{:?}/{target}", m.name, m.kind)
        })
    }

    /// Records the forecast metric's demand and, when forecasting, what
    /// the forecast asks for against the reactive count.
    fn predict(
        &mut self,
        now_s: f64,
        observation: &Observation,
        reactive: Option<u32>,
    ) -> Option<Prediction> {
        let sample = demand_and_capacity(&self.policy, observation);
        let identity = self.forecast_identity();
        let max_replicas = f64::from(self.policy.max_replicas);
        let f = self.forecaster.as_mut()?;
        if let Some((demand, capacity)) = sample {
            // A bogus sample is held to the most demand that can change a
            // decision, so it cannot teach the forecast absurd values.
            let bound = capacity * max_replicas * 4.0;
            f.history.metric = identity;
            f.history.record(now_s, demand.min(bound));
            self.capacity = Some(capacity);
        }
        let reactive = reactive?;
        let capacity = self.capacity?;
        let lead = f.settings.lead_time.as_duration().as_secs_f64();
        let (_, ahead) = f.ahead(lead).ok()?;
        let load = ahead.iter().copied().fold(0.0, f64::max);
        let cap = ceil_replicas(f.settings.max_boost * f64::from(reactive.max(1)));
        let replicas = ceil_replicas(load / capacity).min(cap);
        Some(Prediction {
            load,
            replicas,
            reactive,
            applied: f.settings.mode == PredictiveMode::Scale && replicas > reactive,
        })
    }

    fn set_condition(
        &mut self,
        kind: ConditionType,
        status: bool,
        reason: ConditionReason,
        message: impl Into<String>,
    ) {
        let condition = HpaCondition {
            kind,
            status,
            reason,
            message: message.into(),
        };
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(c) => *c = condition,
            None => {
                self.conditions.push(condition);
                self.conditions.sort_by_key(|c| c.kind);
            }
        }
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
        spec: &MetricSpec,
        observation: &Observation,
    ) -> Result<MetricRecommendation> {
        let reading = observation
            .readings
            .get(&spec.name)
            .ok_or_else(|| Error::NoMetrics(format!("no reading for {}", spec.name)))?;
        // A NaN or infinite sample (Prometheus answers NaN for 0/0) makes
        // the metric invalid, as an unreadable one is upstream; it must not
        // read as "0 replicas wanted".
        let finite_pods = observation
            .pods
            .iter()
            .all(|p| p.request.is_none_or(f64::is_finite));
        let finite = match reading {
            Reading::PerPod(values) => values.values().all(|v| v.is_finite()),
            Reading::Single(v) => v.is_finite(),
            Reading::Unavailable(_) => true,
        };
        if !(finite && finite_pods) {
            return Err(Error::NoMetrics(format!(
                "{}: a sample or a request is not a finite number",
                spec.name
            )));
        }
        let tolerance = self.policy.tolerance_for(spec);
        let cpu = spec.is_cpu_resource();
        let recommendation = match (reading, spec.kind, spec.target) {
            (Reading::Unavailable(why), _, _) => Err(Error::NoMetrics(why.clone())),
            (Reading::PerPod(values), MetricKind::Resource, MetricTarget::Utilization(t)) => {
                resource_utilization_replicas(current, t, &observation.pods, values, tolerance, cpu)
            }
            (
                Reading::PerPod(values),
                MetricKind::Resource | MetricKind::Pods,
                MetricTarget::AverageValue(t),
            ) => pod_average_replicas(current, t, &observation.pods, values, tolerance, cpu),
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
        }?;
        if recommendation.observed.is_finite() {
            Ok(recommendation)
        } else {
            Err(Error::NoMetrics(format!(
                "{}: the observed figure is not a finite number",
                spec.name
            )))
        }
    }

    /// Every metric's proposal and the highest, as upstream's
    /// `computeReplicasForMetrics`.
    fn propose(
        &self,
        current: u32,
        observation: &Observation,
        outcomes: &mut Vec<MetricOutcome>,
    ) -> Proposal {
        let mut best = Proposal {
            replicas: 0,
            metric: String::new(),
            invalid: 0,
            first_error: None,
        };
        for spec in &self.policy.metrics {
            let target = spec.target_value();
            match self.metric_replicas(current, spec, observation) {
                Ok(r) => {
                    if best.replicas == 0 || r.replicas > best.replicas {
                        best.replicas = r.replicas;
                        best.metric.clone_from(&spec.name);
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
                    best.invalid += 1;
                    let reason = match (observation.readings.get(&spec.name), spec.kind) {
                        (Some(Reading::Single(_)), MetricKind::Resource | MetricKind::Pods)
                        | (Some(Reading::PerPod(_)), MetricKind::Object | MetricKind::External) => {
                            ConditionReason::InvalidMetricSourceType
                        }
                        (_, MetricKind::Resource) => ConditionReason::FailedGetResourceMetric,
                        (_, MetricKind::Pods) => ConditionReason::FailedGetPodsMetric,
                        (_, MetricKind::Object) => ConditionReason::FailedGetObjectMetric,
                        (_, MetricKind::External) => ConditionReason::FailedGetExternalMetric,
                    };
                    best.first_error
                        .get_or_insert_with(|| (reason, e.to_string()));
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
        best
    }

    /// Decides at time `now_s` with `current` replicas; the result is taken
    /// as applied (its change is recorded for the rate limits). Each
    /// decision is a `tracing` event at debug level.
    pub fn decide(&mut self, now_s: f64, current: u32, observation: &Observation) -> Decision {
        let decision = self.decide_quietly(now_s, current, observation);
        tracing::debug!(
            at_s = decision.at_s,
            from = decision.from,
            to = decision.to,
            reason = %decision.reason,
            "scaling decision"
        );
        decision
    }

    /// [`Autoscaler::decide`] without the event (simulations make thousands).
    pub(crate) fn decide_quietly(
        &mut self,
        now_s: f64,
        current: u32,
        observation: &Observation,
    ) -> Decision {
        if !(0.0..=MAX_CLOCK_S).contains(&now_s) {
            return Decision {
                at_s: now_s,
                from: current,
                to: current,
                proposed: None,
                stabilized: None,
                reason: format!(
                    "no change: the clock value {now_s} is outside 0 to {MAX_CLOCK_S} seconds"
                ),
                metrics: Vec::new(),
                conditions: self.conditions.clone(),
                prediction: None,
            };
        }
        // Nothing remembered can be later than now (a clock stepped back, a
        // corrupted store): it would pin stabilization and rate limits.
        for t in self
            .recommendations
            .iter_mut()
            .flatten()
            .chain(self.scale_up_events.iter_mut())
            .chain(self.scale_down_events.iter_mut())
        {
            t.at = t.at.min(now_s);
        }
        // A new or restarted engine starts its history at the current size.
        if self.recommendations.is_none() || std::mem::take(&mut self.restored) {
            self.history_mut().push(Timed {
                at: now_s,
                value: current,
            });
        }
        self.set_condition(
            ConditionType::AbleToScale,
            true,
            ConditionReason::SucceededGetScale,
            "the HPA controller was able to get the target's current scale",
        );
        let (min, max) = (self.policy.min_replicas, self.policy.max_replicas);
        let mut outcomes = Vec::new();
        let mut proposed = None;
        let mut stabilized = None;
        let mut prediction = None;
        let in_bounds = !(current == 0 && min != 0) && current <= max && current >= min;
        if !in_bounds {
            // Still learn the demand.
            self.predict(now_s, observation, None);
        }
        let (to, reason) = if current == 0 && min != 0 {
            self.set_condition(
                ConditionType::ScalingActive,
                false,
                ConditionReason::ScalingDisabled,
                "scaling is disabled since the replica count of the target is zero",
            );
            (
                0,
                "scaling is disabled while the workload has 0 replicas".to_owned(),
            )
        } else if current > max {
            (max, format!("current replicas above max_replicas {max}"))
        } else if current < min {
            (min, format!("current replicas below min_replicas {min}"))
        } else {
            let p = self.propose(current, observation, &mut outcomes);
            let total = self.policy.metrics.len();
            let valid = !(p.invalid >= total || (p.invalid > 0 && p.replicas < current));
            prediction = self.predict(now_s, observation, valid.then_some(p.replicas));
            if !valid {
                let (why, message) = p.first_error.unwrap_or((
                    ConditionReason::FailedGetResourceMetric,
                    "no metric".to_owned(),
                ));
                self.set_condition(
                    ConditionType::ScalingActive,
                    false,
                    why,
                    format!("the HPA was unable to compute the replica count: {message}"),
                );
                (
                    current,
                    format!(
                        "no change: {} of {total} metrics invalid ({message}) and the others would scale down",
                        p.invalid
                    ),
                )
            } else {
                self.set_condition(
                    ConditionType::ScalingActive,
                    true,
                    ConditionReason::ValidMetricFound,
                    format!(
                        "the HPA was able to successfully calculate a replica count from {}",
                        p.metric
                    ),
                );
                let wanted = match prediction {
                    Some(f) if f.applied => f.replicas,
                    _ => p.replicas,
                };
                proposed = Some(wanted);
                let (held, to, limit) = if self.policy.behavior.is_some() {
                    self.with_behavior(now_s, current, wanted)
                } else {
                    self.legacy(now_s, current, wanted)
                };
                stabilized = Some(held);
                self.set_condition(
                    ConditionType::ScalingLimited,
                    to != held,
                    limit,
                    limit.limit_message(),
                );
                let mut reason = format!("{} asks for {}", p.metric, p.replicas);
                match prediction {
                    Some(f) if f.applied => reason.push_str(&format!(
                        "; the forecast ({:.1} ahead) raises it to {}",
                        f.load, f.replicas
                    )),
                    Some(f) if f.replicas > f.reactive => reason.push_str(&format!(
                        "; the forecast ({:.1} ahead) would raise it to {} (forecast_only)",
                        f.load, f.replicas
                    )),
                    _ => {}
                }
                if p.invalid > 0 {
                    reason.push_str(&format!(
                        " ({} of {total} metrics invalid: {})",
                        p.invalid,
                        p.first_error.map(|e| e.1).unwrap_or_default()
                    ));
                }
                if held != wanted {
                    reason.push_str(&format!("; stabilized at {held}"));
                }
                if to != held {
                    reason.push_str(&format!("; {}", limit.limit_message()));
                } else if to == current {
                    reason.push_str(": no change");
                }
                (to, reason)
            }
        };
        if to != current {
            self.set_condition(
                ConditionType::AbleToScale,
                true,
                ConditionReason::SucceededRescale,
                format!("the HPA controller was able to update the target scale to {to}"),
            );
            self.record_scale(now_s, current, to);
        }
        Decision {
            at_s: now_s,
            from: current,
            to,
            proposed,
            stabilized,
            reason,
            metrics: outcomes,
            conditions: self.conditions.clone(),
            prediction,
        }
    }

    /// The `AbleToScale` condition after stabilization: ready when the
    /// recommendation stands, else held (`held`: which window held it).
    fn note_stabilization(&mut self, stabilized: u32, wanted: u32, held: ConditionReason) {
        let (reason, message) = if stabilized == wanted {
            (
                ConditionReason::ReadyForNewScale,
                "recommended size matches current size",
            )
        } else if held == ConditionReason::ScaleUpStabilized {
            (
                held,
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                held,
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        };
        self.set_condition(ConditionType::AbleToScale, true, reason, message);
    }

    /// No behavior: a 300 s down window and `max(2 × current, 4)` up.
    /// Returns (stabilized, limited, limit reason).
    fn legacy(&mut self, now_s: f64, current: u32, wanted: u32) -> (u32, u32, ConditionReason) {
        let stabilized = self.stabilize_legacy(now_s, wanted);
        // Without a behavior only the down window holds (upstream says so
        // whatever the direction).
        self.note_stabilization(stabilized, wanted, ConditionReason::ScaleDownStabilized);
        let (to, why) = legacy_limit(
            current,
            stabilized,
            self.policy.min_replicas,
            self.policy.max_replicas,
        );
        (stabilized, to, why)
    }

    fn history_mut(&mut self) -> &mut Vec<Timed> {
        self.recommendations.get_or_insert_with(Vec::new)
    }

    /// The highest recommendation of the last 300 s (recording this one).
    fn stabilize_legacy(&mut self, now_s: f64, wanted: u32) -> u32 {
        let mut stabilized = wanted;
        let mut old = None;
        let cut = now_s - f64::from(LEGACY_DOWNSCALE_STABILIZATION_S);
        for (i, r) in self.history_mut().iter().enumerate() {
            if r.at < cut {
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
        let history = self.history_mut();
        match old {
            Some(i) => history[i] = rec,
            None => {
                if history.len() >= MAX_HISTORY_ENTRIES {
                    history.remove(0);
                }
                history.push(rec);
            }
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
        for (i, r) in self.history_mut().iter().enumerate() {
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

    /// Returns (stabilized, limited, limit reason).
    fn with_behavior(
        &mut self,
        now_s: f64,
        current: u32,
        wanted: u32,
    ) -> (u32, u32, ConditionReason) {
        let (Some(up), Some(down)) = (self.up.clone(), self.down.clone()) else {
            return (wanted, wanted, ConditionReason::DesiredWithinRange);
        };
        let stabilized =
            self.stabilize_with_behavior(now_s, current, wanted, up.window_s, down.window_s);
        let held = if wanted >= current {
            ConditionReason::ScaleUpStabilized
        } else {
            ConditionReason::ScaleDownStabilized
        };
        self.note_stabilization(stabilized, wanted, held);
        let (to, why) = rate_limit(RateArgs {
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
        (stabilized, to, why)
    }
}

/// Legacy bounds: up to `max(2 × current, 4)` and `max_replicas`, at least
/// `min_replicas` (upstream's `convertDesiredReplicasWithRules`).
pub(crate) fn legacy_limit(
    current: u32,
    desired: u32,
    min: u32,
    max: u32,
) -> (u32, ConditionReason) {
    let up_limit = perf_core::num::saturating_u32(
        (LEGACY_SCALE_UP_FACTOR * f64::from(current)).max(f64::from(LEGACY_SCALE_UP_MINIMUM)),
    );
    let (max_allowed, why) = if max > up_limit {
        (up_limit, ConditionReason::ScaleUpLimit)
    } else {
        (max, ConditionReason::TooManyReplicas)
    };
    if desired < min {
        (min, ConditionReason::TooFewReplicas)
    } else if desired > max_allowed {
        (max_allowed, why)
    } else {
        (desired, ConditionReason::DesiredWithinRange)
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
pub(crate) fn rate_limit(a: RateArgs<'_>) -> (u32, ConditionReason) {
    if a.desired > a.current {
        let limit = policy_limit(Way::Up, a.current, a.ups, a.downs, a.up, a.now_s).max(a.current);
        let (max_allowed, why) = if a.max > limit {
            (limit, ConditionReason::ScaleUpLimit)
        } else {
            (a.max, ConditionReason::TooManyReplicas)
        };
        if max_allowed < a.desired {
            return (max_allowed, why);
        }
    } else if a.desired < a.current {
        let limit =
            policy_limit(Way::Down, a.current, a.ups, a.downs, a.down, a.now_s).min(a.current);
        let (min_allowed, why) = if a.min < limit {
            (limit, ConditionReason::ScaleDownLimit)
        } else {
            (a.min, ConditionReason::TooFewReplicas)
        };
        if min_allowed > a.desired {
            return (min_allowed, why);
        }
    }
    (a.desired, ConditionReason::DesiredWithinRange)
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

/// Which way a count moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Up,
    Down,
}

/// The bound the rate policies of `way` put on the count now: the most
/// replicas for scale-up, the fewest for scale-down. Each policy starts
/// from the count its period began with.
fn policy_limit(
    way: Way,
    current: u32,
    ups: &[Timed],
    downs: &[Timed],
    rules: &ResolvedRules,
    now_s: f64,
) -> u32 {
    // `Max` takes the policy allowing the most change: the highest bound
    // up, the lowest down.
    type Pick = fn(i64, i64) -> i64;
    let (most, least): (Pick, Pick) = match way {
        Way::Up => (i64::max, i64::min),
        Way::Down => (i64::min, i64::max),
    };
    let pick = match rules.select {
        SelectPolicy::Disabled => return current,
        SelectPolicy::Min => least,
        SelectPolicy::Max => most,
    };
    let mut result: Option<i64> = None;
    for policy in &rules.policies {
        let start = i64::from(current) - change_in_period(ups, policy.period_seconds, now_s)
            + change_in_period(downs, policy.period_seconds, now_s);
        let value = i64::from(policy.value);
        let fraction = f64::from(policy.value) / 100.0;
        let proposed = match (policy.kind, way) {
            (RatePolicyKind::Pods, Way::Up) => start + value,
            (RatePolicyKind::Pods, Way::Down) => start - value,
            (RatePolicyKind::Percent, Way::Up) => {
                perf_core::num::saturating_i64((start as f64 * (1.0 + fraction)).ceil())
            }
            (RatePolicyKind::Percent, Way::Down) => {
                perf_core::num::saturating_i64(start as f64 * (1.0 - fraction))
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
mod k8s_controller_cases;
