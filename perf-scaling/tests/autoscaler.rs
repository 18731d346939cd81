//! The engine over time: a load that rises and falls, with the default
//! behavior and with a step rule.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use perf_scaling::{Autoscaler, Observation, Pod, Reading, ScalingPolicy, StepRule};

/// `replicas` pods sharing `total` requests per second evenly.
fn sharing(total: f64, replicas: u32) -> Observation {
    let pods: Vec<Pod> = (0..replicas)
        .map(|i| Pod::running(format!("p{i}"), None))
        .collect();
    let rps: BTreeMap<String, f64> = (0..replicas)
        .map(|i| (format!("p{i}"), total / f64::from(replicas)))
        .collect();
    Observation {
        pods,
        readings: [("rps".to_owned(), Reading::PerPod(rps))].into(),
    }
}

#[test]
fn default_behavior_scales_up_at_once_and_down_after_the_window() {
    let policy: ScalingPolicy = serde_json::from_str(
        r#"{"min_replicas": 1, "max_replicas": 20,
            "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 1000}}],
            "behavior": {}}"#,
    )
    .unwrap();
    let mut hpa = Autoscaler::new(policy).unwrap();
    let mut replicas = 1;
    let mut history = Vec::new();
    // 15 s periods: 8000 req/s for 2 minutes, then 1000 req/s.
    for step in 0..40u32 {
        let t = f64::from(step) * 15.0;
        let load = if t < 120.0 { 8000.0 } else { 1000.0 };
        let d = hpa.decide(t, replicas, &sharing(load, replicas));
        replicas = d.to;
        history.push((t, replicas));
    }
    // Up: +4 pods or +100 % per 15 s, whichever is more: 1 -> 5 -> 8.
    assert_eq!(history[0], (0.0, 5));
    assert_eq!(history[1], (15.0, 8));
    // Down: only after the 300 s window has no higher recommendation.
    let first_down = history.iter().skip(2).find(|(_, r)| *r < 8).unwrap();
    assert!(first_down.0 >= 120.0 + 300.0 - 15.0, "{history:?}");
    assert_eq!(history.last().unwrap().1, 1, "{history:?}");
}

#[test]
fn a_step_rule_adds_a_step_per_cooldown() {
    let rule = StepRule {
        metric: "rps".into(),
        scale_up_above: 700.0,
        scale_down_below: 300.0,
        step: 2,
        cooldown_seconds: 60,
        min_replicas: 1,
        max_replicas: 10,
    };
    let mut hpa = Autoscaler::new(rule.to_policy().unwrap()).unwrap();
    let mut replicas = 2;
    let mut history = Vec::new();
    for step in 0..24u32 {
        let t = f64::from(step) * 10.0;
        let d = hpa.decide(t, replicas, &sharing(6000.0, replicas));
        replicas = d.to;
        history.push(replicas);
    }
    // 2 -> 4 at once, then +2 each 60 s until 6000/700 needs 9: 10 at most.
    assert_eq!(history[0], 4, "{history:?}");
    assert_eq!(history[5], 4, "{history:?}");
    assert_eq!(history[6], 6, "{history:?}");
    assert_eq!(history[12], 8, "{history:?}");
    assert!(history[18] >= 9 && history[18] <= 10, "{history:?}");
    // Inside the band (600 per pod with 10): no change.
    let d = hpa.decide(1000.0, 10, &sharing(5000.0, 10));
    assert_eq!(d.to, 10, "{d:?}");
}

#[test]
fn bad_policies_name_the_field() {
    for (json, field) in [
        (
            r#"{"min_replicas": 0, "max_replicas": 5, "metrics": []}"#,
            "min_replicas",
        ),
        (
            r#"{"min_replicas": 3, "max_replicas": 2, "metrics": []}"#,
            "max_replicas",
        ),
        (
            r#"{"min_replicas": 1, "max_replicas": 2, "metrics": []}"#,
            "metrics",
        ),
        (
            r#"{"min_replicas": 1, "max_replicas": 2, "metrics": [{"name": "cpu", "kind": "pods", "target": {"utilization": 50}}]}"#,
            "metrics[0].target",
        ),
        (
            r#"{"min_replicas": 1, "max_replicas": 2, "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 5}}],
                "behavior": {"scale_up": {"policies": [{"type": "Pods", "value": 0, "period_seconds": 15}]}}}"#,
            "behavior.scale_up.policies[0].value",
        ),
        (
            r#"{"min_replicas": 1, "max_replicas": 2, "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 5}}],
                "behavior": {"scale_down": {"stabilization_window_seconds": 4000}}}"#,
            "behavior.scale_down.stabilization_window_seconds",
        ),
    ] {
        let policy: ScalingPolicy = serde_json::from_str(json).unwrap();
        let err = Autoscaler::new(policy).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{field}:")), "{err}");
    }
}
