//! The replica calculator: how many replicas one metric asks for, with the
//! Kubernetes HPA controller's rules.
//!
//! - Resource metrics (CPU, memory) are compared as utilization of the pods'
//!   requests, or as an average value; custom pod metrics as an average.
//! - Pods being deleted or failed are ignored; pending pods, and for CPU pods
//!   not ready or still in their start-up burst, count as *unready*; pods
//!   without a sample are *missing*.
//! - Within the tolerance band (default 0.1) nothing changes.
//! - When scaling up with unready pods, those are assumed to use nothing;
//!   missing pods are assumed at `max(100 %, target)` of their request
//!   (utilization targets) or at the target (average values) when scaling
//!   down and at 0 when scaling up; if that reverses the direction or lands
//!   in the band, nothing changes.
//! - Per-pod averages are taken in milli-units and truncated, as the HPA's
//!   integer arithmetic does (`[4.000, 4.000, 4.001]` averages to `4.000`).
//! - Object and external metrics compare one value against a target value
//!   (times the ready pods) or an average value (per current replica); with
//!   0 replicas (scale to zero) the ratio alone gives the count.
//! - A replica count saturates at [`MAX_REPLICA_COUNT`] (`i32::MAX`), as
//!   upstream's does.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where a pod is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PodPhase {
    /// Not yet running.
    Pending,
    /// Running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed.
    Failed,
}

/// A pod (an instance) as the calculator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pod {
    /// Its name; metrics are keyed by it.
    pub name: String,
    /// Its phase.
    pub phase: PodPhase,
    /// Its Ready condition.
    pub ready: bool,
    /// Being deleted.
    pub deleting: bool,
    /// Within its CPU initialization period with a sample that may be the
    /// start-up burst (the HPA ignores such CPU samples).
    pub cpu_initializing: bool,
    /// The resource request, summed over its containers, in the metric's
    /// unit (`None` when a container has none).
    pub request: Option<f64>,
}

impl Pod {
    /// A running, ready pod with this request.
    pub fn running(name: impl Into<String>, request: Option<f64>) -> Self {
        Self {
            name: name.into(),
            phase: PodPhase::Running,
            ready: true,
            deleting: false,
            cpu_initializing: false,
            request,
        }
    }

    fn counts_as_ready(&self) -> bool {
        self.phase == PodPhase::Running && self.ready && !self.deleting
    }
}

/// What one metric asks for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricRecommendation {
    /// Replicas wanted.
    pub replicas: u32,
    /// The observed figure the decision used: utilization in percent for
    /// resource utilization, else the average or total value (as the HPA
    /// reports it in its status).
    pub observed: f64,
    /// The average raw value per pod, where it applies (resource metrics).
    pub raw_average: Option<f64>,
}

/// Pods sorted the way the controller sorts them.
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

impl Groups {
    /// The samples the calculation uses: those of ignored and unready pods removed.
    fn countable(&self, metrics: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
        let mut kept = metrics.clone();
        for name in self.ignored.iter().chain(&self.unready) {
            kept.remove(name);
        }
        kept
    }
}

fn group_pods(pods: &[Pod], metrics: &BTreeMap<String, f64>, cpu: bool) -> Groups {
    let mut g = Groups {
        ready: 0,
        unready: BTreeSet::new(),
        missing: BTreeSet::new(),
        ignored: BTreeSet::new(),
    };
    let mut seen = BTreeSet::new();
    for pod in pods {
        // A pod listed twice is one pod.
        if !seen.insert(pod.name.as_str()) {
            continue;
        }
        if pod.deleting || pod.phase == PodPhase::Failed {
            g.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.phase == PodPhase::Pending {
            g.unready.insert(pod.name.clone());
            continue;
        }
        if !metrics.contains_key(&pod.name) {
            g.missing.insert(pod.name.clone());
            continue;
        }
        if cpu && (!pod.ready || pod.cpu_initializing) {
            g.unready.insert(pod.name.clone());
            continue;
        }
        g.ready += 1;
    }
    g
}

/// The tolerance band around a ratio of 1, per direction (default 0.1 both).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Tolerance {
    /// Scale up only above `1 + up`.
    pub up: f64,
    /// Scale down only below `1 - down`.
    pub down: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self { up: 0.1, down: 0.1 }
    }
}

impl Tolerance {
    /// The same band both ways.
    pub fn both(t: f64) -> Self {
        Self { up: t, down: t }
    }

    /// No change for this usage ratio: `1 - down <= ratio <= 1 + up`, both
    /// edges included (Kubernetes 1.33+).
    ///
    /// ```
    /// let t = perf_scaling::Tolerance::default();
    /// assert!(t.contains(55.0 / 50.0)); // exactly +10 %: hold
    /// assert!(!t.contains(56.0 / 50.0));
    /// assert!(t.contains(0.9) && !t.contains(0.89));
    /// ```
    pub fn contains(self, ratio: f64) -> bool {
        1.0 - self.down <= ratio && ratio <= 1.0 + self.up
    }
}

