//! Kubernetes' own HPA controller tests
//! (`pkg/controller/podautoscaler/horizontal_test.go`), ported through the
//! public API: the same bounds, metrics, pods, samples and recommendation
//! history, and the same expected replica count and final status conditions
//! (type, status, reason).
//!
//! Harness facts carried over: upstream's test HPA always has a (defaulted)
//! `behavior`, so these use `behavior: {}` unless a case sets rules; a case
//! without `recommendations` starts with no history (the controller then
//! records `{current, now}` first), one with `[]` starts with an empty
//! history. CPU is in millicores, a pod's request 1000 m unless given;
//! custom metrics are given in milli-units upstream and in units here.
//!
//! Not ported (no equivalent in an engine that is handed its readings):
//! selector, scale-subresource, event, status-update and workqueue tests;
//! container-resource cases are ported with the container's own usage and
//! request (the caller picks the container).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use perf_scaling::{
    Autoscaler, Behavior, ConditionReason as R, ConditionType as C, History, MetricKind,
    MetricSpec, MetricTarget, Observation, Pod, PodPhase, RatePolicy, RatePolicyKind, Reading,
    ScalingPolicy, ScalingPolicyBuilder, ScalingRules, SelectPolicy, TimedReplicas,
};

const NOW: f64 = 1_000_000.0;

type Conditions = Vec<(C, bool, R)>;

fn status_ok() -> Conditions {
    vec![
        (C::AbleToScale, true, R::SucceededRescale),
        (C::ScalingActive, true, R::ValidMetricFound),
        (C::ScalingLimited, false, R::DesiredWithinRange),
    ]
}

/// `statusOkWithOverrides`: statusOk with conditions of the same type replaced.
fn ok_with(overrides: &[(C, bool, R)]) -> Conditions {
    let mut c = status_ok();
    for o in overrides {
        if let Some(slot) = c.iter_mut().find(|x| x.0 == o.0) {
            *slot = *o;
        }
    }
    c
}

fn no_change() -> Conditions {
    ok_with(&[(C::AbleToScale, true, R::ReadyForNewScale)])
}

fn failed(reason: R) -> Conditions {
    vec![
        (C::AbleToScale, true, R::SucceededGetScale),
        (C::ScalingActive, false, reason),
    ]
}

/// One controller case.
struct Case {
    name: &'static str,
    min: u32,
    max: u32,
    current: u32,
    metrics: Vec<MetricSpec>,
    behavior: Option<Behavior>,
    pods: Vec<Pod>,
    readings: BTreeMap<String, Reading>,
    /// `None`: no history (upstream's nil); `Some`: (replicas, seconds ago).
    recommendations: Option<Vec<(u32, f64)>>,
    expected: u32,
    conditions: Conditions,
}

impl Case {
    fn new(name: &'static str, min: u32, max: u32, current: u32) -> Self {
        Self {
            name,
            min,
            max,
            current,
            metrics: Vec::new(),
            behavior: Some(Behavior::default()),
            pods: Vec::new(),
            readings: BTreeMap::new(),
            recommendations: None,
            expected: 0,
            conditions: status_ok(),
        }
    }
    fn metric(mut self, spec: MetricSpec, reading: Reading) -> Self {
        self.readings.insert(spec.name.clone(), reading);
        self.metrics.push(spec);
        self
    }
    fn pods(mut self, pods: Vec<Pod>) -> Self {
        self.pods = pods;
        self
    }
    fn empty_history(mut self) -> Self {
        self.recommendations = Some(Vec::new());
        self
    }
    fn history(mut self, recs: &[(u32, f64)]) -> Self {
        self.recommendations = Some(recs.to_vec());
        self
    }
    fn behavior(mut self, b: Behavior) -> Self {
        self.behavior = Some(b);
        self
    }
    fn expect(mut self, replicas: u32, conditions: Conditions) -> Self {
        self.expected = replicas;
        self.conditions = conditions;
        self
    }

    fn run(self) -> Result<(), String> {
        let policy = ScalingPolicy::builder(self.min, self.max)
            .metrics(self.metrics)
            .behavior(self.behavior)
            .build()
            .unwrap();
        let history = History {
            recommendations: self.recommendations.map(|r| {
                r.iter()
                    .map(|(replicas, ago)| TimedReplicas {
                        at_s: NOW - ago,
                        replicas: *replicas,
                    })
                    .collect()
            }),
            ..History::default()
        };
        let mut hpa =
            Autoscaler::with_history(policy, history).map_err(|e| format!("{}: {e}", self.name))?;
        let d = hpa.decide(
            NOW,
            self.current,
            &Observation {
                pods: self.pods,
                readings: self.readings,
            },
        );
        let got: Conditions = d
            .conditions
            .iter()
            .map(|c| (c.kind, c.status, c.reason))
            .collect();
        if d.to != self.expected || got != self.conditions {
            return Err(format!(
                "{}: got {} {got:?}, expected {} {:?} ({})",
                self.name, d.to, self.expected, self.conditions, d.reason
            ));
        }
        Ok(())
    }
}

/// Pods with these requests (cores), ready and running.
fn pods(requests: &[f64]) -> Vec<Pod> {
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| Pod::running(format!("p{i}"), Some(r * 1000.0)))
        .collect()
}

