//! Kubernetes' own replica-calculator tests
//! (`pkg/controller/podautoscaler/replica_calculator_test.go`), ported case
//! by case: same pods, same samples, same targets, same expected replicas,
//! utilization and raw value. Each pod there has two containers, each with
//! the request and the usage given (in milli-units), so a pod's request is
//! 2 × the request and its usage 2 × the level.
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

fn pod_levels(levels: &[i64]) -> BTreeMap<String, f64> {
    levels
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("test-pod-{i}"), *l as f64))
        .collect()
}

const TOL: Tolerance = Tolerance { up: 0.1, down: 0.1 };

/// A CPU case: expected replicas, utilization and raw value (per pod, both containers).
fn cpu(current: u32, pods: Pods, levels: &[i64], target: i64, expect: (u32, i64, i64)) {
    let r = resource_utilization_replicas(
        current,
        target as f64,
        &pods.build(),
        &cpu_levels(levels),
        TOL,
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
    let r = pod_average_replicas(
        current,
        target as f64,
        &pods.build(),
        &pod_levels(levels),
        TOL,
    )
    .unwrap();
    assert_eq!((r.replicas, r.observed as i64), expect);
}

/// An object or external metric against a value target.
fn value(current: u32, pods: Pods, level: i64, target: i64, expect: u32) {
    let r = value_replicas(
        current,
        target as f64,
        level as f64,
        ready_pods(&pods.build()),
        TOL,
    )
    .unwrap();
    assert_eq!(r.replicas, expect);
    assert_eq!(r.observed as i64, level);
}

/// An object or external metric against an average-value target.
fn per_pod(current: u32, level: i64, target: i64, expect: (u32, i64)) {
    let r = average_value_replicas(current, target as f64, level as f64, TOL).unwrap();
    assert_eq!((r.replicas, r.observed as i64), expect);
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
