//! A scaling policy, as a HorizontalPodAutoscaler (autoscaling/v2) spells
//! it: bounds, metrics with targets, tolerance, and behavior (stabilization
//! windows and rate policies per direction). Plus the simpler step rule
//! ("add 2 when CPU is over 70 %, then wait 3 minutes") expressed on the
//! same engine.

use serde::{Deserialize, Serialize};

use crate::replicas::Tolerance;
use crate::{Error, Result};

/// Which kind of metric, as the HPA distinguishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A resource of each pod (`cpu`, `memory`), against its request.
    Resource,
    /// A custom metric of each pod (requests per second per pod).
    Pods,
    /// One value describing another object (an ingress's request rate).
    Object,
    /// One value from outside the cluster (a queue's length).
    External,
}

/// What a metric is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MetricTarget {
    /// Percent of the pods' requests (resource metrics).
    Utilization(f64),
    /// The value per pod.
    AverageValue(f64),
    /// The value in total (object and external metrics).
    Value(f64),
}

/// One metric the policy scales on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// Its name (`cpu`, `requests_per_second`, ...); readings are keyed by
    /// it. For a `resource` metric it is the resource's name, as in an HPA
    /// (`cpu`, `memory`).
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Its target.
    pub target: MetricTarget,
    /// This metric's own tolerance, per direction; a direction given here
    /// wins over the behavior's and the policy's, one left out falls back
    /// to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<ToleranceOverride>,
}

/// A metric's own tolerance: either direction or both.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ToleranceOverride {
    /// Scale up only above `1 + up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up: Option<f64>,
    /// Scale down only below `1 - down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<f64>,
}

impl ToleranceOverride {
    /// The same band both ways.
    pub fn both(t: f64) -> Self {
        Self {
            up: Some(t),
            down: Some(t),
        }
    }
}

impl MetricSpec {
    /// A metric with the policy's tolerance.
    pub fn new(name: impl Into<String>, kind: MetricKind, target: MetricTarget) -> Self {
        Self {
            name: name.into(),
            kind,
            target,
            tolerance: None,
        }
    }

    /// Whether the HPA's CPU readiness rules apply: a `resource` metric of
    /// the CPU resource (unready pods and pods in their start-up burst are
    /// set aside), whatever its target type; no other kind of metric.
    pub fn is_cpu_resource(&self) -> bool {
        self.kind == MetricKind::Resource && self.name.eq_ignore_ascii_case("cpu")
    }

    /// The target figure, whatever its type.
    pub fn target_value(&self) -> f64 {
        match self.target {
            MetricTarget::Utilization(v)
            | MetricTarget::AverageValue(v)
            | MetricTarget::Value(v) => v,
        }
    }
}

/// How a rate policy limits change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RatePolicyKind {
    /// At most `value` replicas per period.
    Pods,
    /// At most `value` percent of the replicas at the period's start.
    Percent,
}

/// A limit on change per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RatePolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: RatePolicyKind,
    /// The amount (above 0).
    pub value: u32,
    /// The period, seconds (1 to 1800).
    pub period_seconds: u32,
}

/// Which of several rate policies wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SelectPolicy {
    /// The one allowing the most change (default).
    #[default]
    Max,
    /// The one allowing the least change.
    Min,
    /// No change in this direction at all.
    Disabled,
}

/// The rules of one direction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ScalingRules {
    /// Seconds of past recommendations considered (0 to 3600; default 0
    /// up, 300 down).
    pub stabilization_window_seconds: Option<u32>,
    /// Which policy wins (default `Max`).
    pub select_policy: Option<SelectPolicy>,
    /// Rate policies (default: up `Percent 100 / 15 s` and `Pods 4 / 15 s`,
    /// down `Percent 100 / 15 s`).
    pub policies: Option<Vec<RatePolicy>>,
    /// The tolerance in this direction (KEP-4951's
    /// `behavior.scaleUp.tolerance`): at least 0; unset, the policy's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

/// Scaling behavior per direction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// Scaling up.
    pub scale_up: Option<ScalingRules>,
    /// Scaling down.
    pub scale_down: Option<ScalingRules>,
}

/// Rules with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedRules {
    pub(crate) window_s: u32,
    pub(crate) select: SelectPolicy,
    pub(crate) policies: Vec<RatePolicy>,
}

