//! Predictive scaling judged by simulation on the traces shipped in
//! `examples/scaling/`, against the reactive HPA on the same trace.
#![allow(clippy::unwrap_used)]

use perf_scaling::{
    ForecastModel, PolicyComparison, ScalingPolicy, SimulationSettings, TracePoint,
    backtest_forecast, compare_reactive_predictive, parse_trace_csv,
};

fn trace(name: &str) -> Vec<TracePoint> {
    let path = format!("{}/../examples/scaling/{name}", env!("CARGO_MANIFEST_DIR"));
    parse_trace_csv(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn policy() -> ScalingPolicy {
    let path = format!(
        "{}/../examples/scaling/predictive-policy.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let p: ScalingPolicy = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    p.validate().unwrap();
    p
}

/// A 3-minute start-up, decisions every 15 s (the HPA's period).
fn settings() -> SimulationSettings {
    SimulationSettings {
        startup_s: 180.0,
        period_s: 15.0,
        ..SimulationSettings::default()
    }
}

fn table(name: &str, c: &PolicyComparison) {
    let row = |label: &str, r: &perf_scaling::SimulationReport| {
        println!(
            "{name:<18} {label:<10} under {:>9.0} replica-s  over {:>10.0} replica-s  paid {:>11.0} replica-s  time-to-ready mean {:>6.1} s max {:>6.1} s  events {:>5}  forecast raises {:>5}",
            r.under_provisioned_instance_s,
            r.over_provisioned_instance_s,
            r.replica_seconds,
            r.mean_time_to_ready_s().unwrap_or(0.0),
            r.max_time_to_scale_up_s.unwrap_or(0.0),
            r.scale_events,
            r.forecast_raises,
        );
    };
    row("reactive", &c.reactive);
    row("predictive", &c.predictive);
}

#[test]
fn on_a_diurnal_week_predictive_halves_under_provisioning_for_at_most_15_percent_more() {
    let c =
        compare_reactive_predictive(&policy(), &trace("diurnal-week.csv"), &settings()).unwrap();
    table("diurnal-week", &c);
    let under = c.predictive.under_provisioned_instance_s / c.reactive.under_provisioned_instance_s;
    let paid = c.predictive.replica_seconds / c.reactive.replica_seconds;
    println!("under-provisioned ratio {under:.3}, replica-seconds ratio {paid:.3}");
    assert!(c.predictive.forecast_raises > 0);
    assert!(
        under <= 0.5,
        "under-provisioning only cut to {under:.3} of reactive"
    );
    assert!(paid <= 1.15, "{paid:.3} times the replica-seconds");
}

#[test]
fn on_a_flash_crowd_predictive_is_no_worse_and_on_a_ramp_it_stays_out() {
    let c = compare_reactive_predictive(&policy(), &trace("flash-crowd.csv"), &settings()).unwrap();
    table("flash-crowd", &c);
    assert!(
        c.predictive.under_provisioned_instance_s <= c.reactive.under_provisioned_instance_s,
        "{} vs {}",
        c.predictive.under_provisioned_instance_s,
        c.reactive.under_provisioned_instance_s
    );
    let c = compare_reactive_predictive(&policy(), &trace("ramp.csv"), &settings()).unwrap();
    table("ramp", &c);
    assert_eq!(c.predictive.forecast_raises, 0, "a ramp repeats nothing");
    assert_eq!(
        c.predictive.under_provisioned_instance_s,
        c.reactive.under_provisioned_instance_s
    );
}

/// How the model was chosen: each model's mean absolute error 4 minutes
/// ahead on the diurnal week, scored after the first day.
#[test]
fn the_default_model_forecasts_the_week_best() {
    let points: Vec<(f64, f64)> = trace("diurnal-week.csv")
        .iter()
        .map(|p| (p.t_s, p.value))
        .collect();
    let mut scores = Vec::new();
    for model in [
        ForecastModel::SeasonalMedian,
        ForecastModel::SeasonalNaive,
        ForecastModel::HoltWinters,
    ] {
        let mae = backtest_forecast(&points, model, 240.0, 86_400.0, None).unwrap();
        println!("{model:?}: mean absolute error {mae:.1} req/s 4 minutes ahead");
        scores.push((model, mae));
    }
    let best = scores.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(best.0, ForecastModel::default(), "{scores:?}");
}

/// The models in simulation (slow in a debug build: run with `--release
/// -- --include-ignored`).
#[test]
#[ignore]
fn models_side_by_side() {
    for model in [
        ForecastModel::HoltWinters,
        ForecastModel::SeasonalMedian,
        ForecastModel::SeasonalNaive,
    ] {
        let mut p = policy();
        p.predictive.as_mut().unwrap().model = model;
        for name in ["diurnal-week.csv", "flash-crowd.csv"] {
            let c = compare_reactive_predictive(&p, &trace(name), &settings()).unwrap();
            table(&format!("{model:?} {name}"), &c);
        }
    }
}
