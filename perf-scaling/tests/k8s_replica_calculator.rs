//! Kubernetes' own replica-calculator tests
//! (`pkg/controller/podautoscaler/replica_calculator_test.go`), ported case
//! by case: same pods, same samples, same targets, same expected replicas,
//! utilization and raw value. Each pod there has two containers, each with
//! the request and the usage given (in milli-units), so a pod's request is
//! 2 × the request and its usage 2 × the level.
// The Go original converts with `int64(...)` and `int32(...)`, which truncate
// like `as`: the port keeps those conversions as written.
#![allow(clippy::cast_possible_truncation)]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use perf_scaling::{
    Pod, PodPhase, Tolerance, average_value_replicas, pod_average_replicas, ready_pods,
    resource_utilization_replicas, value_replicas,
};

const CONTAINERS: f64 = 2.0;

/// One case's pods.
#[derive(Default, Clone)]
struct Pods {
    count: usize,
    readiness: Vec<bool>,
    phases: Vec<PodPhase>,
    deleting: Vec<bool>,
    hot_cpu: Vec<bool>,
    /// Per-container request in cores (`None`: no request at all).
    requests: Option<Vec<f64>>,
}

impl Pods {
    fn n(count: usize) -> Self {
        Self {
            count,
            requests: Some(vec![1.0; count]),
            ..Self::default()
        }
    }
    fn ready(mut self, r: &[bool]) -> Self {
        self.readiness = r.to_vec();
        self
    }
    fn phases(mut self, p: &[PodPhase]) -> Self {
        self.phases = p.to_vec();
        self
    }
    fn deleting(mut self, d: &[bool]) -> Self {
        self.deleting = d.to_vec();
        self
    }
    fn hot(mut self, h: &[bool]) -> Self {
        self.hot_cpu = h.to_vec();
        self
    }
    fn requests(mut self, r: Option<Vec<f64>>) -> Self {
        self.requests = r;
        self
    }
    fn build(&self) -> Vec<Pod> {
        (0..self.count.max(self.phases.len()))
            .map(|i| Pod {
                name: format!("test-pod-{i}"),
                phase: self.phases.get(i).copied().unwrap_or(PodPhase::Running),
                ready: self.readiness.get(i).copied().unwrap_or(true),
                deleting: self.deleting.get(i).copied().unwrap_or(false),
                cpu_initializing: self.hot_cpu.get(i).copied().unwrap_or(false),
                request: self
                    .requests
                    .as_ref()
                    .and_then(|r| r.get(i))
                    .map(|cores| cores * 1000.0 * CONTAINERS),
            })
            .collect()
    }
}

fn cpu_levels(levels: &[i64]) -> BTreeMap<String, f64> {
    levels
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("test-pod-{i}"), *l as f64 * CONTAINERS))
        .collect()
}

/// Custom metric levels: upstream gives them in milli-units; our API takes
/// the metric's unit.
fn pod_levels(levels: &[i64]) -> BTreeMap<String, f64> {
    levels
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("test-pod-{i}"), *l as f64 / 1000.0))
        .collect()
}

/// An observed figure back in milli-units.
fn to_milli(v: f64) -> i64 {
    (v * 1000.0).round() as i64
}

/// The same, saturating at `i64::MAX` as upstream's usage does.
fn to_milli_saturating(v: f64) -> i64 {
    let m = (v * 1000.0).round();
    if m >= i64::MAX as f64 {
        i64::MAX
    } else {
        m as i64
    }
}

/// A container-resource metric (upstream `container: "containerN"`): one
/// container's request and usage, not doubled; `None` is a pod without a
/// sample for that container.
fn container_cpu(
    current: u32,
    pods: Pods,
    levels: &[Option<i64>],
    target: i64,
    expect: (u32, i64, i64),
) {
    let mut built = pods.build();
    for p in &mut built {
        p.request = p.request.map(|r| r / CONTAINERS);
    }
    let metrics: BTreeMap<String, f64> = levels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.map(|l| (format!("test-pod-{i}"), l as f64)))
        .collect();
    let r =
        resource_utilization_replicas(current, target as f64, &built, &metrics, TOL, true).unwrap();
    assert_eq!(
        (r.replicas, r.observed as i64, r.raw_average.unwrap() as i64),
        expect
    );
}

const TOL: Tolerance = Tolerance { up: 0.1, down: 0.1 };

