//! Advice on a scaling policy from the decisions it made.

use perf_core::{Recommendation, Severity};

use crate::controller::ScalingEvent;
use crate::policy::ScalingPolicy;

/// Flapping (the count going up and down within minutes) and a policy
/// pinned at its maximum while the metrics ask for more. `events` newest
/// first or in any order; only automatic decisions count.
pub fn policy_advice(policy: &ScalingPolicy, events: &[ScalingEvent]) -> Vec<Recommendation> {
    let mut auto: Vec<&ScalingEvent> = events.iter().filter(|e| e.kind == "auto").collect();
    auto.sort_by_key(|e| e.at_ms);
    let mut out = Vec::new();
    let Some(newest) = auto.last().map(|e| e.at_ms) else {
        return out;
    };
    // Direction changes in the last 10 minutes.
    let recent: Vec<&&ScalingEvent> = auto
        .iter()
        .filter(|e| e.to != e.from && newest.saturating_sub(e.at_ms) <= 600_000)
        .collect();
    let reversals = recent
        .windows(2)
        .filter(|w| (w[0].to > w[0].from) != (w[1].to > w[1].from))
        .count();
    if reversals >= 3 {
        let window = policy
            .behavior
            .as_ref()
            .and_then(|b| b.scale_down.as_ref())
            .and_then(|r| r.stabilization_window_seconds)
            .unwrap_or(300);
        out.push(
            Recommendation::new(
                "scaling_policy",
                Severity::Warning,
                format!("the replica count changed direction {reversals} times in 10 minutes (flapping)"),
            )
            .evidence("direction_changes", reversals)
            .evidence("scale_down_stabilization_window_seconds", window)
            .evidence("tolerance", policy.tolerance.down)
            .action(format!(
                "behavior: {{scale_down: {{stabilization_window_seconds: {}}}}} and tolerance: {{down: 0.15}}",
                (window * 2).max(300)
            )),
        );
    }
    // Pinned at the maximum while a metric asks for more.
    let last: Vec<&&ScalingEvent> = auto.iter().rev().take(3).collect();
    let pinned = last.len() == 3
        && last.iter().all(|e| {
            e.to == policy.max_replicas
                && e.metrics
                    .iter()
                    .filter_map(|m| m.replicas)
                    .max()
                    .unwrap_or(0)
                    > policy.max_replicas
        });
    if pinned {
        let wanted = last
            .iter()
            .flat_map(|e| e.metrics.iter().filter_map(|m| m.replicas))
            .max()
            .unwrap_or(policy.max_replicas);
        out.push(
            Recommendation::new(
                "scaling_policy",
                Severity::Critical,
                format!(
                    "held at max_replicas {} while the metrics ask for {wanted}",
                    policy.max_replicas
                ),
            )
            .evidence("max_replicas", policy.max_replicas)
            .evidence("wanted", wanted)
            .action(format!(
                "max_replicas: {}",
                perf_core::num::saturating_u32((wanted as f64 * 1.25).ceil())
            )),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::MetricOutcome;

    fn policy() -> ScalingPolicy {
        serde_json::from_str(
            r#"{"min_replicas": 1, "max_replicas": 10, "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn event(at_s: u64, from: u32, to: u32, wanted: u32) -> ScalingEvent {
        ScalingEvent {
            at_ms: at_s * 1000,
            kind: "auto".into(),
            from,
            to,
            reason: String::new(),
            metrics: vec![MetricOutcome {
                name: "rps".into(),
                observed: Some(1.0),
                target: 100.0,
                replicas: Some(wanted),
                error: None,
            }],
        }
    }

    #[test]
    fn flapping_and_a_ceiling_are_found_and_steady_scaling_is_not() {
        let steady = [event(0, 1, 3, 3), event(60, 3, 5, 5), event(120, 5, 5, 5)];
        assert!(policy_advice(&policy(), &steady).is_empty());
        let flapping = [
            event(0, 2, 4, 4),
            event(60, 4, 2, 2),
            event(120, 2, 4, 4),
            event(180, 4, 2, 2),
        ];
        let advice = policy_advice(&policy(), &flapping);
        assert_eq!(advice.len(), 1);
        assert!(
            advice[0]
                .action
                .contains("stabilization_window_seconds: 600"),
            "{}",
            advice[0].action
        );
        let pinned = [
            event(0, 10, 10, 14),
            event(15, 10, 10, 16),
            event(30, 10, 10, 15),
        ];
        let advice = policy_advice(&policy(), &pinned);
        assert_eq!(advice[0].severity, Severity::Critical);
        assert_eq!(advice[0].action, "max_replicas: 20");
        assert!(policy_advice(&policy(), &[]).is_empty());
    }
}
