//! This process's memory, watched: every host sample feeds perf-memory's
//! leak detector and memory guard; the guard's admission check is a
//! middleware (503 with `Retry-After` over the hard mark); the profiler takes
//! one CPU or heap profile at a time and finished profiles go to the store.

use std::sync::Mutex;
use std::time::Instant;

use actix_web::dev::ServiceRequest;
use perf_memory::{
    BudgetStatus, Cache, CacheStats, LeakDetector, LeakDetectorConfig, LeakVerdict, MemoryBudget,
    MemoryGuard, MemorySample, MemoryTuning,
};

use crate::api_error::ApiError;
use crate::monitor::HostSample;

type CacheProbe = Box<dyn Fn() -> CacheStats + Send + Sync>;

/// The budget, leak detector, watched caches and profiler of this process.
pub struct MemoryWatch {
    guard: MemoryGuard,
    leak: Mutex<LeakDetector>,
    caches: Mutex<Vec<CacheProbe>>,
    origin: Instant,
    #[cfg(feature = "profiling")]
    profiler: perf_memory::Profiler,
}

impl std::fmt::Debug for MemoryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWatch")
            .field("budget", &self.guard.status())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryWatch {
    fn default() -> Self {
        // The defaults are valid by construction.
        Self::new(MemoryBudget::default(), LeakDetectorConfig::default())
            .unwrap_or_else(|_| unreachable!("default memory settings are valid"))
    }
}

impl MemoryWatch {
    /// A watch with this budget and leak detector (both validated).
    pub fn new(budget: MemoryBudget, leak: LeakDetectorConfig) -> perf_memory::Result<Self> {
        Ok(Self {
            guard: MemoryGuard::new(budget)?,
            leak: Mutex::new(LeakDetector::new(leak)?),
            caches: Mutex::new(Vec::new()),
            origin: Instant::now(),
            #[cfg(feature = "profiling")]
            profiler: perf_memory::Profiler::new(),
        })
    }

    /// Feeds one host sample to the detector and the guard.
    pub fn observe(&self, sample: &HostSample) {
        let resident = sample.system.memory.process_rss_bytes;
        let allocated = sample.allocator.map_or(resident, |a| a.allocated_bytes);
        if let Ok(mut leak) = self.leak.lock() {
            leak.observe(MemorySample {
                at_s: self.origin.elapsed().as_secs_f64(),
                allocated_bytes: allocated,
                resident_bytes: resident,
            });
        }
        self.guard.observe(resident);
    }

    /// Watches `cache`: over the budget's soft mark it gives back half its
    /// entries, and its counters feed the cache advice of
    /// `/performance/recommendations` (a service embedding perf-server's
    /// watch registers its own caches the same way).
    pub fn watch_cache<K, V>(&self, cache: &Cache<K, V>)
    where
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let shrink = cache.clone();
        self.guard
            .add_reliever(cache.stats().name, Box::new(move || shrink.shrink_to(0.5)));
        let probe = cache.clone();
        self.caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(move || probe.stats()));
    }

    /// The counters of every watched cache.
    pub fn caches(&self) -> Vec<CacheStats> {
        self.caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|probe| probe())
            .collect()
    }

    /// The memory guard (to register relievers, or to admit work).
    pub fn guard(&self) -> &MemoryGuard {
        &self.guard
    }

    /// The budget and what the guard did.
    pub fn budget(&self) -> BudgetStatus {
        self.guard.status()
    }

    /// The latest leak verdict.
    pub fn leak(&self) -> LeakVerdict {
        self.leak
            .lock()
            .map(|l| l.verdict())
            .unwrap_or_else(|p| p.into_inner().verdict())
    }

    /// The allocator settings in force (none without jemalloc).
    pub fn tuning(&self) -> Option<MemoryTuning> {
        MemoryTuning::current().ok()
    }

    /// The profiler.
    #[cfg(feature = "profiling")]
    pub fn profiler(&self) -> &perf_memory::Profiler {
        &self.profiler
    }
}

/// Paths that answer even over the hard mark: probes, and how to see why
/// and what to do.
fn always_admitted(path: &str) -> bool {
    matches!(
        path,
        "/health"
            | "/ready"
            | "/metrics"
            | "/performance/metrics/memory"
            | "/performance/recommendations"
    )
}

/// A 503 when memory is over the budget's hard mark (the health, readiness
/// and metrics routes are always admitted), or `None`.
pub(crate) fn refusal(req: &ServiceRequest, memory: &MemoryWatch) -> Option<ApiError> {
    // One atomic read on the common path: under the hard mark, nothing else.
    if memory.guard().pressure() != perf_memory::Pressure::Hard || always_admitted(req.path()) {
        return None;
    }
    let retry = memory.guard().admit().err()?;
    let status = memory.budget();
    Some(ApiError::unavailable(
        format!(
            "memory is over the hard mark ({} of {} resident): new work is refused until it drops",
            perf_core::ByteSize(status.resident_bytes),
            status.budget.limit
        ),
        retry.as_secs().max(1),
    ))
}