/// A CPU case: expected replicas, utilization and raw value (per pod, both containers).
fn cpu(current: u32, pods: Pods, levels: &[i64], target: i64, expect: (u32, i64, i64)) {
    cpu_tol(TOL, current, pods, levels, target, expect);
}

fn cpu_tol(
    tol: Tolerance,
    current: u32,
    pods: Pods,
    levels: &[i64],
    target: i64,
    expect: (u32, i64, i64),
) {
    let r = resource_utilization_replicas(
        current,
        target as f64,
        &pods.build(),
        &cpu_levels(levels),
        tol,
        true,
    )
    .unwrap();
    assert_eq!(
        (r.replicas, r.observed as i64, r.raw_average.unwrap() as i64),
        expect
    );
}

fn cpu_error(current: u32, pods: Pods, metrics: BTreeMap<String, f64>, target: i64, message: &str) {
    let err =
        resource_utilization_replicas(current, target as f64, &pods.build(), &metrics, TOL, true)
            .unwrap_err()
            .to_string();
    assert!(err.contains(message), "{err}");
}

/// A custom per-pod metric case: expected replicas and average.
fn pods_metric(current: u32, pods: Pods, levels: &[i64], target: i64, expect: (u32, i64)) {
    pods_metric_tol(TOL, current, pods, levels, target, expect);
}

fn pods_metric_tol(
    tol: Tolerance,
    current: u32,
    pods: Pods,
    levels: &[i64],
    target: i64,
    expect: (u32, i64),
) {
    let r = pod_average_replicas(
        current,
        target as f64 / 1000.0,
        &pods.build(),
        &pod_levels(levels),
        tol,
        false,
    )
    .unwrap();
    assert_eq!((r.replicas, to_milli(r.observed)), expect);
}

/// An object or external metric against a value target.
fn value(current: u32, pods: Pods, level: i64, target: i64, expect: u32) {
    value_tol(TOL, current, pods, level, target, expect);
}

fn value_tol(tol: Tolerance, current: u32, pods: Pods, level: i64, target: i64, expect: u32) {
    let r = value_replicas(
        current,
        target as f64 / 1000.0,
        level as f64 / 1000.0,
        ready_pods(&pods.build()),
        tol,
    )
    .unwrap();
    assert_eq!(r.replicas, expect);
    assert_eq!(to_milli_saturating(r.observed), level);
}

/// An object or external metric against an average-value target.
fn per_pod(current: u32, level: i64, target: i64, expect: (u32, i64)) {
    per_pod_tol(TOL, current, level, target, expect);
}

fn per_pod_tol(tol: Tolerance, current: u32, level: i64, target: i64, expect: (u32, i64)) {
    let r = average_value_replicas(current, target as f64 / 1000.0, level as f64 / 1000.0, tol)
        .unwrap();
    assert_eq!((r.replicas, to_milli_saturating(r.observed)), expect);
}

use PodPhase::{Failed, Pending, Running};
const T: bool = true;
const F: bool = false;

#[test]
fn disjoint_resources_metrics() {
    let metrics: BTreeMap<String, f64> = [("an-older-pod-name".to_owned(), 200.0)].into();
    cpu_error(
        1,
        Pods::n(1),
        metrics,
        100,
        "no metrics returned matched known pods",
    );
}

#[test]
fn scale_up() {
    cpu(3, Pods::n(3), &[300, 500, 700], 30, (5, 50, 1000));
}

#[test]
fn scale_up_unready_less_scale() {
    cpu(
        3,
        Pods::n(3).ready(&[F, T, T]),
        &[300, 500, 700],
        30,
        (4, 60, 1200),
    );
}

#[test]
fn scale_up_hot_cpu_less_scale() {
    cpu(
        3,
        Pods::n(3).hot(&[T, F, F]),
        &[300, 500, 700],
        30,
        (4, 60, 1200),
    );
}

#[test]
fn scale_up_unready_no_scale() {
    cpu(
        3,
        Pods::n(3).ready(&[T, F, F]),
        &[400, 500, 700],
        30,
        (3, 40, 800),
    );
}

#[test]
fn scale_hot_cpu_no_scale() {
    cpu(
        3,
        Pods::n(3).ready(&[T, F, F]).hot(&[F, T, T]),
        &[400, 500, 700],
        30,
        (3, 40, 800),
    );
}

#[test]
fn scale_up_ignores_failed_pods() {
    let pods = Pods::n(4)
        .ready(&[T, T, F, F])
        .phases(&[Running, Running, Failed, Failed]);
    cpu(2, pods, &[500, 700], 30, (4, 60, 1200));
}

