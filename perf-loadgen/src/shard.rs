//! Splitting a scenario over several machines (or processes) so that the
//! parts add up to the whole; [`crate::RunReport::merge`] joins their reports.

use crate::scenario::{Rate, Scenario};
use crate::{Error, Result};

/// Splits `scenario` into `n` scenarios whose sum is the original: users and
/// rates are divided (remainders go to the first shards), `max_in_flight`
/// likewise; everything else is copied.
///
/// ```
/// use perf_loadgen::{preset, split, Preset};
/// let parts = split("baseline", &preset(Preset::Baseline), 3).unwrap();
/// let users: u32 = parts.iter().map(|s| s.users.unwrap()).sum();
/// assert_eq!(users, 1000);
/// assert_eq!(parts[0].users, Some(334));
/// ```
pub fn split(name: &str, scenario: &Scenario, n: u32) -> Result<Vec<Scenario>> {
    let invalid = |value: String, allowed: String| Error::Invalid {
        scenario: name.to_owned(),
        key: "shards".to_owned(),
        value,
        allowed,
    };
    if n == 0 {
        return Err(invalid("0".to_owned(), "at least 1 shard".to_owned()));
    }
    scenario.validate(name)?;
    let share = |total: u32, i: u32| total / n + u32::from(i < total % n);
    let max_users = scenario
        .users
        .into_iter()
        .chain(scenario.stages.iter().filter_map(|s| s.users))
        .max()
        .unwrap_or(u32::MAX);
    let closed = scenario.users.is_some() || scenario.stages.iter().any(|s| s.users.is_some());
    if closed && max_users < n {
        return Err(invalid(
            n.to_string(),
            format!("at most {max_users} shards: each needs at least one user"),
        ));
    }
    let shards = (0..n)
        .map(|i| {
            let mut s = scenario.clone();
            s.users = scenario.users.map(|u| share(u, i));
            s.rate = scenario
                .rate
                .map(|r| Rate::per_second_of(r.per_second() / f64::from(n)));
            s.max_in_flight = scenario.max_in_flight.map(|m| share(m, i).max(1));
            for stage in &mut s.stages {
                stage.users = stage.users.map(|u| share(u, i));
                stage.rate = stage
                    .rate
                    .map(|r| Rate::per_second_of(r.per_second() / f64::from(n)));
            }
            s
        })
        .collect::<Vec<_>>();
    for (i, s) in shards.iter().enumerate() {
        s.validate(&format!("{name} (shard {i})"))?;
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Preset, preset};

    #[test]
    fn parts_add_up_to_the_whole() {
        for p in Preset::ALL {
            let whole = preset(p);
            for n in [1, 2, 3, 7] {
                let parts = split(p.name(), &whole, n).unwrap();
                assert_eq!(parts.len(), n as usize);
                let users: u32 = parts.iter().filter_map(|s| s.users).sum();
                assert_eq!(users, whole.users.unwrap_or(0), "{} / {n}", p.name());
                let rate: f64 = parts
                    .iter()
                    .filter_map(|s| s.rate)
                    .map(Rate::per_second)
                    .sum();
                let want = whole.rate.map_or(0.0, Rate::per_second);
                assert!((rate - want).abs() < 1e-9);
                for (k, stage) in whole.stages.iter().enumerate() {
                    let sum: u32 = parts.iter().filter_map(|s| s.stages[k].users).sum();
                    assert_eq!(Some(sum), stage.users);
                }
            }
        }
    }

    #[test]
    fn too_many_shards_for_the_users_is_an_error() {
        let mut s = preset(Preset::Baseline);
        s.users = Some(3);
        let err = split("tiny", &s, 5).unwrap_err();
        assert!(
            err.to_string().contains("tiny") && err.to_string().contains("shards"),
            "{err}"
        );
    }
}