fn n_pods(n: usize) -> Vec<Pod> {
    pods(&vec![1.0; n])
}

fn with(mut pods: Vec<Pod>, f: impl Fn(usize, &mut Pod)) -> Vec<Pod> {
    for (i, p) in pods.iter_mut().enumerate() {
        f(i, p);
    }
    pods
}

fn unready(pods: Vec<Pod>, which: &[usize]) -> Vec<Pod> {
    with(pods, |i, p| {
        if which.contains(&i) {
            p.ready = false;
        }
    })
}

fn hot(pods: Vec<Pod>, which: &[usize]) -> Vec<Pod> {
    with(pods, |i, p| {
        if which.contains(&i) {
            p.cpu_initializing = true;
        }
    })
}

fn cpu(target: f64) -> MetricSpec {
    MetricSpec::new(
        "cpu",
        MetricKind::Resource,
        MetricTarget::Utilization(target),
    )
}

/// Per-pod samples; pod `i` gets `levels[i]` times `scale`.
fn per_pod(levels: &[f64], scale: f64) -> Reading {
    Reading::PerPod(
        levels
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("p{i}"), l * scale))
            .collect(),
    )
}

fn cpu_levels(levels: &[f64]) -> Reading {
    per_pod(levels, 1.0)
}

/// A custom metric's levels, given in milli-units as upstream does.
fn milli_levels(levels: &[f64]) -> Reading {
    per_pod(levels, 0.001)
}

fn qps(kind: MetricKind, target: MetricTarget) -> MetricSpec {
    MetricSpec::new("qps", kind, target)
}

fn single_milli(v: f64) -> Reading {
    Reading::Single(v / 1000.0)
}

fn rules(policies: Vec<RatePolicy>, window: u32) -> ScalingRules {
    ScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some(SelectPolicy::Max),
        policies: Some(policies),
        tolerance: None,
    }
}

fn percent(value: u32, period_seconds: u32) -> RatePolicy {
    RatePolicy {
        kind: RatePolicyKind::Percent,
        value,
        period_seconds,
    }
}

