//! # perf-memory
//!
//! Memory efficiency for Rust services: spend less, see where it goes, and
//! stay under a limit.
//!
//! - [`Pool`]: a bounded lock-free object pool with a reset hook and counters;
//! - [`Cache`]: moka caches bounded by entries or bytes, with TTL / idle
//!   expiry and hit, miss, load and eviction counters exported to `metrics`;
//! - [`AllocatorStats`], [`MemoryTuning`], [`purge_now`]: jemalloc's figures
//!   and its run-time knobs (feature `jemalloc`);
//! - [`Profiler`]: CPU and heap profiles as pprof and flamegraph SVG
//!   (feature `profiling`);
//! - [`LeakDetector`]: sustained growth found by a robust trend fit, a leak
//!   told from fragmentation;
//! - [`MemoryGuard`]: a [`MemoryBudget`] that relieves pressure over a soft
//!   mark and refuses new work over a hard one.
//!
//! Reading allocator statistics needs the `jemalloc` feature *and*
//! `tikv-jemallocator` installed as the program's global allocator:
//!
//! ```
//! # #[cfg(feature = "jemalloc")]
//! #[global_allocator]
//! static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! # #[cfg(feature = "jemalloc")]
//! # fn main() -> Result<(), perf_memory::Error> {
//! let block = vec![7u8; 8 << 20];
//! let stats = perf_memory::AllocatorStats::read()?;
//! assert!(stats.allocated_bytes >= 8 << 20);
//! assert!(stats.resident_bytes >= stats.active_bytes);
//! println!("fragmentation: {} bytes", stats.fragmentation_bytes);
//! # drop(block);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "jemalloc"))]
//! # fn main() {}
//! ```

mod advice;

/// The Rust blocks of `docs/performance-tuning.md`, compiled and run.
#[cfg(doctest)]
#[doc = include_str!("../../docs/performance-tuning.md")]
struct PerformanceTuningGuide;
mod allocator;
mod budget;
mod cache;
mod error;
mod leak;
mod pool;
#[cfg(feature = "profiling")]
mod profiling;
mod tuning;

pub use advice::{
    allocator_advice, budget_advice, cache_advice, leak_advice, leaking_cache_advice, memory_advice,
};
pub use allocator::{AllocatorCounters, AllocatorStats};
pub use budget::{
    BudgetStatus, LimitSource, MemoryBudget, MemoryBudgetBuilder, MemoryGuard, Pressure, Reliever,
};
pub use cache::{Cache, CacheBuilder, CacheStats, describe_cache_metrics};
pub use error::{Error, Result};
pub use leak::{
    LeakDetector, LeakDetectorConfig, LeakDetectorConfigBuilder, LeakStatus, LeakVerdict,
    MemorySample, Trend,
};
pub use pool::{OwnedPooled, Pool, PoolBuilder, PoolStats, Pooled};
#[cfg(feature = "profiling")]
pub use profiling::{
    MAX_PROFILE_S, Profile, ProfileKind, ProfileRequest, ProfileSession, Profiler,
};
pub use tuning::{MAX_DECAY_MS, MemoryTuning, MemoryTuningBuilder, purge_now};