/// The most replicas a calculation returns: upstream counts in `int32`
/// and saturates there.
pub const MAX_REPLICA_COUNT: u32 = i32::MAX as u32;

/// `ceil(x)` as a replica count, saturating at [`MAX_REPLICA_COUNT`].
pub(crate) fn ceil_replicas(x: f64) -> u32 {
    let c = x.ceil();
    if c.is_nan() || c <= 0.0 {
        0
    } else if c >= f64::from(MAX_REPLICA_COUNT) {
        MAX_REPLICA_COUNT
    } else {
        perf_core::num::saturating_u32(c)
    }
}

/// A value in milli-units, as a `resource.Quantity`'s `MilliValue()`
/// gives it (rounded up).
fn milli(v: f64) -> f64 {
    (v * 1000.0).ceil()
}

/// The average of per-pod values in milli-units, truncated as upstream's
/// `metricsTotal / len(metrics)` on `int64`.
fn milli_average(values: &BTreeMap<String, f64>) -> f64 {
    let total: f64 = values.values().map(|v| milli(*v)).sum();
    (total / values.len() as f64).trunc()
}

/// The shared second half of resource and pod-metric calculations: scale
/// by `ratio`, then re-check with unready and missing pods filled in.
#[allow(clippy::too_many_arguments)]
fn with_adjustments(
    current: u32,
    groups: &Groups,
    mut metrics: BTreeMap<String, f64>,
    ratio: f64,
    tolerance: Tolerance,
    fallback_missing_scale_down: impl Fn(&str) -> f64,
    recompute: impl Fn(&BTreeMap<String, f64>) -> Result<f64>,
) -> Result<u32> {
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerance.contains(ratio) {
            return Ok(current);
        }
        return Ok(ceil_replicas(ratio * groups.ready as f64));
    }
    // Missing pods: at the fallback on a way down, at 0 on a way up; at
    // exactly 1 they are left out.
    if ratio < 1.0 {
        for name in &groups.missing {
            metrics.insert(name.clone(), fallback_missing_scale_down(name));
        }
    } else if ratio > 1.0 {
        for name in &groups.missing {
            metrics.insert(name.clone(), 0.0);
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            metrics.insert(name.clone(), 0.0);
        }
    }
    let new_ratio = recompute(&metrics)?;
    if tolerance.contains(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(current);
    }
    let replicas = ceil_replicas(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(current);
    }
    Ok(replicas)
}

/// Utilization (integer percent, as the HPA computes it), ratio to target,
/// and raw average over the pods that have both a sample and a request.
fn utilization(
    metrics: &BTreeMap<String, f64>,
    requests: &BTreeMap<String, f64>,
    target_percent: f64,
) -> Result<(f64, f64, f64)> {
    let mut total = 0.0;
    let mut requested = 0.0;
    let mut counted = 0usize;
    for (name, value) in metrics {
        if let Some(r) = requests.get(name) {
            total += value;
            requested += r;
            counted += 1;
        }
    }
    if counted == 0 || requested == 0.0 {
        return Err(Error::NoMetrics(
            "no metrics returned matched known pods".to_owned(),
        ));
    }
    let percent = (total * 100.0 / requested).trunc();
    Ok((percent / target_percent, percent, total / counted as f64))
}

/// Replicas for a resource metric with a utilization target (percent of
/// the pods' requests). `metrics` maps pod names to usage.
///
/// ```
/// use std::collections::BTreeMap;
/// use perf_scaling::{resource_utilization_replicas, Pod, Tolerance};
/// let pods: Vec<Pod> = (0..3).map(|i| Pod::running(format!("p{i}"), Some(1000.0))).collect();
/// let usage: BTreeMap<String, f64> = [("p0", 300.0), ("p1", 500.0), ("p2", 700.0)]
///     .into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
/// let r = resource_utilization_replicas(3, 30.0, &pods, &usage, Tolerance::default(), true)?;
/// assert_eq!((r.replicas, r.observed), (5, 50.0));
/// # Ok::<(), perf_scaling::Error>(())
/// ```
pub fn resource_utilization_replicas(
    current: u32,
    target_percent: f64,
    pods: &[Pod],
    metrics: &BTreeMap<String, f64>,
    tolerance: Tolerance,
    cpu: bool,
) -> Result<MetricRecommendation> {
    if metrics.is_empty() {
        return Err(Error::NoMetrics(
            "no metrics returned from resource metrics API".to_owned(),
        ));
    }
    if target_percent <= 0.0 {
        return Err(Error::invalid(
            "target",
            "utilization target must be above 0",
        ));
    }
    let groups = group_pods(pods, metrics, cpu);
    let kept = groups.countable(metrics);
    let mut requests = BTreeMap::new();
    for pod in pods {
        match pod.request {
            Some(r) => {
                requests.insert(pod.name.clone(), r);
            }
            None => {
                return Err(Error::NoMetrics(format!(
                    "missing request for the resource on pod {}",
                    pod.name
                )));
            }
        }
    }
    if kept.is_empty() {
        return Err(Error::NoMetrics(
            "did not receive metrics for any ready pods".to_owned(),
        ));
    }
    let (ratio, percent, raw) = utilization(&kept, &requests, target_percent)?;
    let replicas = with_adjustments(
        current,
        &groups,
        kept,
        ratio,
        tolerance,
        // At 100 % of the request, or at the target when it is above 100 %.
        |name| requests.get(name).copied().unwrap_or(0.0) * target_percent.max(100.0) / 100.0,
        |m| utilization(m, &requests, target_percent).map(|(r, _, _)| r),
    )?;
    Ok(MetricRecommendation {
        replicas,
        observed: percent,
        raw_average: Some(raw),
    })
}

