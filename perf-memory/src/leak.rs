//! Leak detection from growth trends.
//!
//! Feed [`LeakDetector::observe`] periodic [`MemorySample`]s (allocator
//! figures and RSS). After a warm-up, each evaluation fits a robust trend
//! over the sliding window: the Theil-Sen slope (the median of the slopes
//! between every pair of samples, so a few spikes do not move it) and the
//! Mann-Kendall test for a monotonic trend, whose one-sided p-value gives
//! the confidence. Growth is *sustained* when the trend is significant, the
//! growth over the window is large both in bytes and relative to the level,
//! and that holds for several evaluations in a row.
//!
//! The verdict tells a leak (live allocations grow: something keeps what it
//! allocates) from fragmentation or retained pages (resident memory grows
//! while live allocations stay flat: the allocator holds freed memory).

use std::collections::VecDeque;
use std::time::Duration;

use perf_core::HumanDuration;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One observation of the process's memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemorySample {
    /// Seconds since an arbitrary origin (monotonic).
    pub at_s: f64,
    /// Bytes in live allocations (jemalloc `allocated`; without jemalloc,
    /// use RSS here too and the verdict cannot tell leak from fragmentation).
    pub allocated_bytes: u64,
    /// Resident bytes (process RSS).
    pub resident_bytes: u64,
}

/// How the detector decides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct LeakDetectorConfig {
    /// No verdict before this much time has been observed (start-up fills
    /// caches and pools). Default 60 s.
    pub warmup: HumanDuration,
    /// Samples in the sliding window (at least 8; default 120).
    pub window: usize,
    /// Least confidence (1 - p of the Mann-Kendall test) to call a trend
    /// (0.5 to 1; default 0.999).
    pub min_confidence: f64,
    /// Least growth over the window, bytes (default 4 MiB).
    pub min_growth_bytes: u64,
    /// Least growth over the window relative to the level (default 0.05).
    pub min_growth_fraction: f64,
    /// Consecutive positive evaluations before a verdict (default 3).
    pub consecutive: u32,
}

impl Default for LeakDetectorConfig {
    fn default() -> Self {
        Self {
            warmup: HumanDuration(Duration::from_secs(60)),
            window: 120,
            min_confidence: 0.999,
            min_growth_bytes: 4 << 20,
            min_growth_fraction: 0.05,
            consecutive: 3,
        }
    }
}

impl LeakDetectorConfig {
    /// Checks every field; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        if !(8..=10_000).contains(&self.window) {
            return Err(Error::Invalid {
                field: "window",
                message: format!(
                    "{} is outside the allowed range 8 to 10000 samples",
                    self.window
                ),
            });
        }
        if !(0.5..=1.0).contains(&self.min_confidence) {
            return Err(Error::Invalid {
                field: "min_confidence",
                message: format!(
                    "{} is outside the allowed range 0.5 to 1",
                    self.min_confidence
                ),
            });
        }
        if !(0.0..=10.0).contains(&self.min_growth_fraction) {
            return Err(Error::Invalid {
                field: "min_growth_fraction",
                message: format!(
                    "{} is outside the allowed range 0 to 10",
                    self.min_growth_fraction
                ),
            });
        }
        if self.consecutive == 0 {
            return Err(Error::Invalid {
                field: "consecutive",
                message: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

/// What the detector concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LeakStatus {
    /// Not enough time or samples yet.
    #[default]
    WarmingUp,
    /// No sustained growth.
    Steady,
    /// Live allocations grow: memory is being kept.
    Leak,
    /// Resident memory grows while live allocations stay flat: fragmentation
    /// or pages the allocator retains (purge or shorten decay).
    Fragmentation,
}

/// A trend over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trend {
    /// Theil-Sen slope, bytes per second.
    pub slope_bytes_per_s: f64,
    /// The same over each half of the window: growth is sustained only
    /// when both halves grow at least half as fast as the whole (a one-off
    /// step, a cache filling, or growth that is settling does not).
    pub half_slopes_bytes_per_s: [f64; 2],
    /// 1 - p of the one-sided Mann-Kendall test for growth.
    pub confidence: f64,
    /// Growth over the window implied by the slope, bytes.
    pub growth_bytes: f64,
    /// The median level over the window, bytes.
    pub level_bytes: f64,
}

/// The detector's verdict and its evidence.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeakVerdict {
    /// The conclusion.
    pub status: LeakStatus,
    /// Trend of live allocations.
    pub allocated: Option<Trend>,
    /// Trend of resident memory.
    pub resident: Option<Trend>,
    /// Seconds covered by the window.
    pub window_s: f64,
    /// Samples in the window.
    pub samples: usize,
    /// Seconds since the status last changed to what it is.
    pub since_s: f64,
    /// In words.
    pub message: String,
}

