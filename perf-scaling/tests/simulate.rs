//! Policies tried on recorded loads.
#![allow(clippy::unwrap_used)]

use perf_scaling::{ScalingPolicy, SimulationSettings, parse_trace_csv, simulate};

fn policy(json: &str) -> ScalingPolicy {
    serde_json::from_str(json).unwrap()
}

/// 10 minutes: 200 req/s, a 2-minute spike to 2000, back to 200.
fn spike_trace() -> String {
    let mut csv = String::from("t_s,rps\n");
    for t in (0..=600).step_by(5) {
        let rps = if (120..240).contains(&t) { 2000 } else { 200 };
        csv.push_str(&format!("{t},{rps}\n"));
    }
    csv
}

#[test]
fn a_faster_policy_scales_up_sooner_and_costs_more_idle_replicas() {
    let trace = parse_trace_csv(&spike_trace()).unwrap();
    let settings = SimulationSettings::builder()
        .startup_s(20.0)
        .build()
        .unwrap();
    let eager = policy(
        r#"{"min_replicas": 2, "max_replicas": 30,
            "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}],
            "behavior": {"scale_down": {"stabilization_window_seconds": 300}}}"#,
    );
    let cautious = policy(
        r#"{"min_replicas": 2, "max_replicas": 30,
            "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}],
            "behavior": {"scale_up": {"policies": [{"type": "Pods", "value": 2, "period_seconds": 60}]},
                         "scale_down": {"stabilization_window_seconds": 60}}}"#,
    );
    let fast = simulate(&eager, &trace, &settings).unwrap();
    let slow = simulate(&cautious, &trace, &settings).unwrap();
    assert_eq!(fast.peak_replicas, 20, "2000 req/s at 100 each");
    let fast_up = fast.max_time_to_scale_up_s.unwrap();
    let slow_up = slow.max_time_to_scale_up_s.unwrap_or(f64::INFINITY);
    assert!(fast_up <= 60.0, "{fast_up}");
    assert!(slow_up > fast_up, "{slow_up} vs {fast_up}");
    assert!(slow.under_provisioned_instance_s > fast.under_provisioned_instance_s);
    // The long down window keeps replicas idle after the spike.
    assert!(fast.over_provisioned_instance_s > slow.over_provisioned_instance_s);
    // The report serializes as the CLI prints it.
    let json = serde_json::to_value(&fast).unwrap();
    assert!(json["timeline"].as_array().unwrap().len() > 30);
}

#[test]
fn bad_traces_and_settings_say_what_is_wrong() {
    for (csv, needle) in [
        ("t,v\n", "no rows"),
        ("t,v\n0,1\n0,2\n", "does not increase"),
        ("t,v\n0,abc\n", "line 2: value is not a number"),
        ("t,v\n0,-3\n", "negative"),
    ] {
        let err = parse_trace_csv(csv).unwrap_err().to_string();
        assert!(err.contains(needle), "{csv:?}: {err}");
    }
    let trace = parse_trace_csv("t,v\n0,1\n").unwrap();
    let p = policy(
        r#"{"min_replicas": 1, "max_replicas": 3, "metrics": [{"name": "v", "kind": "pods", "target": {"average_value": 1}}]}"#,
    );
    let err = SimulationSettings::builder()
        .period_s(0.0)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("period_s"), "{err}");
    let mut zero_period = SimulationSettings::default();
    zero_period.period_s = 0.0;
    let err = simulate(&p, &trace, &zero_period).unwrap_err().to_string();
    assert!(err.starts_with("period_s"), "{err}");
    // A trace spanning a huge time is refused at once, not replayed for ever.
    let trace = parse_trace_csv("t,v\n0,1\n1e9,2\n").unwrap();
    let err = simulate(&p, &trace, &SimulationSettings::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("decisions"), "{err}");
    // Times far from 0, where a time plus a period rounds back to itself,
    // are refused as they are read; one row near the limit is one decision.
    for csv in ["t,v\n0,1\n1e300,2\n", "t,v\n1e300,1\n"] {
        let err = parse_trace_csv(csv).unwrap_err().to_string();
        assert!(err.contains("beyond"), "{err}");
    }
    let single = parse_trace_csv("t,v\n1700000000,5\n").unwrap();
    let report = simulate(&p, &single, &SimulationSettings::default()).unwrap();
    assert_eq!(report.timeline.len(), 1);
    // A span of whole periods that divides to just under a whole number
    // (1.4 - 0.4 = 0.9999999999999999) still gets its last decision.
    let exact = parse_trace_csv("t,v\n0.4,1\n1.4,1\n").unwrap();
    let mut one_second = SimulationSettings::default();
    one_second.period_s = 1.0;
    let report = simulate(&p, &exact, &one_second).unwrap();
    assert_eq!(report.timeline.len(), 2);
}