/// Replicas for a per-pod metric with an average-value target (custom pod
/// metrics, or a resource metric with an `AverageValue` target, for which
/// `cpu` applies the CPU readiness rules). The average is taken in
/// milli-units and truncated, as upstream does.
///
/// ```
/// use std::collections::BTreeMap;
/// use perf_scaling::{pod_average_replicas, Pod, Tolerance};
/// let pods: Vec<Pod> = (0..3).map(|i| Pod::running(format!("p{i}"), None)).collect();
/// let rps: BTreeMap<String, f64> = [("p0", 4.0), ("p1", 4.0), ("p2", 4.001)]
///     .into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
/// let r = pod_average_replicas(3, 3.0, &pods, &rps, Tolerance::default(), false)?;
/// assert_eq!((r.replicas, r.observed), (4, 4.0)); // 4.000 average, not 4.000333
/// # Ok::<(), perf_scaling::Error>(())
/// ```
pub fn pod_average_replicas(
    current: u32,
    target_average: f64,
    pods: &[Pod],
    metrics: &BTreeMap<String, f64>,
    tolerance: Tolerance,
    cpu: bool,
) -> Result<MetricRecommendation> {
    if metrics.is_empty() {
        return Err(Error::NoMetrics("no metrics returned".to_owned()));
    }
    if target_average <= 0.0 {
        return Err(Error::invalid(
            "target",
            "average value target must be above 0",
        ));
    }
    let groups = group_pods(pods, metrics, cpu);
    let mut kept = groups.countable(metrics);
    let known: BTreeSet<&String> = pods.iter().map(|p| &p.name).collect();
    kept.retain(|name, _| known.contains(name));
    if kept.is_empty() {
        return Err(Error::NoMetrics(
            "did not receive metrics for any ready pods".to_owned(),
        ));
    }
    let target_milli = milli(target_average);
    let observed = milli_average(&kept);
    let ratio = observed / target_milli;
    let replicas = with_adjustments(
        current,
        &groups,
        kept,
        ratio,
        tolerance,
        |_| target_average,
        |m| Ok(milli_average(m) / target_milli),
    )?;
    Ok(MetricRecommendation {
        replicas,
        observed: observed / 1000.0,
        raw_average: None,
    })
}

/// Pods counted as ready for object and external metrics.
pub fn ready_pods(pods: &[Pod]) -> usize {
    let mut seen = BTreeSet::new();
    pods.iter()
        .filter(|p| seen.insert(p.name.as_str()) && p.counts_as_ready())
        .count()
}

/// Replicas for one value (an object's metric, or an external metric's
/// total) against a target *value*: scale the ready pods by the ratio; with
/// 0 replicas (scale to zero), `ceil(ratio)` without tolerance.
pub fn value_replicas(
    current: u32,
    target_value: f64,
    value: f64,
    ready: usize,
    tolerance: Tolerance,
) -> Result<MetricRecommendation> {
    if target_value <= 0.0 {
        return Err(Error::invalid("target", "value target must be above 0"));
    }
    let ratio = milli(value) / milli(target_value);
    let replicas = if current == 0 {
        ceil_replicas(ratio)
    } else if tolerance.contains(ratio) {
        current
    } else {
        ceil_replicas(ratio * ready as f64)
    };
    Ok(MetricRecommendation {
        replicas,
        observed: value,
        raw_average: None,
    })
}

/// Replicas for one value against a target *average value* per replica:
/// `ceil(value / target)` unless within the band (in milli-units, as
/// upstream); the observed figure is the value per current replica.
pub fn average_value_replicas(
    current: u32,
    target_average: f64,
    value: f64,
    tolerance: Tolerance,
) -> Result<MetricRecommendation> {
    if target_average <= 0.0 {
        return Err(Error::invalid(
            "target",
            "average value target must be above 0",
        ));
    }
    let (usage, target) = (milli(value), milli(target_average));
    let replicas = if current > 0 && tolerance.contains(usage / (target * f64::from(current))) {
        current
    } else {
        ceil_replicas(usage / target)
    };
    Ok(MetricRecommendation {
        replicas,
        observed: if current > 0 {
            (usage / f64::from(current)).ceil() / 1000.0
        } else {
            value
        },
        raw_average: None,
    })
}
