//! Kubernetes' own cases for the HPA controller (`pkg/controller/podautoscaler`:
//! `TestScalingWithRules`, `TestNormalizeDesiredReplicas*`, the multi-metric
//! cases), ported case for case; the replica calculator's cases are in
//! `tests/k8s_replica_calculator.rs`. They reach the engine's internals, so
//! they live here as a child module of the engine rather than in `tests/`.
#![allow(clippy::type_complexity)]

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
        tolerance: None,
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
    condition: ConditionReason,
}

fn base(
    min: u32,
    max: u32,
    current: u32,
    desired: u32,
    expected: u32,
    condition: ConditionReason,
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

use ConditionReason::{
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

fn engine(behavior: Option<crate::policy::Behavior>, recommendations: &[(u32, f64)]) -> Autoscaler {
    let policy = ScalingPolicy {
        min_replicas: 1,
        max_replicas: 1000,
        metrics: vec![crate::policy::MetricSpec::new(
            "cpu",
            crate::policy::MetricKind::Resource,
            MetricTarget::Utilization(50.0),
        )],
        behavior,
        tolerance: crate::replicas::Tolerance::default(),
        predictive: None,
    };
    let mut a = Autoscaler::new(policy).unwrap();
    a.recommendations = Some(
        recommendations
            .iter()
            .map(|(value, ago)| Timed {
                at: NOW - ago,
                value: *value,
            })
            .collect(),
    );
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
        assert_eq!(
            a.recommendations.as_ref().map_or(0, Vec::len),
            log,
            "{name}"
        );
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
            let got: Vec<u32> = a
                .recommendations
                .iter()
                .flatten()
                .map(|r| r.value)
                .collect();
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
            crate::policy::MetricSpec::new(
                "cpu",
                crate::policy::MetricKind::Resource,
                MetricTarget::Utilization(cpu_target),
            ),
            crate::policy::MetricSpec::new(
                "qps",
                crate::policy::MetricKind::External,
                MetricTarget::Value(0.1),
            ),
        ],
        behavior: None,
        tolerance: crate::replicas::Tolerance::default(),
        predictive: None,
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