fn run_all(cases: Vec<Case>) -> usize {
    let count = cases.len();
    let failures: Vec<String> = cases.into_iter().filter_map(|c| c.run().err()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    count
}

#[test]
fn resource_cpu_cases() {
    let up_levels = [300.0, 500.0, 700.0];
    let down_levels = [100.0, 300.0, 500.0, 250.0, 250.0];
    let n = run_all(vec![
        Case::new("TestScaleUp", 2, 6, 3)
            .metric(cpu(30.0), cpu_levels(&up_levels))
            .pods(n_pods(3))
            .expect(5, status_ok()),
        Case::new("TestScaleUpContainer (container1's share)", 2, 6, 3)
            .metric(cpu(30.0), per_pod(&up_levels, 0.5))
            .pods(pods(&[0.5, 0.5, 0.5]))
            .expect(5, status_ok()),
        Case::new("TestScaleUpUnreadyLessScale", 2, 6, 3)
            .metric(cpu(30.0), cpu_levels(&up_levels))
            .pods(unready(n_pods(3), &[0]))
            .expect(4, status_ok()),
        Case::new("TestScaleUpHotCpuLessScale", 2, 6, 3)
            .metric(cpu(30.0), cpu_levels(&up_levels))
            .pods(hot(n_pods(3), &[0]))
            .expect(4, status_ok()),
        Case::new("TestScaleUpUnreadyNoScale", 2, 6, 3)
            .metric(cpu(30.0), cpu_levels(&[400.0, 500.0, 700.0]))
            .pods(unready(n_pods(3), &[1, 2]))
            .expect(3, no_change()),
        Case::new("TestScaleUpHotCpuNoScale", 2, 6, 3)
            .metric(cpu(30.0), cpu_levels(&[400.0, 500.0, 700.0]))
            .pods(hot(unready(n_pods(3), &[1, 2]), &[1, 2]))
            .expect(3, no_change()),
        Case::new("TestScaleUpIgnoresFailedPods", 2, 6, 2)
            .metric(cpu(30.0), cpu_levels(&[500.0, 700.0]))
            .pods(with(unready(n_pods(4), &[2, 3]), |i, p| {
                if i >= 2 {
                    p.phase = PodPhase::Failed;
                }
            }))
            .expect(4, status_ok()),
        Case::new("TestScaleUpIgnoresDeletionPods", 2, 6, 2)
            .metric(cpu(30.0), cpu_levels(&[500.0, 700.0]))
            .pods(with(unready(n_pods(4), &[2, 3]), |i, p| {
                p.deleting = i >= 2
            }))
            .expect(4, status_ok()),
        Case::new("TestScaleDown", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&down_levels))
            .pods(n_pods(5))
            .empty_history()
            .expect(3, status_ok()),
        Case::new(
            "TestScaleDownContainerResource (container2's share)",
            2,
            6,
            5,
        )
        .metric(cpu(50.0), per_pod(&down_levels, 0.5))
        .pods(pods(&[0.5; 5]))
        .empty_history()
        .expect(3, status_ok()),
        Case::new("TestScaleDownIncludeUnreadyPods", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&down_levels))
            .pods(unready(n_pods(5), &[3, 4]))
            .empty_history()
            .expect(2, status_ok()),
        Case::new("TestScaleDownIgnoreHotCpuPods", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&down_levels))
            .pods(hot(n_pods(5), &[3, 4]))
            .empty_history()
            .expect(2, status_ok()),
        Case::new("TestScaleDownIgnoresFailedPods", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&down_levels))
            .pods(with(unready(n_pods(7), &[5, 6]), |i, p| {
                if i >= 5 {
                    p.phase = PodPhase::Failed;
                }
            }))
            .empty_history()
            .expect(3, status_ok()),
        Case::new("TestScaleDownIgnoresDeletionPods", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&down_levels))
            .pods(with(unready(n_pods(7), &[5, 6]), |i, p| {
                p.deleting = i >= 5
            }))
            .empty_history()
            .expect(3, status_ok()),
        Case::new("TestMinReplicas", 2, 5, 3)
            .metric(cpu(90.0), cpu_levels(&[10.0, 95.0, 10.0]))
            .pods(pods(&[0.9, 1.0, 1.1]))
            .empty_history()
            .expect(2, ok_with(&[(C::ScalingLimited, true, R::TooFewReplicas)])),
        Case::new("TestMinReplicasDesiredZero", 2, 5, 3)
            .metric(cpu(90.0), cpu_levels(&[0.0, 0.0, 0.0]))
            .pods(pods(&[0.9, 1.0, 1.1]))
            .empty_history()
            .expect(2, ok_with(&[(C::ScalingLimited, true, R::TooFewReplicas)])),
        Case::new("TestTooFewReplicas", 3, 5, 2)
            .metric(cpu(90.0), cpu_levels(&[]))
            .expect(3, vec![(C::AbleToScale, true, R::SucceededRescale)]),
        Case::new("TestTooManyReplicas", 3, 5, 10)
            .metric(cpu(90.0), cpu_levels(&[]))
            .expect(5, vec![(C::AbleToScale, true, R::SucceededRescale)]),
        Case::new("TestMaxReplicas", 2, 5, 3)
            .metric(cpu(90.0), cpu_levels(&[8000.0, 9500.0, 1000.0]))
            .pods(pods(&[0.9, 1.0, 1.1]))
            .expect(5, ok_with(&[(C::ScalingLimited, true, R::TooManyReplicas)])),
        Case::new("TestSuperfluousMetrics", 2, 6, 4)
            .metric(
                cpu(100.0),
                cpu_levels(&[4000.0, 9500.0, 3000.0, 7000.0, 3200.0, 2000.0]),
            )
            .pods(n_pods(4))
            .expect(6, ok_with(&[(C::ScalingLimited, true, R::TooManyReplicas)])),
        Case::new("TestMissingMetrics", 2, 6, 4)
            .metric(cpu(100.0), cpu_levels(&[400.0, 95.0]))
            .pods(n_pods(4))
            .empty_history()
            .expect(3, status_ok()),
        Case::new("TestMissingReports", 1, 5, 4)
            .metric(cpu(50.0), cpu_levels(&[200.0]))
            .pods(pods(&[0.2]))
            .empty_history()
            .expect(2, status_ok()),
        Case::new("TestMoreReplicasThanSpecNoScale", 1, 8, 4)
            .metric(cpu(50.0), cpu_levels(&[500.0; 5]))
            .pods(n_pods(5))
            .expect(4, no_change()),
        Case::new("TestScaleUpRCImmediately", 2, 6, 1)
            .metric(cpu(50.0), cpu_levels(&[0.0; 4]))
            .pods(n_pods(4))
            .expect(2, vec![(C::AbleToScale, true, R::SucceededRescale)]),
        Case::new("TestScaleDownRCImmediately", 2, 5, 6)
            .metric(cpu(50.0), cpu_levels(&[8000.0, 9500.0, 1000.0]))
            .pods(pods(&[0.9, 1.0, 1.1]))
            .expect(5, vec![(C::AbleToScale, true, R::SucceededRescale)]),
    ]);
    assert_eq!(n, 25);
}