impl ScalingRules {
    pub(crate) fn resolve(rules: Option<&Self>, up: bool) -> ResolvedRules {
        let default_policies = if up {
            vec![
                RatePolicy {
                    kind: RatePolicyKind::Percent,
                    value: 100,
                    period_seconds: 15,
                },
                RatePolicy {
                    kind: RatePolicyKind::Pods,
                    value: 4,
                    period_seconds: 15,
                },
            ]
        } else {
            vec![RatePolicy {
                kind: RatePolicyKind::Percent,
                value: 100,
                period_seconds: 15,
            }]
        };
        let default_window = if up { 0 } else { 300 };
        ResolvedRules {
            window_s: rules
                .and_then(|r| r.stabilization_window_seconds)
                .unwrap_or(default_window),
            select: rules.and_then(|r| r.select_policy).unwrap_or_default(),
            policies: rules
                .and_then(|r| r.policies.clone())
                .unwrap_or(default_policies),
        }
    }
}

/// A complete scaling policy.
///
/// `min_replicas: 0` (scale to zero, upstream's `HPAScaleToZero`) is
/// accepted when at least one metric is an object or external one, which
/// can still be read with no replica running.
///
/// ```
/// let policy: perf_scaling::ScalingPolicy = serde_json::from_str(r#"{
///   "min_replicas": 1, "max_replicas": 20,
///   "metrics": [{"name": "cpu", "kind": "resource", "target": {"utilization": 60}}],
///   "behavior": {"scale_down": {"stabilization_window_seconds": 120}}
/// }"#)?;
/// policy.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScalingPolicy {
    /// Fewest replicas (at least 1; 0 with an object or external metric).
    pub min_replicas: u32,
    /// Most replicas (at least `min_replicas`, at most 10000).
    pub max_replicas: u32,
    /// What to scale on; several take the maximum.
    pub metrics: Vec<MetricSpec>,
    /// Stabilization and rate limits; without it, the legacy rules (a
    /// 300 s down window, up to `max(2 × current, 4)` per decision).
    #[serde(default)]
    pub behavior: Option<Behavior>,
    /// The band around the target in which nothing changes (default 0.1
    /// each way, the controller's `--horizontal-pod-autoscaler-tolerance`).
    #[serde(default)]
    pub tolerance: Tolerance,
    /// Scaling ahead of a load that repeats (beyond the HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictive: Option<crate::forecast::PredictiveSettings>,
}

fn check_tolerance(field: &str, t: f64) -> Result<()> {
    if t.is_finite() && t >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{t} must be a number at least 0"),
        ))
    }
}

