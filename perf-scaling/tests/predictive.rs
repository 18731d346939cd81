//! Predictive scaling judged by simulation on the traces shipped in
//! `examples/scaling/`, against the reactive HPA on the same trace.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

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
    SimulationSettings::builder()
        .startup_s(180.0)
        .period_s(15.0)
        .build()
        .unwrap()
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

fn pods_policy(predictive: &str) -> ScalingPolicy {
    let p: ScalingPolicy = serde_json::from_str(&format!(
        r#"{{"min_replicas": 1, "max_replicas": 100,
            "metrics": [{{"name": "rps", "kind": "external", "target": {{"average_value": 100}}}}],
            "behavior": {{}}, "predictive": {predictive}}}"#
    ))
    .unwrap();
    p.validate().unwrap();
    p
}

/// Two days of a daily square wave: 200 req/s, and 2000 from 09:00 to 17:00.
fn square(t_s: f64) -> f64 {
    let hour = (t_s / 3600.0) % 24.0;
    if (9.0..17.0).contains(&hour) {
        2000.0
    } else {
        200.0
    }
}

fn observe(load: f64) -> perf_scaling::Observation {
    perf_scaling::Observation {
        pods: Vec::new(),
        readings: [("rps".to_owned(), perf_scaling::Reading::Single(load))].into(),
    }
}

/// Runs `engine` over `days` of the square wave every 60 s with replicas
/// following its decisions; calls `check` on each decision after day 1.
fn drive(
    engine: &mut perf_scaling::Autoscaler,
    days: f64,
    mut check: impl FnMut(f64, &perf_scaling::Decision),
) {
    let mut current = 2;
    let mut t = 0.0;
    while t < days * 86_400.0 {
        let d = engine.decide(t, current, &observe(square(t)));
        if t >= 86_400.0 + 3600.0 {
            check(t, &d);
        }
        current = d.to;
        t += 60.0;
    }
}

#[test]
fn forecast_only_records_what_it_would_do_and_changes_nothing() {
    let mut without = pods_policy(r#"{"mode": "scale", "lead_time": "5m"}"#);
    without.predictive = None;
    let mut reactive = perf_scaling::Autoscaler::new(without).unwrap();
    let mut watching = perf_scaling::Autoscaler::new(pods_policy(
        r#"{"mode": "forecast_only", "lead_time": "5m", "period": "1d"}"#,
    ))
    .unwrap();
    let mut reactive_to = Vec::new();
    drive(&mut reactive, 2.0, |_, d| reactive_to.push(d.to));
    let mut i = 0;
    let mut would = 0;
    drive(&mut watching, 2.0, |_, d| {
        assert_eq!(d.to, reactive_to[i], "forecast_only must not act: {d:?}");
        i += 1;
        if let Some(p) = d.prediction {
            assert!(!p.applied);
            if p.replicas > p.reactive {
                would += 1;
                assert!(d.reason.contains("would raise"), "{}", d.reason);
            }
        }
    });
    assert!(
        would > 0,
        "the 09:00 rise is foreseen: {:?}",
        watching.forecast_status()
    );
    let status = watching.forecast_status().unwrap();
    assert!(status.forecasting && !status.active, "{status:?}");
    assert_eq!(status.period_s, Some(86_400.0));
    assert_eq!(status.next_hour.len(), 12);
}

#[test]
fn the_forecast_scales_ahead_within_max_boost_and_never_scales_in_alone() {
    let mut engine = perf_scaling::Autoscaler::new(pods_policy(
        r#"{"mode": "scale", "lead_time": "5m", "max_boost": 3, "period": "1d"}"#,
    ))
    .unwrap();
    let mut ahead = false;
    drive(&mut engine, 2.0, |t, d| {
        if let Some(p) = d.prediction {
            // Capped at max_boost times the reactive count.
            assert!(p.replicas <= 3 * p.reactive.max(1), "{p:?}");
            // Never below what the metrics ask for now.
            assert!(d.proposed.unwrap() >= p.reactive, "{d:?}");
            let hour = (t / 3600.0) % 24.0;
            if p.applied && (8.5..9.0).contains(&hour) {
                ahead = true;
            }
        }
    });
    assert!(ahead, "replicas are asked for before 09:00 on day 2");
}

#[test]
fn demand_history_is_bounded_and_a_hostile_one_is_refused() {
    let mut h = perf_scaling::DemandHistory::default();
    h.record(30.0, 10.0);
    h.record(50.0, 20.0); // same minute: averaged
    h.record(200.0, 40.0); // a gap of two minutes: filled
    h.record(10.0, 99.0); // the past: dropped
    h.record(f64::NAN, 1.0);
    h.record(300.0, -1.0);
    assert_eq!(h.buckets, vec![15.0, 15.0, 15.0, 40.0]);
    for m in 0..(perf_scaling::MAX_DEMAND_BUCKETS + 100) {
        h.record(240.0 + m as f64 * 60.0, 1.0);
    }
    assert_eq!(h.buckets.len(), perf_scaling::MAX_DEMAND_BUCKETS);
    // Restoring a history with a bad demand names the field.
    let policy = pods_policy(r#"{"mode": "scale", "lead_time": "5m"}"#);
    let bad = perf_scaling::History {
        demand: Some(perf_scaling::DemandHistory {
            buckets: vec![f64::INFINITY],
            ..Default::default()
        }),
        ..perf_scaling::History::default()
    };
    let err = perf_scaling::Autoscaler::with_history(policy.clone(), bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("history.demand"), "{err}");
    let huge = perf_scaling::History {
        demand: Some(perf_scaling::DemandHistory {
            buckets: vec![1.0; perf_scaling::MAX_DEMAND_BUCKETS + 1],
            ..Default::default()
        }),
        ..perf_scaling::History::default()
    };
    let err = perf_scaling::Autoscaler::with_history(policy, huge)
        .unwrap_err()
        .to_string();
    assert!(err.contains("history.demand.buckets"), "{err}");
}

#[test]
fn predictive_settings_are_checked_naming_the_field() {
    for (block, field) in [
        (
            r#"{"mode": "scale", "lead_time": "0s"}"#,
            "predictive.lead_time",
        ),
        (
            r#"{"mode": "scale", "lead_time": "5m", "min_history": "10m"}"#,
            "predictive.min_history",
        ),
        (
            r#"{"mode": "scale", "lead_time": "5m", "max_boost": 0.5}"#,
            "predictive.max_boost",
        ),
        (
            r#"{"mode": "scale", "lead_time": "5m", "period": "30m"}"#,
            "predictive.period",
        ),
        (
            r#"{"mode": "scale", "lead_time": "5m", "period": "7d", "min_history": "1d"}"#,
            "predictive.min_history",
        ),
        (
            r#"{"mode": "scale", "lead_time": "5m", "metric": "nope"}"#,
            "predictive.metric",
        ),
    ] {
        let p: ScalingPolicy = serde_json::from_str(&format!(
            r#"{{"min_replicas": 1, "max_replicas": 10,
                "metrics": [{{"name": "rps", "kind": "pods", "target": {{"average_value": 100}}}}],
                "predictive": {block}}}"#
        ))
        .unwrap();
        let err = p.validate().unwrap_err().to_string();
        assert!(err.starts_with(field), "{block}: {err}");
    }
    let unknown = serde_json::from_str::<ScalingPolicy>(
        r#"{"min_replicas": 1, "max_replicas": 10, "metrics": [],
            "predictive": {"mode": "scale", "lead_time": "5m", "boost": 2}}"#,
    );
    assert!(unknown.unwrap_err().to_string().contains("boost"));
}