#[test]
fn pods_object_and_external_cases() {
    use MetricKind::{External, Object, Pods};
    use MetricTarget::{AverageValue, Value};
    let n = run_all(vec![
        Case::new("TestScaleUpCM", 2, 6, 3)
            .metric(
                qps(Pods, AverageValue(15.0)),
                milli_levels(&[20000.0, 10000.0, 30000.0]),
            )
            .pods(n_pods(3))
            .expect(4, status_ok()),
        Case::new("TestScaleUpCMUnreadyAndHotCpuNoLessScale", 2, 6, 3)
            .metric(
                qps(Pods, AverageValue(15.0)),
                milli_levels(&[50000.0, 10000.0, 30000.0]),
            )
            .pods(hot(unready(n_pods(3), &[2]), &[2]))
            .expect(6, status_ok()),
        Case::new("TestScaleUpCMUnreadyandCpuHot", 2, 6, 3)
            .metric(
                qps(Pods, AverageValue(15.0)),
                milli_levels(&[50000.0, 15000.0, 30000.0]),
            )
            .pods(hot(unready(n_pods(3), &[0, 2]), &[0, 2]))
            .expect(6, ok_with(&[(C::ScalingLimited, true, R::TooManyReplicas)])),
        Case::new("TestScaleUpHotCpuNoScaleWouldScaleDown", 2, 6, 3)
            .metric(
                qps(Pods, AverageValue(15.0)),
                milli_levels(&[50000.0, 15000.0, 30000.0]),
            )
            .pods(hot(n_pods(3), &[0, 2]))
            .expect(6, ok_with(&[(C::ScalingLimited, true, R::TooManyReplicas)])),
        Case::new("TestScaleUpCMObject", 2, 6, 3)
            .metric(qps(Object, Value(15.0)), single_milli(20000.0))
            .pods(n_pods(3))
            .expect(4, status_ok()),
        Case::new("TestScaleUpPerPodCMObject", 2, 6, 3)
            .metric(qps(Object, AverageValue(10.0)), single_milli(40000.0))
            .pods(n_pods(3))
            .expect(4, status_ok()),
        Case::new("TestScaleUpCMExternal", 2, 6, 3)
            .metric(qps(External, Value(6.666)), single_milli(8600.0))
            .pods(n_pods(3))
            .expect(4, status_ok()),
        Case::new("TestScaleUpPerPodCMExternal", 2, 6, 3)
            .metric(qps(External, AverageValue(2.222)), single_milli(8600.0))
            .pods(n_pods(3))
            .expect(4, status_ok()),
        Case::new("TestScaleDownCM", 2, 6, 5)
            .metric(qps(Pods, AverageValue(20.0)), milli_levels(&[12000.0; 5]))
            .pods(n_pods(5))
            .empty_history()
            .expect(3, status_ok()),
        Case::new("TestScaleDownCMObject", 2, 6, 5)
            .metric(qps(Object, Value(20.0)), single_milli(12000.0))
            .pods(n_pods(5))
            .empty_history()
            .expect(3, status_ok()),
        Case::new("TestScaleDownPerPodCMObject", 2, 6, 5)
            .metric(qps(Object, AverageValue(20.0)), single_milli(60000.0))
            .pods(n_pods(5))
            .empty_history()
            .expect(3, status_ok()),
        Case::new("TestScaleDownCMExternal", 2, 6, 5)
            .metric(qps(External, Value(14.4)), single_milli(8600.0))
            .pods(n_pods(5))
            .empty_history()
            .expect(3, status_ok()),
        Case::new("TestScaleDownPerPodCMExternal", 2, 6, 5)
            .metric(qps(External, AverageValue(3.0)), single_milli(8600.0))
            .pods(n_pods(5))
            .empty_history()
            .expect(3, status_ok()),
    ]);
    assert_eq!(n, 13);
}

#[test]
fn behavior_and_stabilization_cases() {
    let down_levels = [100.0, 300.0, 500.0, 250.0, 250.0];
    let up = |policies, window| Behavior {
        scale_up: Some(rules(policies, window)),
        scale_down: None,
    };
    let n = run_all(vec![
        // A new autoscaler records {current, now}: it does not scale down at once.
        Case::new("TestScaleDownStabilizeInitialSize", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&down_levels))
            .pods(n_pods(5))
            .expect(5, no_change_with(R::ScaleDownStabilized)),
        Case::new("TestStabilizeDownscale", 1, 5, 4)
            .metric(cpu(100.0), cpu_levels(&[50.0, 50.0, 50.0]))
            .pods(pods(&[0.1, 0.1, 0.1]))
            .history(&[(10, 600.0), (4, 60.0)])
            .expect(4, no_change_with(R::ScaleDownStabilized)),
        Case::new("TestScaleDownWithScalingRules", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&down_levels))
            .pods(n_pods(5))
            .behavior(up(vec![percent(100, 15)], 30))
            .empty_history()
            .expect(3, status_ok()),
        Case::new("TestUpscaleCap", 1, 100, 3)
            .metric(cpu(10.0), cpu_levels(&[100.0, 200.0, 300.0]))
            .pods(pods(&[0.1, 0.1, 0.1]))
            .behavior(up(vec![percent(700, 60)], 0))
            .expect(24, ok_with(&[(C::ScalingLimited, true, R::ScaleUpLimit)])),
        Case::new("TestUpscaleCapGreaterThanMaxReplicas", 1, 20, 3)
            .metric(cpu(10.0), cpu_levels(&[100.0, 200.0, 300.0]))
            .pods(pods(&[0.1, 0.1, 0.1]))
            .behavior(up(vec![percent(700, 60)], 0))
            .expect(
                20,
                ok_with(&[(C::ScalingLimited, true, R::TooManyReplicas)]),
            ),
        Case::new("TestNoBackoffUpscaleCM", 1, 5, 3)
            .metric(
                qps(MetricKind::Pods, MetricTarget::AverageValue(15.0)),
                milli_levels(&[20000.0, 10000.0, 30000.0]),
            )
            .pods(n_pods(3))
            .expect(4, status_ok()),
        Case::new("TestNoBackoffUpscaleCMNoBackoffCpu", 1, 5, 3)
            .metric(cpu(10.0), cpu_levels(&[20000.0, 10000.0, 30000.0]))
            .metric(
                qps(MetricKind::Pods, MetricTarget::AverageValue(15.0)),
                milli_levels(&[20000.0, 10000.0, 30000.0]),
            )
            .pods(n_pods(3))
            .expect(5, ok_with(&[(C::ScalingLimited, true, R::TooManyReplicas)])),
    ]);
    assert_eq!(n, 7);
}

