//! Capacity planning from a step-load test: the knee (the highest
//! throughput at which the p95 stays under the SLO and errors under the
//! limit), then how many instances a target rate needs with headroom, and
//! the per-instance target to give an autoscaler.

use serde::{Deserialize, Serialize};

use crate::report::RunReport;
use crate::stats::TimelineRow;
use crate::{Error, Result};

/// What the service must keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Slo {
    /// Highest acceptable p95 latency, ms (default 50).
    pub p95_ms: f64,
    /// Highest acceptable error rate, 0 to 1 (default 0.001).
    pub max_error_rate: f64,
    /// Seconds per evaluation window of the timeline (default 5).
    pub window_s: u64,
}

impl Default for Slo {
    fn default() -> Self {
        Self {
            p95_ms: 50.0,
            max_error_rate: 0.001,
            window_s: 5,
        }
    }
}

/// One evaluation window of the test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CapacityWindow {
    /// Start, seconds into the run.
    pub t_s: u64,
    /// Completed requests per second.
    pub rps: f64,
    /// The worst per-second p95 in the window, ms.
    pub p95_ms: f64,
    /// Errors / requests.
    pub error_rate: f64,
    /// Whether the SLO held.
    pub within_slo: bool,
}

/// The knee and what follows from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityPlan {
    /// The SLO used.
    pub slo: Slo,
    /// Highest throughput of a window within the SLO (requests per second
    /// for the instances the test ran against).
    pub knee_rps: f64,
    /// That window's p95, ms.
    pub knee_p95_ms: f64,
    /// Lowest throughput of a window that broke the SLO after the knee, if
    /// any. `None`: the test never pushed past what the service held, so
    /// the knee is only a lower bound (raise the steps to find it).
    pub broke_at_rps: Option<f64>,
    /// The instances the test ran against: its targets (one URL in front of
    /// several instances counts as one; divide by hand then).
    pub instances_tested: u32,
    /// The knee per instance tested.
    pub knee_rps_per_instance: f64,
    /// The windows, in order.
    pub windows: Vec<CapacityWindow>,
}

fn window(rows: &[TimelineRow], slo: &Slo) -> Option<CapacityWindow> {
    let first = rows.first()?;
    let span: u64 = rows.iter().map(|r| r.span_s.max(1)).sum();
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    let p95 = rows.iter().map(|r| r.p95_ms).fold(0.0, f64::max);
    let error_rate = if requests > 0 {
        errors as f64 / requests as f64
    } else {
        0.0
    };
    let rps = requests as f64 / span as f64;
    Some(CapacityWindow {
        t_s: first.t_s,
        rps,
        p95_ms: p95,
        error_rate,
        within_slo: requests > 0 && p95 <= slo.p95_ms && error_rate <= slo.max_error_rate,
    })
}

/// Finds the knee in a step test's timeline.
///
/// ```
/// use perf_loadgen::{capacity_plan, RunReport, Slo};
/// let report: RunReport = serde_json::from_str(include_str!("../../benches/results/baseline-report.json")).unwrap();
/// let plan = capacity_plan(&report, &Slo::default())?;
/// assert!(plan.knee_rps > 0.0);
/// assert_eq!(plan.instances_for(10_000.0, 0.3), (10_000.0 / (plan.knee_rps * 0.7)).ceil() as u32);
/// # Ok::<(), perf_loadgen::Error>(())
/// ```
pub fn capacity_plan(report: &RunReport, slo: &Slo) -> Result<CapacityPlan> {
    if slo.p95_ms.is_nan()
        || slo.p95_ms <= 0.0
        || !(0.0..1.0).contains(&slo.max_error_rate)
        || slo.window_s == 0
    {
        return Err(Error::Report(
            "slo: p95_ms must be above 0, max_error_rate in 0 to 1, window_s at least 1".to_owned(),
        ));
    }
    let width = usize::try_from(slo.window_s).unwrap_or(1).max(1);
    let windows: Vec<CapacityWindow> = report
        .timeline
        .chunks(width)
        .filter_map(|rows| window(rows, slo))
        .collect();
    let knee = windows
        .iter()
        .filter(|w| w.within_slo)
        .max_by(|a, b| a.rps.total_cmp(&b.rps))
        .copied()
        .ok_or_else(|| {
            Error::Report("no window of the test kept the SLO: the service is over capacity at the lowest step".to_owned())
        })?;
    let broke_at_rps = windows
        .iter()
        .filter(|w| !w.within_slo && w.t_s > knee.t_s)
        .map(|w| w.rps)
        .reduce(f64::min);
    let instances_tested = u32::try_from(report.targets.len().max(1)).unwrap_or(u32::MAX);
    Ok(CapacityPlan {
        slo: *slo,
        knee_rps: knee.rps,
        knee_p95_ms: knee.p95_ms,
        broke_at_rps,
        instances_tested,
        knee_rps_per_instance: knee.rps / f64::from(instances_tested),
        windows,
    })
}