#[test]
fn scale_up_ignores_deletion_pods() {
    let pods = Pods::n(4).ready(&[T, T, F, F]).deleting(&[F, F, T, T]);
    cpu(2, pods, &[500, 700], 30, (4, 60, 1200));
}

#[test]
fn scale_up_cm() {
    pods_metric(3, Pods::n(3), &[20000, 10000, 30000], 15000, (4, 20000));
}

#[test]
fn scale_up_cm_unready_hot_cpu_no_less_scale() {
    let pods = Pods::n(3).ready(&[T, T, F]).hot(&[F, F, T]);
    pods_metric(3, pods, &[50000, 10000, 30000], 15000, (6, 30000));
}

#[test]
fn scale_up_cm_unready_hot_cpu_scale_would_scale_down() {
    let pods = Pods::n(3).ready(&[F, T, F]).hot(&[T, F, T]);
    pods_metric(3, pods, &[50000, 15000, 30000], 15000, (7, 31666));
}

#[test]
fn scale_up_cm_object() {
    value(3, Pods::n(3), 20000, 15000, 4);
}

#[test]
fn scale_up_cm_per_pod_object() {
    per_pod(3, 20000, 5000, (4, 6667));
}

#[test]
fn scale_up_cm_object_ignores_unready_pods() {
    // 15 if unready pods were counted.
    value(3, Pods::n(3).ready(&[F, T, F]), 50000, 10000, 5);
}

#[test]
fn scale_up_cm_external() {
    // Ported as the test runs it: a per-pod metric on one pod.
    pods_metric(1, Pods::n(1), &[8600], 4400, (2, 8600));
}

#[test]
fn scale_up_cm_external_ignores_unready_pods() {
    // 6 if unready pods were counted.
    value(3, Pods::n(3).ready(&[F, T, F]), 8600, 4400, 2);
}

#[test]
fn scale_up_cm_external_no_labels() {
    pods_metric(1, Pods::n(1), &[8600], 4400, (2, 8600));
}

#[test]
fn scale_up_per_pod_cm_external() {
    per_pod(3, 8600, 2150, (4, 2867));
}

#[test]
fn scale_down() {
    cpu(5, Pods::n(5), &[100, 300, 500, 250, 250], 50, (3, 28, 560));
}

#[test]
fn scale_down_cm() {
    pods_metric(5, Pods::n(5), &[12000; 5], 20000, (3, 12000));
}

#[test]
fn scale_down_per_pod_cm_object() {
    per_pod(5, 6000, 2000, (3, 1200));
}

#[test]
fn scale_down_cm_object() {
    value(5, Pods::n(5), 12000, 20000, 3);
}

#[test]
fn scale_down_cm_external() {
    value(5, Pods::n(5), 8600, 14334, 3);
}

#[test]
fn scale_down_per_pod_cm_external() {
    per_pod(5, 8600, 2867, (3, 1720));
}

#[test]
fn scale_down_include_unready_pods() {
    cpu(
        5,
        Pods::n(5).ready(&[T, T, T, F, F]),
        &[100, 300, 500, 250, 250],
        50,
        (2, 30, 600),
    );
}

#[test]
fn scale_down_exclude_unscheduled_pods() {
    let pods = Pods::n(5)
        .ready(&[T, F, F, F, F])
        .phases(&[Running, Pending, Pending, Pending, Pending]);
    cpu(5, pods, &[100], 50, (1, 10, 200));
}

#[test]
fn scale_down_ignore_hot_cpu_pods() {
    cpu(
        5,
        Pods::n(5).hot(&[F, F, F, T, T]),
        &[100, 300, 500, 250, 250],
        50,
        (2, 30, 600),
    );
}

#[test]
fn scale_down_ignores_failed_pods() {
    let pods = Pods::n(7)
        .ready(&[T, T, T, T, T, F, F])
        .phases(&[Running, Running, Running, Running, Running, Failed, Failed]);
    cpu(5, pods, &[100, 300, 500, 250, 250], 50, (3, 28, 560));
}

#[test]
fn scale_down_ignores_deletion_pods() {
    let pods = Pods::n(7)
        .ready(&[T, T, T, T, T, F, F])
        .deleting(&[F, F, F, F, F, T, T]);
    cpu(5, pods, &[100, 300, 500, 250, 250], 50, (3, 28, 560));
}