fn no_change_with(reason: R) -> Conditions {
    ok_with(&[(C::AbleToScale, true, reason)])
}

#[test]
fn invalid_metric_and_condition_cases() {
    use MetricKind::{External, Object, Pods};
    use MetricTarget::{AverageValue, Value};
    // Upstream's `CheddarCheese` metric type: here a reading that does not
    // fit its metric's kind.
    let cheddar = || MetricSpec::new("cheddar", External, Value(1.0));
    let not_fitting = || Reading::PerPod(BTreeMap::new());
    let unavailable = || Reading::Unavailable("something went wrong".into());
    let mut cases = vec![
        Case::new("TestScaleUpOneMetricInvalid", 2, 6, 3)
            .metric(cpu(30.0), cpu_levels(&[300.0, 400.0, 500.0]))
            .metric(cheddar(), not_fitting())
            .pods(n_pods(3))
            .expect(4, status_ok()),
        Case::new("TestScaleUpBothMetricsEmpty", 2, 6, 3)
            .metric(cheddar(), not_fitting())
            .pods(n_pods(3))
            .expect(3, failed(R::InvalidMetricSourceType)),
        Case::new("TestConditionInvalidSourceType", 2, 6, 3)
            .metric(cheddar(), not_fitting())
            .pods(n_pods(3))
            .expect(3, failed(R::InvalidMetricSourceType)),
        Case::new("TestNoScaleDownOneMetricInvalid", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&[100.0, 300.0, 500.0, 250.0, 250.0]))
            .metric(cheddar(), not_fitting())
            .pods(n_pods(5))
            .empty_history()
            .expect(5, failed(R::InvalidMetricSourceType)),
        Case::new("TestScaleUpOneMetricEmpty", 2, 6, 3)
            .metric(cpu(30.0), cpu_levels(&[300.0, 400.0, 500.0]))
            .metric(qps(External, Value(0.1)), unavailable())
            .pods(n_pods(3))
            .expect(4, status_ok()),
        Case::new("TestNoScaleDownOneMetricEmpty", 2, 6, 5)
            .metric(cpu(50.0), cpu_levels(&[100.0, 300.0, 500.0, 250.0, 250.0]))
            .metric(qps(External, Value(1.0)), unavailable())
            .pods(n_pods(5))
            .empty_history()
            .expect(5, failed(R::FailedGetExternalMetric)),
        Case::new("TestEmptyMetrics", 2, 6, 4)
            .metric(cpu(100.0), cpu_levels(&[]))
            .pods(n_pods(4))
            .expect(4, failed(R::FailedGetResourceMetric)),
        Case::new("TestEmptyCPURequest", 1, 5, 1)
            .metric(cpu(100.0), cpu_levels(&[200.0]))
            .expect(1, failed(R::FailedGetResourceMetric)),
    ];
    // TestConditionFailedGetMetrics, one per metric kind.
    for (spec, reason) in [
        (cpu(10.0), R::FailedGetResourceMetric),
        (qps(Pods, AverageValue(15.0)), R::FailedGetPodsMetric),
        (qps(Object, Value(15.0)), R::FailedGetObjectMetric),
        (qps(External, Value(0.3)), R::FailedGetExternalMetric),
    ] {
        cases.push(
            Case::new("TestConditionFailedGetMetrics", 1, 100, 3)
                .metric(spec, unavailable())
                .pods(pods(&[0.1, 0.1, 0.1]))
                .expect(3, failed(reason)),
        );
    }
    // An invalid metric with an unchanged proposal still passes through
    // stabilization (upstream only refuses a proposal *below* current).
    cases.push(
        Case::new("invalid metric, proposal equal to current", 2, 6, 3)
            .metric(cpu(50.0), cpu_levels(&[500.0, 500.0, 500.0]))
            .metric(qps(External, Value(1.0)), unavailable())
            .pods(n_pods(3))
            .expect(3, no_change()),
    );
    let n = run_all(cases);
    assert_eq!(n, 13);
}

#[test]
fn scale_to_zero_cases() {
    use MetricKind::{External, Object};
    use MetricTarget::Value;
    let n = run_all(vec![
        Case::new("TestZeroReplicas", 3, 5, 0)
            .metric(cpu(90.0), cpu_levels(&[]))
            .expect(0, failed(R::ScalingDisabled)),
        Case::new("TestManualScaleToZeroDisablesHPA", 1, 6, 0)
            .metric(cpu(50.0), cpu_levels(&[]))
            .expect(0, failed(R::ScalingDisabled)),
        Case::new("TestScaleUpFromZeroCMObject", 0, 6, 0)
            .metric(qps(Object, Value(15.0)), single_milli(20000.0))
            .expect(2, status_ok()),
        Case::new("TestScaleUpFromZeroIgnoresToleranceCMObject", 0, 6, 0)
            .metric(qps(Object, Value(1.0)), single_milli(1000.0))
            .expect(1, status_ok()),
        Case::new("TestScaleDownToZeroCMObject", 0, 6, 5)
            .metric(qps(Object, Value(20.0)), single_milli(0.0))
            .pods(n_pods(5))
            .empty_history()
            .expect(0, status_ok()),
        Case::new("TestScaleDownToZeroCMExternal", 0, 6, 5)
            .metric(qps(External, Value(14.4)), single_milli(0.0))
            .pods(n_pods(5))
            .empty_history()
            .expect(0, status_ok()),
        Case::new("staying at zero while the queue is empty", 0, 6, 0)
            .metric(qps(External, Value(10.0)), single_milli(0.0))
            .expect(0, no_change()),
    ]);
    assert_eq!(n, 7);
}