impl CapacityPlan {
    /// Instances needed for `target_rps`, each run at most at
    /// `(1 - headroom)` of the knee (headroom 0 to 0.9).
    pub fn instances_for(&self, target_rps: f64, headroom: f64) -> u32 {
        let per_instance = self.target_per_instance(headroom);
        if per_instance <= 0.0 {
            return u32::MAX;
        }
        let n = (target_rps / per_instance).ceil();
        if n >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            perf_core::num::saturating_u32(n.max(1.0))
        }
    }

    /// The plan as advice for `target_rps` with `headroom`.
    pub fn recommendation(&self, target_rps: f64, headroom: f64) -> perf_core::Recommendation {
        let per = self.target_per_instance(headroom);
        let instances = self.instances_for(target_rps, headroom);
        let title = match self.broke_at_rps {
            Some(_) => format!(
                "one instance holds {:.0} req/s within p95 {} ms: {instances} instances for {:.0} req/s with {:.0} % headroom",
                self.knee_rps_per_instance,
                self.slo.p95_ms,
                target_rps,
                100.0 * headroom
            ),
            None => format!(
                "one instance held {:.0} req/s within p95 {} ms and the test never pushed it past that: at most {instances} instances for {:.0} req/s with {:.0} % headroom (run higher steps to find the knee)",
                self.knee_rps_per_instance,
                self.slo.p95_ms,
                target_rps,
                100.0 * headroom
            ),
        };
        perf_core::Recommendation::new("capacity", perf_core::Severity::Info, title)
        .evidence("knee_rps", self.knee_rps)
        .evidence("instances_tested", self.instances_tested)
        .evidence("knee_rps_per_instance", self.knee_rps_per_instance)
        .evidence("knee_p95_ms", self.knee_p95_ms)
        .evidence("broke_at_rps", self.broke_at_rps)
        .evidence("target_rps", target_rps)
        .evidence("headroom", headroom)
        .action(format!(
            "scaling: {{policy: {{min_replicas: {instances}, metrics: [{{name: rps, kind: pods, target: {{average_value: {per:.0}}}}}]}}}}"
        ))
    }

    /// The per-instance rate to give an autoscaler as its target
    /// (an `average_value` for a requests-per-second metric).
    pub fn target_per_instance(&self, headroom: f64) -> f64 {
        self.knee_rps_per_instance * (1.0 - headroom.clamp(0.0, 0.9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t_s: u64, requests: u64, errors: u64, p95_ms: f64) -> TimelineRow {
        serde_json::from_value(serde_json::json!({
            "t_s": t_s, "span_s": 1, "requests": requests, "errors": errors, "rps": requests as f64,
            "p50_ms": p95_ms / 2.0, "p95_ms": p95_ms, "p99_ms": p95_ms, "max_ms": p95_ms,
            "users": 0, "in_flight": 0, "dropped": 0, "bytes_sent": 0, "bytes_received": 0
        }))
        .unwrap()
    }

    fn step_report() -> RunReport {
        let mut report: RunReport =
            serde_json::from_str(include_str!("../../benches/results/baseline-report.json"))
                .unwrap();
        // Steps of 10 s at 1000, 2000, ... 6000 req/s; latency climbs past 50 ms
        // at 5000 and errors appear at 6000.
        report.timeline = (0..60u64)
            .map(|t| {
                let step = t / 10 + 1;
                let rps = step * 1000;
                let p95 = match step {
                    1..=3 => 5.0 + step as f64,
                    4 => 30.0,
                    5 => 80.0,
                    _ => 400.0,
                };
                let errors = if step == 6 { rps / 50 } else { 0 };
                row(t, rps, errors, p95)
            })
            .collect();
        report
    }

    #[test]
    fn the_knee_is_the_last_step_within_the_slo() {
        let plan = capacity_plan(&step_report(), &Slo::default()).unwrap();
        assert_eq!(plan.knee_rps, 4000.0);
        assert_eq!(plan.knee_p95_ms, 30.0);
        assert_eq!(plan.broke_at_rps, Some(5000.0));
        assert_eq!(plan.windows.len(), 12);
        // 10,000 req/s with 30 % headroom: 2,800 per instance, 4 instances.
        assert_eq!(plan.target_per_instance(0.3), 2800.0);
        assert_eq!(plan.instances_for(10_000.0, 0.3), 4);
        // A stricter SLO moves the knee down.
        let strict = capacity_plan(
            &step_report(),
            &Slo {
                p95_ms: 10.0,
                ..Slo::default()
            },
        )
        .unwrap();
        assert_eq!(strict.knee_rps, 3000.0);
        let advice = plan.recommendation(10_000.0, 0.3);
        assert!(
            advice.title.starts_with("one instance holds 4000"),
            "{}",
            advice.title
        );
    }

    #[test]
    fn two_targets_halve_the_knee_and_a_test_that_never_broke_says_so() {
        let mut report = step_report();
        report.targets = vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()];
        let plan = capacity_plan(&report, &Slo::default()).unwrap();
        assert_eq!(plan.instances_tested, 2);
        assert_eq!(plan.knee_rps, 4000.0);
        assert_eq!(plan.knee_rps_per_instance, 2000.0);
        // 10,000 req/s with 30 % headroom: 1,400 per instance, 8 instances.
        assert_eq!(plan.instances_for(10_000.0, 0.3), 8);

        // Only the steps the service held: the knee is a lower bound.
        report.timeline.truncate(40);
        let plan = capacity_plan(&report, &Slo::default()).unwrap();
        assert_eq!(plan.broke_at_rps, None);
        let advice = plan.recommendation(10_000.0, 0.3);
        assert!(
            advice.title.contains("never pushed it past"),
            "{}",
            advice.title
        );
        assert!(
            advice.title.contains("at most 8 instances"),
            "{}",
            advice.title
        );
    }

    #[test]
    fn no_window_within_the_slo_is_an_error_that_says_so() {
        let mut report = step_report();
        for r in &mut report.timeline {
            r.p95_ms = 999.0;
        }
        let err = capacity_plan(&report, &Slo::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("over capacity"), "{err}");
        assert!(
            capacity_plan(
                &report,
                &Slo {
                    window_s: 0,
                    ..Slo::default()
                }
            )
            .is_err()
        );
    }
}