#[test]
fn tolerance() {
    let pods = Pods::n(3).requests(Some(vec![0.9, 1.0, 1.1]));
    cpu(3, pods, &[1010, 1030, 1020], 100, (3, 102, 2040));
}

#[test]
fn tolerance_cm() {
    pods_metric(3, Pods::n(3), &[20000, 21000, 21000], 20000, (3, 20666));
}

#[test]
fn tolerance_cm_object() {
    value(3, Pods::n(3), 20666, 20000, 3);
}

#[test]
fn tolerance_per_pod_cm_object() {
    per_pod(4, 20166, 5000, (4, 5042));
}

#[test]
fn tolerance_cm_external() {
    value(3, Pods::n(3), 8600, 8888, 3);
}

#[test]
fn tolerance_per_pod_cm_external() {
    per_pod(3, 8600, 2900, (3, 2867));
}

#[test]
fn superfluous_metrics() {
    cpu(
        4,
        Pods::n(4),
        &[4000, 9500, 3000, 7000, 3200, 2000],
        100,
        (24, 587, 11750),
    );
}

#[test]
fn missing_metrics() {
    // The expected raw value is 495: numContainersPerPod * 247.5.
    cpu(4, Pods::n(4), &[400, 95], 100, (3, 24, 495));
}

#[test]
fn empty_metrics() {
    cpu_error(
        4,
        Pods::n(3),
        BTreeMap::new(),
        100,
        "no metrics returned from resource metrics API",
    );
}

#[test]
fn empty_cpu_request() {
    cpu_error(
        1,
        Pods::n(1).requests(None),
        cpu_levels(&[200]),
        100,
        "missing request for",
    );
}

#[test]
fn missing_metrics_no_change_eq() {
    cpu(2, Pods::n(2), &[1000], 100, (2, 100, 2000));
}

#[test]
fn missing_metrics_no_change_gt() {
    cpu(2, Pods::n(2), &[1900], 100, (2, 190, 3800));
}

#[test]
fn missing_metrics_no_change_lt() {
    cpu(2, Pods::n(2), &[600], 100, (2, 60, 1200));
}

#[test]
fn missing_metrics_unready_change() {
    cpu(
        3,
        Pods::n(3).ready(&[F, T, T]),
        &[100, 450],
        50,
        (3, 45, 900),
    );
}

#[test]
fn missing_metrics_hot_cpu_no_change() {
    cpu(3, Pods::n(3).hot(&[T, F, F]), &[100, 450], 50, (3, 45, 900));
}

#[test]
fn missing_metrics_unready_scale_up() {
    cpu(
        3,
        Pods::n(3).ready(&[F, T, T]),
        &[100, 2000],
        50,
        (4, 200, 4000),
    );
}

#[test]
fn missing_metrics_hot_cpu_scale_up() {
    cpu(
        3,
        Pods::n(3).ready(&[F, T, T]).hot(&[T, F, F]),
        &[100, 2000],
        50,
        (4, 200, 4000),
    );
}

#[test]
fn missing_metrics_unready_scale_down() {
    cpu(
        4,
        Pods::n(4).ready(&[F, T, T, T]),
        &[100, 100, 100],
        50,
        (3, 10, 200),
    );
}

#[test]
fn during_rolling_update_with_max_surge() {
    let pods = Pods::n(3).phases(&[Running, Running, Running]);
    cpu(2, pods, &[100, 100], 50, (2, 10, 200));
}

#[test]
fn computed_tolerance_alg_implementation() {
    let start: u32 = 10;
    let total_used: i64 = 150 * i64::from(start);
    let total_requested = 2 * total_used;
    let requested_to_used = (total_requested / total_used) as f64;
    let per_pod_requested = total_requested / i64::from(start);
    // Just outside the band: a minimal scale-down.
    let target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.01;
    let percent = (target * 100.0) as i64;
    let used_ratio = total_used as f64 / (total_requested as f64 * target);
    let final_pods = (used_ratio * f64::from(start)).ceil() as u32;
    let millis = [100, -100, 10, -10, 2, -2, 1, -1, 0, 0];
    let requests: Vec<f64> = millis
        .iter()
        .map(|d| (per_pod_requested + d) as f64 / 1000.0)
        .collect();
    let levels = vec![total_used / 10; 10];
    let pods = Pods::n(10).requests(Some(requests));
    let utilization = total_used * 100 / total_requested;
    cpu(
        start,
        pods.clone(),
        &levels,
        percent,
        (final_pods, utilization, 2 * total_used / 10),
    );
    // Just inside the band: no change.
    let target = (1.0 / (requested_to_used * (1.0 - 0.1))).abs() + 0.004;
    let percent = (target * 100.0) as i64;
    cpu(
        start,
        pods,
        &levels,
        percent,
        (start, utilization, 2 * total_used / 10),
    );
}