#[test]
fn tolerance_cases() {
    use MetricKind::{External, Object, Pods};
    use MetricTarget::{AverageValue, Value};
    let tolerant = |up: Option<f64>, down: Option<f64>| Behavior {
        scale_up: up.map(|t| ScalingRules {
            tolerance: Some(t),
            ..ScalingRules::default()
        }),
        scale_down: down.map(|t| ScalingRules {
            tolerance: Some(t),
            ..ScalingRules::default()
        }),
    };
    let requests = [400u32, 200, 310, 290, 302, 298, 301, 299, 300, 300];
    let computed = || {
        pods(
            &requests
                .iter()
                .map(|m| f64::from(*m) / 1000.0)
                .collect::<Vec<_>>(),
        )
    };
    let n = run_all(vec![
        Case::new("TestTolerance", 1, 5, 3)
            .metric(cpu(100.0), cpu_levels(&[1010.0, 1030.0, 1020.0]))
            .pods(pods(&[0.9, 1.0, 1.1]))
            .expect(3, no_change()),
        Case::new("TestToleranceCM", 1, 5, 3)
            .metric(
                qps(Pods, AverageValue(20.0)),
                milli_levels(&[20000.0, 20001.0, 21000.0]),
            )
            .pods(n_pods(3))
            .expect(3, no_change()),
        Case::new("TestToleranceCMObject", 1, 5, 3)
            .metric(qps(Object, Value(20.0)), single_milli(20050.0))
            .pods(n_pods(3))
            .expect(3, no_change()),
        Case::new("TestToleranceCMExternal", 2, 6, 4)
            .metric(qps(External, Value(8.666)), single_milli(8600.0))
            .pods(n_pods(4))
            .expect(4, no_change()),
        Case::new("TestTolerancePerPodCMObject", 2, 6, 4)
            .metric(qps(Object, AverageValue(2.2)), single_milli(8600.0))
            .pods(n_pods(4))
            .expect(4, no_change()),
        Case::new("TestTolerancePerPodCMExternal", 2, 6, 4)
            .metric(qps(External, AverageValue(2.2)), single_milli(8600.0))
            .pods(n_pods(4))
            .expect(4, no_change()),
        Case::new("TestConfigurableTolerance: scale-up tolerance 1 %", 1, 5, 3)
            .metric(cpu(100.0), cpu_levels(&[1010.0, 1030.0, 1020.0]))
            .pods(pods(&[0.9, 1.0, 1.1]))
            .behavior(tolerant(Some(0.01), None))
            .expect(4, status_ok()),
        Case::new(
            "TestConfigurableTolerance: scale-down tolerance 90 %",
            1,
            5,
            3,
        )
        .metric(cpu(100.0), cpu_levels(&[300.0, 300.0, 300.0]))
        .pods(n_pods(3))
        .behavior(tolerant(None, Some(0.9)))
        .expect(3, no_change()),
        Case::new("TestConfigurableTolerance: no rules", 1, 5, 3)
            .metric(cpu(100.0), cpu_levels(&[1010.0, 1030.0, 1020.0]))
            .pods(pods(&[0.9, 1.0, 1.1]))
            .expect(3, no_change()),
        Case::new(
            "TestComputedToleranceAlgImplementation: outside",
            1,
            1000,
            10,
        )
        .metric(cpu(56.0), cpu_levels(&[150.0; 10]))
        .pods(computed())
        .empty_history()
        .expect(9, status_ok()),
        Case::new(
            "TestComputedToleranceAlgImplementation: inside",
            1,
            1000,
            10,
        )
        .metric(cpu(55.0), cpu_levels(&[150.0; 10]))
        .pods(computed())
        .empty_history()
        .expect(10, no_change()),
        // Per-metric tolerance (KEP-4951's band, on one metric only) wins
        // over the behavior's and the policy's.
        Case::new("a metric's own tolerance", 1, 5, 3)
            .metric(
                MetricSpec {
                    tolerance: Some(perf_scaling::ToleranceOverride {
                        up: Some(0.01),
                        down: None,
                    }),
                    ..cpu(100.0)
                },
                cpu_levels(&[1010.0, 1030.0, 1020.0]),
            )
            .pods(pods(&[0.9, 1.0, 1.1]))
            .behavior(tolerant(Some(0.5), None))
            .expect(4, status_ok()),
        // Exactly at +10 % (55 % against 50 %): hold, as Kubernetes 1.33+.
        Case::new("the tolerance edge", 1, 5, 2)
            .metric(cpu(50.0), cpu_levels(&[550.0, 550.0]))
            .pods(n_pods(2))
            .expect(2, no_change()),
    ]);
    assert_eq!(n, 13);
}