fn check_rules(rules: &ScalingRules, path: &str) -> Result<()> {
    if let Some(t) = rules.tolerance {
        check_tolerance(&format!("{path}.tolerance"), t)?;
    }
    if let Some(w) = rules.stabilization_window_seconds
        && w > 3600
    {
        return Err(Error::invalid(
            format!("{path}.stabilization_window_seconds"),
            format!("{w} is outside the allowed range 0 to 3600"),
        ));
    }
    if let Some(policies) = &rules.policies {
        if policies.is_empty() && rules.select_policy != Some(SelectPolicy::Disabled) {
            return Err(Error::invalid(
                format!("{path}.policies"),
                "needs at least one policy (or select_policy: Disabled)",
            ));
        }
        for (i, p) in policies.iter().enumerate() {
            if p.value == 0 {
                return Err(Error::invalid(
                    format!("{path}.policies[{i}].value"),
                    "must be above 0",
                ));
            }
            if !(1..=1800).contains(&p.period_seconds) {
                return Err(Error::invalid(
                    format!("{path}.policies[{i}].period_seconds"),
                    format!(
                        "{} is outside the allowed range 1 to 1800",
                        p.period_seconds
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl ScalingPolicy {
    /// Checks every field; the error names the first bad one with its path.
    pub fn validate(&self) -> Result<()> {
        let reads_without_replicas = self
            .metrics
            .iter()
            .any(|m| matches!(m.kind, MetricKind::Object | MetricKind::External));
        if self.min_replicas == 0 && !reads_without_replicas {
            return Err(Error::invalid(
                "min_replicas",
                "must be at least 1; 0 (scale to zero) needs at least one object or external metric",
            ));
        }
        if self.max_replicas < self.min_replicas.max(1) || self.max_replicas > 10_000 {
            return Err(Error::invalid(
                "max_replicas",
                format!(
                    "{} must be at least 1, at least min_replicas ({}), and at most 10000",
                    self.max_replicas, self.min_replicas
                ),
            ));
        }
        if self.metrics.is_empty() {
            return Err(Error::invalid("metrics", "needs at least one metric"));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if m.name.trim().is_empty() {
                return Err(Error::invalid(
                    format!("metrics[{i}].name"),
                    "must not be empty",
                ));
            }
            let value = match m.target {
                MetricTarget::Utilization(v)
                | MetricTarget::AverageValue(v)
                | MetricTarget::Value(v) => v,
            };
            let allowed = matches!(
                (m.kind, m.target),
                (MetricKind::Resource, MetricTarget::Utilization(_))
                    | (
                        MetricKind::Resource | MetricKind::Pods,
                        MetricTarget::AverageValue(_)
                    )
                    | (
                        MetricKind::Object | MetricKind::External,
                        MetricTarget::Value(_) | MetricTarget::AverageValue(_)
                    )
            );
            if !allowed {
                return Err(Error::invalid(
                    format!("metrics[{i}].target"),
                    "resource metrics take utilization or average_value, pods metrics average_value, object and external metrics value or average_value",
                ));
            }
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::invalid(
                    format!("metrics[{i}].target"),
                    format!("{value} must be a number above 0"),
                ));
            }
            if let Some(t) = m.tolerance {
                if let Some(up) = t.up {
                    check_tolerance(&format!("metrics[{i}].tolerance.up"), up)?;
                }
                if let Some(down) = t.down {
                    check_tolerance(&format!("metrics[{i}].tolerance.down"), down)?;
                }
            }
        }
        check_tolerance("tolerance.up", self.tolerance.up)?;
        check_tolerance("tolerance.down", self.tolerance.down)?;
        if let Some(b) = &self.behavior {
            if let Some(r) = &b.scale_up {
                check_rules(r, "behavior.scale_up")?;
            }
            if let Some(r) = &b.scale_down {
                check_rules(r, "behavior.scale_down")?;
            }
        }
        if let Some(p) = &self.predictive {
            p.validate()?;
            self.forecast_metric().ok_or_else(|| {
                Error::invalid(
                    "predictive.metric",
                    match &p.metric {
                        Some(name) => format!(
                            "{name:?} is not a metric of this policy with a per-replica target (utilization or average_value)"
                        ),
                        None => "no metric has a per-replica target (utilization or average_value) to forecast".to_owned(),
                    },
                )
            })?;
        }
        Ok(())
    }

    /// The metric the `predictive` block forecasts: the named one, or the
    /// first with a per-replica target (a value target has none).
    pub fn forecast_metric(&self) -> Option<&MetricSpec> {
        let p = self.predictive.as_ref()?;
        self.metrics.iter().find(|m| {
            p.metric.as_ref().is_none_or(|name| *name == m.name)
                && !matches!(m.target, MetricTarget::Value(_))
        })
    }

    /// The tolerance band one metric is held to, per direction: its own,
    /// else the behavior's, else the policy's.
    ///
    /// ```
    /// let policy: perf_scaling::ScalingPolicy = serde_json::from_str(r#"{"min_replicas": 1,
    ///     "max_replicas": 9, "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}],
    ///     "behavior": {"scale_up": {"tolerance": 0.02}}}"#)?;
    /// let t = policy.tolerance_for(&policy.metrics[0]);
    /// assert_eq!((t.up, t.down), (0.02, 0.1));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn tolerance_for(&self, metric: &MetricSpec) -> Tolerance {
        let mut t = self.tolerance;
        if let Some(b) = &self.behavior {
            if let Some(up) = b.scale_up.as_ref().and_then(|r| r.tolerance) {
                t.up = up;
            }
            if let Some(down) = b.scale_down.as_ref().and_then(|r| r.tolerance) {
                t.down = down;
            }
        }
        if let Some(own) = metric.tolerance {
            t.up = own.up.unwrap_or(t.up);
            t.down = own.down.unwrap_or(t.down);
        }
        t
    }
}

/// The simple rule model: add `step` replicas when `metric` is above
/// `scale_up_above`, remove `step` when it is below `scale_down_below`, and
/// wait `cooldown_seconds` after a change in that direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StepRule {
    /// The metric (an average per replica, e.g. CPU percent).
    pub metric: String,
    /// Scale up above this.
    pub scale_up_above: f64,
    /// Scale down below this.
    pub scale_down_below: f64,
    /// Replicas added or removed per step.
    pub step: u32,
    /// Seconds before the next step in the same direction.
    pub cooldown_seconds: u32,
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
}

impl StepRule {
    /// The same rule as a [`ScalingPolicy`] for the HPA engine: the target is
    /// the middle of the band and the tolerance reaches the bounds, so the
    /// engine wants a change exactly when a bound is crossed; `Pods step`
    /// policies per cooldown period make each change one step, and the
    /// cooldown is also each direction's stabilization window.
    ///
    /// ```
    /// use perf_scaling::StepRule;
    /// let rule = StepRule { metric: "cpu".into(), scale_up_above: 70.0, scale_down_below: 30.0,
    ///     step: 2, cooldown_seconds: 180, min_replicas: 1, max_replicas: 10 };
    /// let policy = rule.to_policy()?;
    /// assert!((policy.tolerance.up - 0.4).abs() < 1e-9);
    /// # Ok::<(), perf_scaling::Error>(())
    /// ```
    pub fn to_policy(&self) -> Result<ScalingPolicy> {
        if !(self.scale_down_below >= 0.0 && self.scale_up_above > self.scale_down_below) {
            return Err(Error::invalid(
                "scale_up_above",
                format!(
                    "{} must be above scale_down_below ({}), which must be at least 0",
                    self.scale_up_above, self.scale_down_below
                ),
            ));
        }
        if self.step == 0 {
            return Err(Error::invalid("step", "must be at least 1"));
        }
        let target = (self.scale_up_above + self.scale_down_below) / 2.0;
        let rules = |window: u32| ScalingRules {
            tolerance: None,
            stabilization_window_seconds: Some(window.min(3600)),
            select_policy: Some(SelectPolicy::Max),
            policies: Some(vec![RatePolicy {
                kind: RatePolicyKind::Pods,
                value: self.step,
                period_seconds: self.cooldown_seconds.clamp(1, 1800),
            }]),
        };
        let policy = ScalingPolicy {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            metrics: vec![MetricSpec::new(
                self.metric.clone(),
                MetricKind::Pods,
                MetricTarget::AverageValue(target),
            )],
            behavior: Some(Behavior {
                scale_up: Some(rules(0)),
                scale_down: Some(rules(self.cooldown_seconds)),
            }),
            tolerance: Tolerance {
                up: (self.scale_up_above / target - 1.0).max(0.0),
                down: (1.0 - self.scale_down_below / target).max(0.0),
            },
            predictive: None,
        };
        policy.validate()?;
        Ok(policy)
    }
}

perf_core::config_builder! {
    /// Builds a [`ScalingPolicy`] from its replica range; add a metric or
    /// more with [`ScalingPolicyBuilder::metric`].
    ///
    /// ```
    /// use perf_scaling::{MetricKind, MetricSpec, MetricTarget, ScalingPolicy};
    /// let policy = ScalingPolicy::builder(2, 20)
    ///     .metric(MetricSpec::new("cpu", MetricKind::Resource, MetricTarget::Utilization(60.0)))
    ///     .build()?;
    /// assert_eq!(policy.max_replicas, 20);
    /// let err = ScalingPolicy::builder(2, 20).build().unwrap_err();
    /// assert!(err.to_string().contains("metrics"));
    /// # Ok::<(), perf_scaling::Error>(())
    /// ```
    ScalingPolicy(min_replicas: u32, max_replicas: u32) => ScalingPolicyBuilder, Error {
        metrics: Vec<MetricSpec>,
        behavior: Option<Behavior> => into,
        tolerance: Tolerance,
        predictive: Option<crate::forecast::PredictiveSettings> => into,
    }
    starting from ScalingPolicy {
        min_replicas,
        max_replicas,
        metrics: Vec::new(),
        behavior: None,
        tolerance: Tolerance::default(),
        predictive: None,
    }
}

impl ScalingPolicyBuilder {
    /// Adds a metric to scale on (several: the largest recommendation wins).
    pub fn metric(mut self, metric: MetricSpec) -> Self {
        self.config.metrics.push(metric);
        self
    }
}