/// Watches memory samples for sustained growth.
///
/// ```
/// use std::time::Duration;
/// use perf_memory::{LeakDetector, LeakDetectorConfig, LeakStatus, MemorySample};
/// let config = LeakDetectorConfig::builder()
///     .warmup(Duration::from_secs(10))
///     .window(30)
///     .build()?;
/// let mut detector = LeakDetector::new(config)?;
/// for t in 0..60u64 {
///     // 1 MiB more kept every second on top of 100 MiB.
///     let allocated = (100 << 20) + t * (1 << 20);
///     detector.observe(MemorySample { at_s: t as f64, allocated_bytes: allocated, resident_bytes: allocated + (20 << 20) });
/// }
/// let verdict = detector.verdict();
/// assert_eq!(verdict.status, LeakStatus::Leak);
/// assert!((verdict.allocated.unwrap().slope_bytes_per_s - 1048576.0).abs() < 1.0);
/// # Ok::<(), perf_memory::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LeakDetector {
    config: LeakDetectorConfig,
    samples: VecDeque<MemorySample>,
    first_at: Option<f64>,
    streak_leak: u32,
    streak_fragmentation: u32,
    status: LeakStatus,
    status_since: f64,
    last: Option<LeakVerdict>,
}

impl LeakDetector {
    /// A detector with `config` (validated).
    pub fn new(config: LeakDetectorConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            samples: VecDeque::with_capacity(config.window),
            first_at: None,
            streak_leak: 0,
            streak_fragmentation: 0,
            status: LeakStatus::WarmingUp,
            status_since: 0.0,
            last: None,
        })
    }

    /// Adds a sample and re-evaluates; returns the status.
    pub fn observe(&mut self, sample: MemorySample) -> LeakStatus {
        let first = *self.first_at.get_or_insert(sample.at_s);
        if self.samples.len() == self.config.window {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        let warm = sample.at_s - first >= self.config.warmup.as_duration().as_secs_f64()
            && self.samples.len() == self.config.window;
        let (allocated, resident) = if warm {
            (
                Some(self.trend(|s| s.allocated_bytes)),
                Some(self.trend(|s| s.resident_bytes)),
            )
        } else {
            (None, None)
        };
        let grows = |t: &Option<Trend>| t.is_some_and(|t| self.sustained(&t));
        let (leak, fragmentation) = (grows(&allocated), grows(&resident));
        self.streak_leak = if leak { self.streak_leak + 1 } else { 0 };
        self.streak_fragmentation = if fragmentation && !leak {
            self.streak_fragmentation + 1
        } else {
            0
        };
        let status = if !warm {
            LeakStatus::WarmingUp
        } else if self.streak_leak >= self.config.consecutive {
            LeakStatus::Leak
        } else if self.streak_fragmentation >= self.config.consecutive {
            LeakStatus::Fragmentation
        } else if matches!(self.status, LeakStatus::Leak | LeakStatus::Fragmentation)
            && (leak || fragmentation)
        {
            self.status // still growing: keep the verdict while the streak rebuilds
        } else {
            LeakStatus::Steady
        };
        if status != self.status {
            tracing::debug!(from = ?self.status, to = ?status, at_s = sample.at_s, "leak verdict changed");
            self.status = status;
            self.status_since = sample.at_s;
        }
        let window_s = self.samples.front().map_or(0.0, |f| sample.at_s - f.at_s);
        let message = match status {
            LeakStatus::WarmingUp => format!(
                "warming up: {:.0} s observed of {:.0} s, {} of {} samples",
                sample.at_s - first,
                self.config.warmup.as_duration().as_secs_f64(),
                self.samples.len(),
                self.config.window
            ),
            LeakStatus::Steady => "no sustained growth".to_owned(),
            LeakStatus::Leak => allocated.map_or_else(String::new, |t| {
                format!(
                    "live allocations grow {:.0} bytes/s ({:.1} MiB over {window_s:.0} s, confidence {:.4}): something keeps what it allocates; take a heap profile",
                    t.slope_bytes_per_s,
                    t.growth_bytes / 1_048_576.0,
                    t.confidence
                )
            }),
            LeakStatus::Fragmentation => resident.map_or_else(String::new, |t| {
                format!(
                    "resident memory grows {:.0} bytes/s (confidence {:.4}) while live allocations stay flat: fragmentation or retained pages; purge or shorten dirty_decay_ms",
                    t.slope_bytes_per_s, t.confidence
                )
            }),
        };
        self.last = Some(LeakVerdict {
            status,
            allocated,
            resident,
            window_s,
            samples: self.samples.len(),
            since_s: sample.at_s - self.status_since,
            message,
        });
        status
    }

    /// The latest verdict.
    pub fn verdict(&self) -> LeakVerdict {
        self.last.clone().unwrap_or_else(|| LeakVerdict {
            status: LeakStatus::WarmingUp,
            allocated: None,
            resident: None,
            window_s: 0.0,
            samples: 0,
            since_s: 0.0,
            message: "no sample yet".to_owned(),
        })
    }

    fn sustained(&self, t: &Trend) -> bool {
        t.confidence >= self.config.min_confidence
            && t.half_slopes_bytes_per_s
                .iter()
                .all(|h| *h > 0.0 && *h >= 0.5 * t.slope_bytes_per_s)
            && t.growth_bytes >= self.config.min_growth_bytes as f64
            && t.growth_bytes >= self.config.min_growth_fraction * t.level_bytes
    }

    fn trend(&self, value: impl Fn(&MemorySample) -> u64) -> Trend {
        let points: Vec<(f64, f64)> = self
            .samples
            .iter()
            .map(|s| (s.at_s, value(s) as f64))
            .collect();
        let slope = theil_sen_slope(&points);
        let (first, second) = points.split_at(points.len() / 2);
        let half_slopes_bytes_per_s = [theil_sen_slope(first), theil_sen_slope(second)];
        let span = match (points.first(), points.last()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        };
        let mut levels: Vec<f64> = points.iter().map(|p| p.1).collect();
        Trend {
            slope_bytes_per_s: slope,
            half_slopes_bytes_per_s,
            confidence: mann_kendall_confidence(&points),
            growth_bytes: slope * span,
            level_bytes: perf_core::median(&mut levels),
        }
    }
}

