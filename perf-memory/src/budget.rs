//! A memory budget: stay under a limit instead of growing until the kernel
//! kills the process.
//!
//! [`MemoryGuard::observe`] takes the process's resident size. Over the
//! soft mark it relieves pressure: the allocator purges its unused pages and
//! every registered reliever (a cache, a pool) shrinks. Over the hard mark
//! [`MemoryGuard::admit`] refuses new work with a retry delay, which a
//! server turns into `503 Service Unavailable` with `Retry-After`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use perf_core::ByteSize;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The smallest limit a budget may have.
const MIN_LIMIT: u64 = 16 << 20;

/// The limit and its marks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct MemoryBudget {
    /// Resident memory allowed (default 512 MiB).
    pub limit: ByteSize,
    /// Fraction of the limit where relief starts (default 0.8).
    pub soft_fraction: f64,
    /// Fraction of the limit where new work is refused (default 0.95).
    pub hard_fraction: f64,
    /// Seconds a refused client is told to wait (default 5).
    pub retry_after_s: u64,
    /// Where `limit` came from: `configured`, or `cgroup` when the
    /// process's control group allows less ([`MemoryBudget::within`]; not
    /// part of a configuration: [`BudgetStatus::limit_source`] shows it).
    #[serde(skip)]
    pub limit_source: LimitSource,
}

/// Where a budget's limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LimitSource {
    /// The configuration (or the default).
    #[default]
    Configured,
    /// The memory limit of the process's control group, lower than the configured one.
    Cgroup,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        Self {
            limit: ByteSize(512 << 20),
            soft_fraction: 0.8,
            hard_fraction: 0.95,
            retry_after_s: 5,
            limit_source: LimitSource::Configured,
        }
    }
}

impl MemoryBudget {
    /// This budget inside a control group whose memory limit is
    /// `cgroup_limit` bytes: the limit becomes the cgroup's when that is
    /// lower than the configured one (a 512 MiB pod with the default 512 MiB
    /// budget keeps it; a 256 MiB pod lowers it), and `limit_source` says so.
    ///
    /// ```
    /// use perf_memory::{LimitSource, MemoryBudget};
    /// let budget = MemoryBudget::default().within(Some(256 << 20));
    /// assert_eq!(budget.limit.bytes(), 256 << 20);
    /// assert_eq!(budget.limit_source, LimitSource::Cgroup);
    /// assert_eq!(MemoryBudget::default().within(None).limit_source, LimitSource::Configured);
    /// ```
    /// A cgroup limit under the smallest budget (16 MiB) is not taken: the
    /// process could not run there anyway, and the budget would not validate.
    pub fn within(mut self, cgroup_limit: Option<u64>) -> Self {
        if let Some(limit) = cgroup_limit
            && limit < self.limit.bytes()
            && limit >= MIN_LIMIT
        {
            self.limit = ByteSize(limit);
            self.limit_source = LimitSource::Cgroup;
        }
        self
    }

    /// Checks the fields; the error names the bad one and the range.
    pub fn validate(&self) -> Result<()> {
        if self.limit.bytes() < MIN_LIMIT {
            return Err(Error::Invalid {
                field: "limit",
                message: format!("{} is below the smallest allowed, 16MiB", self.limit),
            });
        }
        if !(0.1..1.0).contains(&self.soft_fraction) {
            return Err(Error::Invalid {
                field: "soft_fraction",
                message: format!("{} must be at least 0.1 and below 1", self.soft_fraction),
            });
        }
        if !(self.soft_fraction..=1.0).contains(&self.hard_fraction)
            || self.hard_fraction <= self.soft_fraction
        {
            return Err(Error::Invalid {
                field: "hard_fraction",
                message: format!(
                    "{} must be above soft_fraction ({}) and at most 1",
                    self.hard_fraction, self.soft_fraction
                ),
            });
        }
        if !(1..=3600).contains(&self.retry_after_s) {
            return Err(Error::Invalid {
                field: "retry_after_s",
                message: format!(
                    "{} is outside the allowed range 1 to 3600",
                    self.retry_after_s
                ),
            });
        }
        Ok(())
    }

    /// The soft mark in bytes.
    pub fn soft_bytes(&self) -> u64 {
        perf_core::num::saturating_u64(self.limit.bytes() as f64 * self.soft_fraction)
    }

    /// The hard mark in bytes.
    pub fn hard_bytes(&self) -> u64 {
        perf_core::num::saturating_u64(self.limit.bytes() as f64 * self.hard_fraction)
    }