/// CPU readiness rules follow the metric's kind: a `pods` metric named
/// `cpu` counts an unready pod's sample; a `resource` cpu metric with an
/// `average_value` target (upstream's raw resource path) sets it aside.
#[test]
fn cpu_readiness_rules_follow_the_resource_kind() {
    let levels = [900.0, 100.0, 100.0];
    let raw = |kind| {
        Case::new("raw cpu", 1, 10, 3)
            .metric(
                MetricSpec::new("cpu", kind, MetricTarget::AverageValue(300.0)),
                cpu_levels(&levels),
            )
            .pods(unready(n_pods(3), &[0]))
    };
    // Resource: the unready pod's 900 is set aside; 100 against 300 → 1.
    let mut hpa_policy_conditions = raw(MetricKind::Resource)
        .empty_history()
        .expect(1, status_ok());
    hpa_policy_conditions.behavior = Some(Behavior::default());
    hpa_policy_conditions.run().unwrap();
    // Pods kind: every sample counts; average 366 against 300 → 4.
    raw(MetricKind::Pods)
        .empty_history()
        .expect(4, status_ok())
        .run()
        .unwrap();
}

/// The history is a value: saved, restored, and "none yet" told apart from
/// "empty".
#[test]
fn history_survives_a_restart_and_none_differs_from_empty() {
    let policy = ScalingPolicy::builder(2, 6)
        .metrics(vec![cpu(50.0)])
        .behavior(Behavior::default())
        .build()
        .unwrap();
    let low = Observation {
        pods: n_pods(5),
        readings: [(
            "cpu".to_owned(),
            cpu_levels(&[100.0, 300.0, 500.0, 250.0, 250.0]),
        )]
        .into(),
    };
    // Fresh: none yet → records {5, now} → holds at 5.
    let mut fresh = Autoscaler::new(policy.clone()).unwrap();
    assert_eq!(fresh.history().recommendations, None);
    assert_eq!(fresh.decide(NOW, 5, &low).to, 5);
    // Empty: nothing to hold on to → 3.
    let empty = History {
        recommendations: Some(Vec::new()),
        ..History::default()
    };
    let mut from_empty = Autoscaler::with_history(policy.clone(), empty).unwrap();
    assert_eq!(from_empty.decide(NOW, 5, &low).to, 3);
    // Saved and restored after a "restart", the window keeps holding: an
    // engine that forgot would record {5, later} and hold at 5 too, so the
    // restored one is checked on what it remembers: a high recommendation.
    let json = serde_json::to_string(&fresh.history()).unwrap();
    let restored: History = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, fresh.history());
    let mut again = Autoscaler::with_history(policy.clone(), restored).unwrap();
    assert_eq!(again.decide(NOW + 120.0, 3, &low).to, 3);
    // Scale events restored: the rate limit still counts a recent scale-up.
    let fast_up = ScalingPolicyBuilder::from(policy.clone())
        .behavior(Some(Behavior {
            scale_up: Some(ScalingRules {
                policies: Some(vec![RatePolicy {
                    kind: RatePolicyKind::Pods,
                    value: 1,
                    period_seconds: 60,
                }]),
                ..ScalingRules::default()
            }),
            scale_down: None,
        }))
        .build()
        .unwrap();
    let high = Observation {
        pods: n_pods(3),
        readings: [("cpu".to_owned(), cpu_levels(&[900.0, 900.0, 900.0]))].into(),
    };
    let mut a = Autoscaler::new(fast_up.clone()).unwrap();
    assert_eq!(a.decide(NOW, 2, &high).to, 3);
    let mut b = Autoscaler::with_history(fast_up.clone(), a.history()).unwrap();
    assert_eq!(
        b.decide(NOW + 10.0, 3, &high).to,
        3,
        "1 pod per 60 s already used"
    );
    let mut forgot = Autoscaler::new(fast_up).unwrap();
    assert_eq!(forgot.decide(NOW + 10.0, 3, &high).to, 4);
    // A hostile history is refused, naming the field.
    let bad = History {
        recommendations: Some(vec![TimedReplicas {
            at_s: f64::NAN,
            replicas: 1,
        }]),
        ..History::default()
    };
    let err = Autoscaler::with_history(fast_up_policy(), bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("history.recommendations[0].at_s"), "{err}");
    let huge = History {
        scale_up_events: vec![
            TimedReplicas {
                at_s: 0.0,
                replicas: 1
            };
            perf_scaling::MAX_HISTORY_ENTRIES + 1
        ],
        ..History::default()
    };
    let err = Autoscaler::with_history(fast_up_policy(), huge)
        .unwrap_err()
        .to_string();
    assert!(err.contains("history.scale_up_events"), "{err}");
}

fn fast_up_policy() -> ScalingPolicy {
    ScalingPolicy::builder(1, 6)
        .metrics(vec![cpu(50.0)])
        .build()
        .unwrap()
}