// ---------------------------------------------------------------------------
// Cases of the newest upstream file that were not ported before.

/// `TestReplicaCalcResourceScale`'s container-metric subtests.
#[test]
fn resource_scale_container_metrics() {
    let l = |v: &[i64]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
    // scale up: container metric
    container_cpu(3, Pods::n(3), &l(&[300, 500, 700]), 30, (5, 50, 500));
    // scale up: hot-CPU container scales less
    container_cpu(
        3,
        Pods::n(3).hot(&[T, F, F]),
        &l(&[300, 500, 700]),
        30,
        (4, 60, 600),
    );
    // scale up: failed pods ignored with missing container metric
    let failed = || {
        Pods::n(4)
            .ready(&[T, T, F, F])
            .phases(&[Running, Running, Failed, Failed])
    };
    container_cpu(
        2,
        failed(),
        &[Some(500), Some(700), None, None],
        30,
        (4, 60, 600),
    );
    // scale up: container metrics with failed pods ignored
    container_cpu(2, failed(), &l(&[500, 700]), 30, (4, 60, 600));
    // scale up: container metrics with pods being deleted ignored
    let deleting = Pods::n(4).ready(&[T, T, F, F]).deleting(&[F, F, T, T]);
    container_cpu(2, deleting, &l(&[500, 700]), 30, (4, 60, 600));
    let down = l(&[100, 300, 500, 250, 250]);
    // scale down: container metric
    container_cpu(5, Pods::n(5), &down, 50, (3, 28, 280));
    // scale down: container metric excludes unready pods
    container_cpu(
        5,
        Pods::n(5).ready(&[T, T, T, F, F]),
        &down,
        50,
        (2, 30, 300),
    );
    // scale down: container metric excludes unscheduled pods
    let unscheduled = Pods::n(5)
        .ready(&[T, F, F, F, F])
        .phases(&[Running, Pending, Pending, Pending, Pending]);
    container_cpu(5, unscheduled, &down, 50, (1, 10, 100));
    // scale down: container metric ignores hot-CPU pods
    let hot = l(&[100, 300, 500, 1000, 1000]);
    container_cpu(5, Pods::n(5).hot(&[F, F, F, T, T]), &hot, 50, (2, 30, 300));
    // scale down: container metric with failed pods ignored
    let failed7 = Pods::n(7)
        .ready(&[T, T, T, T, T, F, F])
        .phases(&[Running, Running, Running, Running, Running, Failed, Failed]);
    container_cpu(5, failed7, &down, 50, (3, 28, 280));
    // scale down: still-running pods being deleted are ignored (#83561)
    let deleting7 = Pods::n(7)
        .ready(&[T, T, T, T, T, F, F])
        .deleting(&[F, F, F, F, F, T, T]);
    container_cpu(5, deleting7, &down, 50, (3, 28, 280));
}

/// `TestReplicaCalcScaleUpOverflow`: the count saturates at `MaxInt32`.
#[test]
fn scale_up_overflow() {
    value(3, Pods::n(3), i64::MAX, 1, 2_147_483_647);
}

/// `TestExternalPerPodMetricReplicaOverflow`.
#[test]
fn external_per_pod_metric_replica_overflow() {
    per_pod(1, i64::MAX, 1, (2_147_483_647, i64::MAX));
}

/// `TestExternalPerPodMetricUsageOverflow`.
#[test]
fn external_per_pod_metric_usage_overflow() {
    per_pod(1, i64::MAX, i64::MAX, (1, i64::MAX));
}

/// `TestReplicaCalcExternalMetricUsageOverflow` (two samples summing past
/// `MaxInt64`, given summed).
#[test]
fn external_metric_usage_overflow() {
    value(3, Pods::n(3), i64::MAX, i64::MAX, 3);
}