/// The median of the slopes between every pair of points (pairs at the
/// same time skipped).
pub(crate) fn theil_sen_slope(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dx = b.0 - a.0;
            if dx.abs() > f64::EPSILON {
                slopes.push((b.1 - a.1) / dx);
            }
        }
    }
    perf_core::median(&mut slopes)
}

/// 1 - p of the one-sided Mann-Kendall test for an increasing trend (with
/// the variance corrected for ties and a continuity correction).
pub(crate) fn mann_kendall_confidence(points: &[(f64, f64)]) -> f64 {
    let n = points.len();
    if n < 3 {
        return 0.0;
    }
    let mut s: i64 = 0;
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            s += match b.1.partial_cmp(&a.1) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
    values.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut run = 1.0;
    for w in values.windows(2) {
        if w[0] == w[1] {
            run += 1.0;
        } else {
            ties += run * (run - 1.0) * (2.0 * run + 5.0);
            run = 1.0;
        }
    }
    ties += run * (run - 1.0) * (2.0 * run + 5.0);
    let nf = n as f64;
    let variance = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    if variance <= 0.0 || s <= 0 {
        return 0.0;
    }
    let z = (s as f64 - 1.0) / variance.sqrt();
    normal_cdf(z)
}

/// The standard normal distribution function (Abramowitz and Stegun 7.1.26
/// for erf, absolute error under 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    let erf = if x >= 0.0 { erf } else { -erf };
    0.5 * (1.0 + erf)
}

perf_core::config_builder! {
    /// Builds a [`LeakDetectorConfig`].
    LeakDetectorConfig => LeakDetectorConfigBuilder, Error {
        warmup: HumanDuration => into,
        window: usize,
        min_confidence: f64,
        min_growth_bytes: u64,
        min_growth_fraction: f64,
        consecutive: u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> LeakDetector {
        LeakDetector::new(LeakDetectorConfig {
            warmup: Duration::from_secs(5).into(),
            window: 40,
            ..LeakDetectorConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn theil_sen_ignores_spikes_and_mann_kendall_sees_order() {
        let mut points: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 10.0 * i as f64)).collect();
        points[10].1 = 1e9;
        points[30].1 = -1e9;
        assert!((theil_sen_slope(&points) - 10.0).abs() < 0.5);
        assert!(mann_kendall_confidence(&points) > 0.999);
        let flat: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(mann_kendall_confidence(&flat), 0.0);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-3);
        assert!((normal_cdf(-1.0) - 0.1587).abs() < 1e-3);
    }

    #[test]
    fn resident_growth_with_flat_allocations_is_fragmentation() {
        let mut d = detector();
        let mut status = LeakStatus::WarmingUp;
        for t in 0..120u64 {
            let noise = (t * 7919 % 13) << 16;
            status = d.observe(MemorySample {
                at_s: t as f64,
                allocated_bytes: (200 << 20) + noise,
                resident_bytes: (300 << 20) + t * (2 << 20),
            });
        }
        assert_eq!(status, LeakStatus::Fragmentation, "{:?}", d.verdict());
        assert!(d.verdict().message.contains("fragmentation"));
    }

    #[test]
    fn noise_around_a_level_and_a_step_are_not_leaks() {
        let mut d = detector();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for t in 0..2_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let noise = rng % (32 << 20);
            // A one-off step up (a cache filling) at t = 500.
            let level = if t < 500 { 100 << 20 } else { 160 << 20 };
            let status = d.observe(MemorySample {
                at_s: t as f64,
                allocated_bytes: level + noise,
                resident_bytes: level + noise + (50 << 20),
            });
            assert!(
                matches!(status, LeakStatus::WarmingUp | LeakStatus::Steady),
                "t={t}: {:?}",
                d.verdict()
            );
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = LeakDetector::new(LeakDetectorConfig {
            window: 2,
            ..LeakDetectorConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("window:"), "{err}");
    }
}
