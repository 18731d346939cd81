//! perf-scaling the way a service author uses it: one HPA-exact decision
//! from live readings, then the same policy replayed over a recorded week of daily peaks,
//! reactive beside predictive, to see how long users would wait for
//! capacity and what it would cost.
//!
//! ```sh
//! cargo run --release -p perf-examples --example scaling_decide
//! ```
#![allow(clippy::print_stdout)] // an example prints what it found

use std::collections::BTreeMap;

use perf_scaling::{
    Autoscaler, Observation, Pod, Reading, ScalingPolicy, SimulationSettings,
    compare_reactive_predictive, parse_trace_csv,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scaling");
    // The policy exactly as an autoscaling/v2 HPA would spell it.
    let policy: ScalingPolicy =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("policy.yaml"))?)?;
    policy.validate()?;

    // 1. One decision: 4 pods serving 640 requests/s against 100 per pod.
    let mut hpa = Autoscaler::new(policy.clone())?;
    let pods: Vec<Pod> = (0..4)
        .map(|i| Pod::running(format!("web-{i}"), None))
        .collect();
    let rps: BTreeMap<String, f64> = (0..4).map(|i| (format!("web-{i}"), 160.0)).collect();
    let seen = Observation {
        pods,
        readings: [("rps".to_owned(), Reading::PerPod(rps))].into(),
    };
    let decision = hpa.decide(0.0, 4, &seen);
    println!(
        "decision: {} -> {} replicas ({})",
        decision.from, decision.to, decision.reason
    );

    // 2. The same policy over a recorded week of daily peaks, reactive and predictive.
    let trace = parse_trace_csv(&std::fs::read_to_string(dir.join("diurnal-week.csv"))?)?;
    let settings = SimulationSettings::builder().startup_s(30.0).build()?;
    let both = compare_reactive_predictive(&policy, &trace, &settings)?;
    for (name, report) in [
        ("reactive", &both.reactive),
        ("predictive", &both.predictive),
    ] {
        println!(
            "{name:>10}: slowest scale-up {:>5.0} s, peak {:>2} replicas, {:>7.0} replica-seconds, \
             {:>6.0} replica-seconds short of demand, {} scale events",
            report.max_time_to_scale_up_s.unwrap_or(0.0),
            report.peak_replicas,
            report.replica_seconds,
            report.under_provisioned_instance_s,
            report.scale_events,
        );
    }
    Ok(())
}
