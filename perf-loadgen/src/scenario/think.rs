use std::time::Duration;

use perf_core::HumanDuration;
use serde::{Deserialize, Serialize};

/// Pause of a virtual user between two iterations.
///
/// In YAML: `think_time: 1s` (constant), `think_time: {uniform: {min: 500ms, max: 2s}}`
/// or `think_time: {exponential: {mean: 1s}}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ThinkTime {
    /// The same pause every time.
    Constant(HumanDuration),
    /// A distribution.
    Distribution(ThinkDistribution),
}

/// A random think time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ThinkDistribution {
    /// Uniform between `min` and `max`.
    Uniform {
        /// Shortest pause.
        min: HumanDuration,
        /// Longest pause.
        max: HumanDuration,
    },
    /// Exponential with this mean (a Poisson process of iterations).
    Exponential {
        /// Average pause.
        mean: HumanDuration,
    },
}

impl Default for ThinkTime {
    fn default() -> Self {
        Self::Constant(HumanDuration(Duration::ZERO))
    }
}

impl ThinkTime {
    /// Draws one pause.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Duration {
        match *self {
            Self::Constant(d) => d.0,
            Self::Distribution(ThinkDistribution::Uniform { min, max }) => {
                let (lo, hi) = (min.0.as_secs_f64(), max.0.as_secs_f64());
                perf_core::saturating_secs(lo + (hi - lo).max(0.0) * rng.f64())
            }
            Self::Distribution(ThinkDistribution::Exponential { mean }) => {
                // Inverse transform; cap at 20 means to keep a user from vanishing.
                let u = 1.0 - rng.f64(); // (0, 1]
                let x = -u.ln() * mean.0.as_secs_f64();
                perf_core::saturating_secs(x.min(mean.0.as_secs_f64() * 20.0))
            }
        }
    }

    /// Average pause.
    pub fn mean(&self) -> Duration {
        match *self {
            Self::Constant(d) => d.0,
            Self::Distribution(ThinkDistribution::Uniform { min, max }) => (min.0 + max.0) / 2,
            Self::Distribution(ThinkDistribution::Exponential { mean }) => mean.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_have_the_declared_mean() {
        let mut rng = fastrand::Rng::with_seed(7);
        let cases = [
            "1s",
            "{uniform: {min: 500ms, max: 1500ms}}",
            "{exponential: {mean: 1s}}",
        ];
        for yaml in cases {
            let t: ThinkTime = serde_saphyr::from_str(yaml).unwrap();
            let n = 20_000;
            let total: f64 = (0..n).map(|_| t.sample(&mut rng).as_secs_f64()).sum();
            let mean = total / n as f64;
            assert!((mean - 1.0).abs() < 0.03, "{yaml}: {mean}");
            assert_eq!(t.mean(), Duration::from_secs(1));
        }
    }
}