/// Scale to zero is accepted only where upstream accepts it.
#[test]
fn min_replicas_zero_needs_an_object_or_external_metric() {
    // Built valid with one replica at least, then set to zero (fields stay public).
    let base = |metrics| {
        let mut p = ScalingPolicy::builder(1, 5)
            .metrics(metrics)
            .build()
            .unwrap();
        p.min_replicas = 0;
        p
    };
    let err = base(vec![cpu(50.0)]).validate().unwrap_err().to_string();
    assert!(err.starts_with("min_replicas"), "{err}");
    assert!(err.contains("object or external"), "{err}");
    base(vec![
        cpu(50.0),
        qps(MetricKind::External, MetricTarget::Value(10.0)),
    ])
    .validate()
    .unwrap();
    // Tolerances: any number at least 0 (upstream's range), named when bad.
    let mut p = base(vec![qps(MetricKind::Object, MetricTarget::Value(1.0))]);
    p.tolerance.down = 2.0;
    p.validate().unwrap();
    p.behavior = Some(Behavior {
        scale_up: Some(ScalingRules {
            tolerance: Some(-0.1),
            ..ScalingRules::default()
        }),
        scale_down: None,
    });
    let err = p.validate().unwrap_err().to_string();
    assert!(err.starts_with("behavior.scale_up.tolerance"), "{err}");
}

/// Hostile or broken inputs: a NaN or infinite reading is an invalid
/// metric (never "0 replicas"), a stale restored history still holds the
/// current size, a clock out of range changes nothing, and a per-metric
/// tolerance falls back per direction.
#[test]
fn bad_readings_stale_history_and_bad_clocks_do_not_move_the_workload() {
    use MetricKind::External;
    use MetricTarget::{AverageValue, Value};
    let n = run_all(vec![
        Case::new("a NaN sample", 1, 10, 5)
            .metric(
                qps(MetricKind::Pods, AverageValue(10.0)),
                per_pod(&[1.0, 1.0, f64::NAN, 1.0, 1.0], 1.0),
            )
            .pods(n_pods(5))
            .empty_history()
            .expect(5, failed(R::FailedGetPodsMetric)),
        Case::new("an infinite value", 0, 10, 5)
            .metric(qps(External, Value(10.0)), Reading::Single(f64::INFINITY))
            .pods(n_pods(5))
            .empty_history()
            .expect(5, failed(R::FailedGetExternalMetric)),
        Case::new("NaN beside a good metric that scales up", 1, 10, 2)
            .metric(cpu(50.0), cpu_levels(&[900.0, 900.0]))
            .metric(qps(External, Value(10.0)), Reading::Single(f64::NAN))
            .pods(n_pods(2))
            .expect(4, status_ok()),
    ]);
    assert_eq!(n, 3);

    // Restored from a store last written 10 minutes ago at 20 replicas:
    // the first decision still records {current, now} and holds.
    let policy = ScalingPolicy::builder(1, 20)
        .metrics(vec![cpu(50.0)])
        .build()
        .unwrap();
    let stale = History {
        recommendations: Some(vec![TimedReplicas {
            at_s: NOW - 600.0,
            replicas: 20,
        }]),
        ..History::default()
    };
    let low = Observation {
        pods: n_pods(20),
        readings: [("cpu".to_owned(), cpu_levels(&[50.0; 20]))].into(),
    };
    let mut restarted = Autoscaler::with_history(policy.clone(), stale).unwrap();
    assert_eq!(restarted.decide(NOW, 20, &low).to, 20);

    // Times in the future (a clock stepped back, a corrupted store) are
    // taken as now: they hold for one window, not for ever.
    let future = History {
        recommendations: Some(vec![TimedReplicas {
            at_s: NOW + 1e9,
            replicas: 20,
        }]),
        ..History::default()
    };
    let mut a = Autoscaler::with_history(policy.clone(), future).unwrap();
    assert_eq!(a.decide(NOW, 20, &low).to, 20);
    assert_eq!(
        a.decide(NOW + 299.0, 20, &low).to,
        20,
        "taken as NOW, it holds a window"
    );
    assert!(a.decide(NOW + 301.0, 20, &low).to < 20, "then it lets go");

    // A clock out of range: no change, nothing remembered.
    let mut b = Autoscaler::new(policy.clone()).unwrap();
    for clock in [f64::NAN, -1.0, 1e20] {
        let d = b.decide(clock, 20, &low);
        assert_eq!(d.to, 20);
        assert!(d.reason.contains("clock"), "{}", d.reason);
    }
    assert_eq!(b.history().recommendations, None);

    // The same condition type twice in a stored history is refused.
    let dup = History {
        conditions: vec![
            perf_scaling::HpaCondition {
                kind: C::AbleToScale,
                status: true,
                reason: R::ReadyForNewScale,
                message: String::new(),
            };
            2
        ],
        ..History::default()
    };
    let err = Autoscaler::with_history(policy.clone(), dup)
        .unwrap_err()
        .to_string();
    assert!(err.contains("history.conditions[1].type"), "{err}");

    // A metric's own tolerance for one direction keeps the policy's other.
    let mut p = policy;
    p.tolerance = perf_scaling::Tolerance::both(0.3);
    p.metrics[0].tolerance = Some(perf_scaling::ToleranceOverride {
        up: Some(0.05),
        down: None,
    });
    let t = p.tolerance_for(&p.metrics[0]);
    assert_eq!((t.up, t.down), (0.05, 0.3));
}