    /// Where `resident` bytes stand.
    pub fn pressure(&self, resident: u64) -> Pressure {
        if resident >= self.hard_bytes() {
            Pressure::Hard
        } else if resident >= self.soft_bytes() {
            Pressure::Soft
        } else {
            Pressure::Normal
        }
    }
}

/// How close to the limit the process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Pressure {
    /// Under the soft mark.
    Normal,
    /// Between the marks: relieving.
    Soft,
    /// Over the hard mark: refusing new work.
    Hard,
}

impl Pressure {
    fn from_u8(v: u8) -> Self {
        match v {
            2 => Self::Hard,
            1 => Self::Soft,
            _ => Self::Normal,
        }
    }
}

/// What the guard has seen and done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetStatus {
    /// The budget.
    pub budget: MemoryBudget,
    /// Where its limit came from: the configuration, or the cgroup's lower limit.
    #[serde(default)]
    pub limit_source: LimitSource,
    /// Resident bytes at the last observation.
    pub resident_bytes: u64,
    /// `resident / limit`.
    pub used_fraction: f64,
    /// Where that stands.
    pub pressure: Pressure,
    /// Relief rounds run (purge and shrink).
    pub reliefs: u64,
    /// Objects or entries the relievers dropped in all.
    pub relieved_items: u64,
    /// Requests refused over the hard mark.
    pub refused: u64,
}

/// Something that can give memory back: returns how many items it dropped.
pub type Reliever = Box<dyn Fn() -> u64 + Send + Sync>;

/// Enforces a [`MemoryBudget`].
///
/// ```
/// use perf_memory::{MemoryBudget, MemoryGuard, Pressure};
/// use perf_core::ByteSize;
/// let guard = MemoryGuard::new(MemoryBudget::builder().limit(ByteSize(100 << 20)).build()?)?;
/// guard.add_reliever("cache", Box::new(|| 42));
/// assert_eq!(guard.observe(50 << 20), Pressure::Normal);
/// assert!(guard.admit().is_ok());
/// assert_eq!(guard.observe(85 << 20), Pressure::Soft);
/// assert_eq!(guard.status().relieved_items, 42);
/// assert_eq!(guard.observe(99 << 20), Pressure::Hard);
/// assert_eq!(guard.admit().unwrap_err().as_secs(), 5);
/// # Ok::<(), perf_memory::Error>(())
/// ```
pub struct MemoryGuard {
    budget: MemoryBudget,
    pressure: AtomicU8,
    resident: AtomicU64,
    reliefs: AtomicU64,
    relieved: AtomicU64,
    refused: AtomicU64,
    relievers: Mutex<Vec<(String, Reliever)>>,
    last_relief: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for MemoryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGuard")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// Relief runs at most this often while pressure lasts.
const RELIEF_INTERVAL: Duration = Duration::from_secs(5);

impl MemoryGuard {
    /// A guard for `budget` (validated).
    pub fn new(budget: MemoryBudget) -> Result<Self> {
        budget.validate()?;
        Ok(Self {
            budget,
            pressure: AtomicU8::new(0),
            resident: AtomicU64::new(0),
            reliefs: AtomicU64::new(0),
            relieved: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            relievers: Mutex::new(Vec::new()),
            last_relief: Mutex::new(None),
        })
    }

    /// Registers something to shrink over the soft mark.
    pub fn add_reliever(&self, name: impl Into<String>, reliever: Reliever) {
        if let Ok(mut list) = self.relievers.lock() {
            list.push((name.into(), reliever));
        }
    }

    /// Takes the resident size now; relieves over the soft mark (on
    /// entering it, then at most every 5 s while it lasts).
    pub fn observe(&self, resident: u64) -> Pressure {
        let pressure = self.budget.pressure(resident);
        self.resident.store(resident, Ordering::Relaxed);
        let before = Pressure::from_u8(self.pressure.swap(pressure as u8, Ordering::Relaxed));
        if before != pressure {
            tracing::debug!(from = ?before, to = ?pressure, resident, limit = %self.budget.limit, "memory pressure changed");
        }
        if pressure >= Pressure::Soft {
            let due = self.last_relief.lock().map_or(true, |mut last| {
                let due =
                    before < pressure || last.is_none_or(|at| at.elapsed() >= RELIEF_INTERVAL);
                if due {
                    *last = Some(Instant::now());
                }
                due
            });
            if due {
                self.relieve();
            }
        }
        pressure
    }