/// `TestReplicaCalcConfigurableTolerance` (per-direction tolerances, KEP-4951).
#[test]
fn configurable_tolerance() {
    let p = || Pods::n(3).requests(Some(vec![0.9, 1.0, 1.1]));
    let t = |up, down| Tolerance { up, down };
    // Outside of a 0% tolerance
    cpu_tol(t(0.0, 0.0), 3, p(), &[909, 1010, 1111], 100, (4, 101, 2020));
    // Within a 200% scale-up tolerance
    cpu_tol(
        t(2.0, 0.1),
        3,
        p(),
        &[1890, 1910, 1900],
        100,
        (3, 190, 3800),
    );
    // Outside 8% scale-up tolerance (and superfluous scale-down tolerance)
    cpu_tol(
        t(0.08, 2.0),
        3,
        p(),
        &[1100, 1080, 1090],
        100,
        (4, 109, 2180),
    );
    // Within a 36% scale-down tolerance
    cpu_tol(t(0.1, 0.36), 3, p(), &[660, 640, 650], 100, (3, 65, 1300));
    // Outside a 34% scale-down tolerance
    cpu_tol(t(0.1, 0.34), 3, p(), &[660, 640, 650], 100, (2, 65, 1300));
}

const UP_1PCT: Tolerance = Tolerance {
    up: 0.01,
    down: 0.1,
};

#[test]
fn configurable_tolerance_cm() {
    pods_metric_tol(
        UP_1PCT,
        3,
        Pods::n(3),
        &[20000, 21000, 21000],
        20000,
        (4, 20666),
    );
}

#[test]
fn configurable_tolerance_cm_object() {
    value_tol(UP_1PCT, 3, Pods::n(3), 20666, 20000, 4);
}

#[test]
fn configurable_tolerance_per_pod_cm_object() {
    per_pod_tol(UP_1PCT, 4, 20208, 5000, (5, 5052));
}

#[test]
fn configurable_tolerance_cm_external() {
    value_tol(UP_1PCT, 3, Pods::n(3), 8900, 8800, 4);
}

#[test]
fn configurable_tolerance_per_pod_cm_external() {
    per_pod_tol(UP_1PCT, 3, 8600, 2800, (4, 2867));
}

/// `TestPlainMetricReplicaCalcMissingMetricsNoChangeEq`.
#[test]
fn plain_metric_missing_metrics_no_change_eq() {
    pods_metric(5, Pods::n(5), &[20000, 19000, 21000], 20000, (5, 20000));
}

/// `TestReplicaCalcMissingMetricsScaleDownTargetOver100`: a missing pod on
/// a way down counts at the target when the target is above 100 %.
#[test]
fn missing_metrics_scale_down_target_over_100() {
    let pods = Pods::n(4)
        .ready(&[F, T, T, T])
        .requests(Some(vec![1.0, 1.0, 2.0, 2.0]));
    cpu(4, pods, &[200, 100, 100], 300, (2, 6, 200));
}

/// `TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM`.
#[test]
fn during_rolling_update_with_max_surge_cm() {
    pods_metric(2, Pods::n(3), &[10000, 10000], 17000, (2, 10000));
}

// ---------------------------------------------------------------------------
// Deviations found by replaying upstream's rules (each failed before its fix).

/// Exactly at the tolerance edge (55 % against 50 %: ratio 1.1) nothing
/// changes, as `Tolerances.isWithin` (Kubernetes 1.33+) has it.
#[test]
fn the_tolerance_edge_is_inside_the_band() {
    cpu(2, Pods::n(2), &[550, 550], 50, (2, 55, 1100));
    // Just past it, a change.
    cpu(2, Pods::n(2), &[560, 560], 50, (3, 56, 1120));
    // At exactly -10 %, hold too.
    cpu(2, Pods::n(2), &[450, 450], 50, (2, 45, 900));
}

/// Pod-metric averages are taken in milli-units and truncated:
/// [4000, 4000, 4001] m against 3000 m averages 4000 m, ratio 1.333 → 4.
#[test]
fn pod_metric_averages_truncate_in_milli_units() {
    pods_metric(3, Pods::n(3), &[4000, 4000, 4001], 3000, (4, 4000));
}

/// With 0 replicas (scale to zero), an object or external value gives
/// `ceil(ratio)` without tolerance or ready pods.
#[test]
fn scale_from_zero_takes_the_ratio_alone() {
    value(0, Pods::n(0), 0, 1000, 0);
    value(0, Pods::n(0), 2500, 1000, 3);
    // Within what would be the band at 1 replica, still 1 from 0.
    value(0, Pods::n(0), 1050, 1000, 2);
    per_pod(0, 2500, 1000, (3, 2500));
}
