use serde::{Deserialize, Serialize};

use super::{Scenario, Stage, ThinkTime, Threshold};
use crate::{Error, Result};

/// The five kinds of load test of the mission, each with a ready scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Normal load: 1000 users over 2 minutes, 10 minutes, 1 s think time.
    Baseline,
    /// Well above normal: 5000 users over 5 minutes, 15 minutes, 500 ms think time.
    Stress,
    /// A sudden burst: 100 users, then 10000 within 30 s for 3 minutes, then back.
    Spike,
    /// Normal load held for 4 hours, to find leaks and drift.
    Endurance,
    /// Large request bodies at a steady arrival rate (open model), 10 minutes.
    Volume,
}

impl Preset {
    /// All presets.
    pub const ALL: [Preset; 5] = [
        Self::Baseline,
        Self::Stress,
        Self::Spike,
        Self::Endurance,
        Self::Volume,
    ];

    /// The preset's name as written in files and requests.
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Stress => "stress",
            Self::Spike => "spike",
            Self::Endurance => "endurance",
            Self::Volume => "volume",
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::UnknownScenario {
                name: s.to_owned(),
                available: Self::ALL.map(Preset::name).join(", "),
            })
    }
}

fn d(text: &str) -> perf_core::HumanDuration {
    // The literals below are valid durations; a bad one would fail the preset tests.
    text.parse().unwrap_or_default()
}

fn thresholds(list: &[&str]) -> Vec<Threshold> {
    list.iter().filter_map(|t| t.parse().ok()).collect()
}

/// The ready scenario of a preset (without a target: give one).
///
/// ```
/// use perf_loadgen::{preset, Preset};
/// let s = preset(Preset::Baseline);
/// assert_eq!(s.users, Some(1000));
/// s.validate("baseline").unwrap();
/// ```
pub fn preset(kind: Preset) -> Scenario {
    let mission = thresholds(&["p95 < 50ms", "p99 < 200ms", "error_rate < 0.1%"]);
    // A closed model: `users` ramped up over `ramp_up`, each pausing `think`.
    let closed = |duration, users, ramp_up, think| Scenario {
        duration: Some(d(duration)),
        users: Some(users),
        ramp_up: Some(d(ramp_up)),
        think_time: Some(ThinkTime::Constant(d(think))),
        thresholds: mission.clone(),
        ..Scenario::default()
    };
    let users_for = |duration, users| Stage {
        duration: d(duration),
        users: Some(users),
        rate: None,
    };
    match kind {
        Preset::Baseline => closed("10m", 1000, "2m", "1s"),
        Preset::Stress => closed("15m", 5000, "5m", "500ms"),
        Preset::Spike => Scenario {
            stages: vec![
                users_for("30s", 100),
                users_for("30s", 10_000),
                users_for("3m", 10_000),
                users_for("30s", 100),
                users_for("30s", 100),
            ],
            think_time: Some(ThinkTime::Constant(d("100ms"))),
            thresholds: mission,
            ..Scenario::default()
        },
        Preset::Endurance => closed("4h", 1000, "5m", "1s"),
        Preset::Volume => Scenario {
            duration: Some(d("10m")),
            rate: "500/s".parse().ok(),
            max_in_flight: Some(5000),
            requests: vec![super::RequestSpec {
                checks: Vec::new(),
                name: Some("bulk upload".to_owned()),
                method: "POST".to_owned(),
                path: "/".to_owned(),
                headers: [(
                    "Content-Type".to_owned(),
                    "application/octet-stream".to_owned(),
                )]
                .into(),
                body: Some("x".repeat(64 * 1024)),
                weight: 1,
            }],
            thresholds: mission,
            ..Scenario::default()
        },
    }
}

/// The keys that shape the load: giving any of `users`, `rate` or
/// `stages` in [`with_overrides`] replaces all of them, so a closed-model
/// base does not mix with an open-model override (or the reverse).
pub const LOAD_SHAPE_KEYS: [&str; 6] = [
    "users",
    "ramp_up",
    "think_time",
    "rate",
    "max_in_flight",
    "stages",
];

/// A scenario's keys as JSON, as a scenario file or the API gives them
/// (unset keys left out): the base that [`with_overrides`] changes.
pub fn scenario_keys(scenario: &Scenario) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(scenario) {
        Ok(serde_json::Value::Object(keys)) => {
            keys.into_iter().filter(|(_, v)| !v.is_null()).collect()
        }
        _ => serde_json::Map::new(),
    }
}

/// The keys of `base` (a preset's or a file's scenario, from
/// [`scenario_keys`]) with `overrides` applied: each key given replaces the
/// base's, and giving any of `users`, `rate` or `stages` first drops every
/// one of the base's [`LOAD_SHAPE_KEYS`]. The result is still keys: parse it
/// as a [`Scenario`] and validate it.
///
/// ```
/// use perf_loadgen::{preset, scenario_keys, with_overrides, Preset, Scenario};
/// let overrides = serde_json::json!({"target": "http://127.0.0.1:8080", "rate": 50});
/// let serde_json::Value::Object(overrides) = overrides else { unreachable!() };
/// let keys = with_overrides(scenario_keys(&preset(Preset::Baseline)), overrides);
/// let s: Scenario = serde_json::from_value(serde_json::Value::Object(keys))?;
/// // The preset's closed model (users, ramp_up, think_time) gave way to the rate.
/// assert_eq!((s.users, s.think_time.is_none()), (None, true));
/// assert_eq!(s.duration, preset(Preset::Baseline).duration);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn with_overrides(
    mut base: serde_json::Map<String, serde_json::Value>,
    overrides: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    if ["users", "rate", "stages"]
        .iter()
        .any(|k| overrides.contains_key(*k))
    {
        for key in LOAD_SHAPE_KEYS {
            base.remove(key);
        }
    }
    base.extend(overrides);
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_keeps_the_mission_thresholds() {
        for p in Preset::ALL {
            let s = preset(p);
            s.validate(p.name()).unwrap();
            assert_eq!(s.thresholds.len(), 3, "{}", p.name());
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        assert!("soak".parse::<Preset>().is_err());
    }
}