    /// Purges the allocator and runs every reliever now; returns the items dropped.
    pub fn relieve(&self) -> u64 {
        // Without jemalloc there is nothing to purge; the relievers still run.
        let _ = crate::purge_now();
        let dropped: u64 = self
            .relievers
            .lock()
            .map(|list| list.iter().map(|(_, r)| r()).sum())
            .unwrap_or(0);
        self.reliefs.fetch_add(1, Ordering::Relaxed);
        self.relieved.fetch_add(dropped, Ordering::Relaxed);
        dropped
    }

    /// `Ok` when new work may start; over the hard mark, the delay to tell
    /// the client to wait.
    pub fn admit(&self) -> std::result::Result<(), Duration> {
        if Pressure::from_u8(self.pressure.load(Ordering::Relaxed)) == Pressure::Hard {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Err(Duration::from_secs(self.budget.retry_after_s))
        } else {
            Ok(())
        }
    }

    /// The pressure at the last observation.
    pub fn pressure(&self) -> Pressure {
        Pressure::from_u8(self.pressure.load(Ordering::Relaxed))
    }

    /// What the guard has seen and done.
    pub fn status(&self) -> BudgetStatus {
        let resident = self.resident.load(Ordering::Relaxed);
        BudgetStatus {
            limit_source: self.budget.limit_source,
            budget: self.budget,
            resident_bytes: resident,
            used_fraction: resident as f64 / self.budget.limit.bytes().max(1) as f64,
            pressure: self.pressure(),
            reliefs: self.reliefs.load(Ordering::Relaxed),
            relieved_items: self.relieved.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

perf_core::config_builder! {
    /// Builds a [`MemoryBudget`] (from the defaults, its limit's source is
    /// `configured`; [`MemoryBudget::within`] lowers it to a cgroup's).
    MemoryBudget => MemoryBudgetBuilder, Error {
        limit: ByteSize,
        soft_fraction: f64,
        hard_fraction: f64,
        retry_after_s: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn relief_runs_on_entering_soft_and_not_on_every_sample() {
        let guard = MemoryGuard::new(MemoryBudget::default()).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        guard.add_reliever(
            "counting",
            Box::new(move || {
                seen.fetch_add(1, Ordering::Relaxed);
                10
            }),
        );
        let mib = 1 << 20;
        assert_eq!(guard.observe(100 * mib), Pressure::Normal);
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        assert_eq!(guard.observe(420 * mib), Pressure::Soft);
        for _ in 0..10 {
            guard.observe(420 * mib);
        }
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "once per 5 s while it lasts"
        );
        assert_eq!(guard.observe(500 * mib), Pressure::Hard);
        assert_eq!(
            calls.load(Ordering::Relaxed),
            2,
            "entering hard relieves again"
        );
        assert!(guard.admit().is_err());
        assert!(guard.admit().is_err());
        assert_eq!(guard.observe(100 * mib), Pressure::Normal);
        assert!(guard.admit().is_ok());
        let s = guard.status();
        assert_eq!((s.reliefs, s.relieved_items, s.refused), (2, 20, 2));
    }

    #[test]
    fn a_status_reads_back_and_shows_where_the_limit_came_from() {
        let guard = MemoryGuard::new(MemoryBudget::default().within(Some(256 << 20))).unwrap();
        let json = serde_json::to_string(&guard.status()).unwrap();
        let back: BudgetStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back.limit_source, LimitSource::Cgroup, "{json}");
        assert_eq!(back.budget.limit.bytes(), 256 << 20);
        let budget: MemoryBudget =
            serde_json::from_str(&serde_json::to_string(&back.budget).unwrap()).unwrap();
        assert_eq!(budget.limit.bytes(), 256 << 20);
    }

    #[test]
    fn bad_budgets_name_the_field() {
        for (budget, field) in [
            (
                MemoryBudget {
                    limit: ByteSize(1 << 20),
                    ..MemoryBudget::default()
                },
                "limit",
            ),
            (
                MemoryBudget {
                    soft_fraction: 1.5,
                    ..MemoryBudget::default()
                },
                "soft_fraction",
            ),
            (
                MemoryBudget {
                    hard_fraction: 0.5,
                    ..MemoryBudget::default()
                },
                "hard_fraction",
            ),
            (
                MemoryBudget {
                    retry_after_s: 0,
                    ..MemoryBudget::default()
                },
                "retry_after_s",
            ),
        ] {
            let err = budget.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
