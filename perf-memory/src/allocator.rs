use serde::{Deserialize, Serialize};

/// What the allocator holds, in bytes, as jemalloc counts it.
///
/// - `allocated`: bytes in live allocations the program asked for;
/// - `active`: bytes in pages that hold live allocations (≥ allocated);
/// - `resident`: bytes physically resident in allocator-owned pages (≥ active);
/// - `mapped`: bytes in extents mapped by the allocator;
/// - `retained`: virtual memory kept for reuse but returned to the OS;
/// - `metadata`: the allocator's own bookkeeping.
///
/// Two figures are derived: `fragmentation_bytes = active - allocated` (space
/// lost inside pages) and `dirty_bytes = resident - active - metadata` (freed
/// pages not yet given back to the OS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllocatorStats {
    /// Bytes in live allocations.
    pub allocated_bytes: u64,
    /// Bytes in active pages.
    pub active_bytes: u64,
    /// Bytes resident in physical memory.
    pub resident_bytes: u64,
    /// Bytes in mapped extents.
    pub mapped_bytes: u64,
    /// Bytes retained (virtual, not resident).
    pub retained_bytes: u64,
    /// Bytes of allocator metadata.
    pub metadata_bytes: u64,
    /// `active - allocated`.
    pub fragmentation_bytes: u64,
    /// `resident - active - metadata`.
    pub dirty_bytes: u64,
}

/// jemalloc's raw counters, in bytes (`stats.allocated`, `stats.active`, ...):
/// what [`AllocatorStats::from_counters`] derives its figures from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorCounters {
    /// `stats.allocated`.
    pub allocated: u64,
    /// `stats.active`.
    pub active: u64,
    /// `stats.resident`.
    pub resident: u64,
    /// `stats.mapped`.
    pub mapped: u64,
    /// `stats.retained`.
    pub retained: u64,
    /// `stats.metadata`.
    pub metadata: u64,
}

impl AllocatorStats {
    /// Builds the statistics from raw counters, deriving fragmentation and dirty pages.
    ///
    /// ```
    /// use perf_memory::{AllocatorCounters, AllocatorStats};
    /// let s = AllocatorStats::from_counters(AllocatorCounters {
    ///     allocated: 100,
    ///     active: 150,
    ///     resident: 400,
    ///     metadata: 50,
    ///     ..AllocatorCounters::default()
    /// });
    /// assert_eq!((s.fragmentation_bytes, s.dirty_bytes), (50, 200));
    /// ```
    pub fn from_counters(c: AllocatorCounters) -> Self {
        Self {
            allocated_bytes: c.allocated,
            active_bytes: c.active,
            resident_bytes: c.resident,
            mapped_bytes: c.mapped,
            retained_bytes: c.retained,
            metadata_bytes: c.metadata,
            fragmentation_bytes: c.active.saturating_sub(c.allocated),
            dirty_bytes: c
                .resident
                .saturating_sub(c.active)
                .saturating_sub(c.metadata),
        }
    }

    /// Reads fresh figures from jemalloc (advancing its statistics epoch first).
    #[cfg(feature = "jemalloc")]
    pub fn read() -> crate::Result<Self> {
        use tikv_jemalloc_ctl::{epoch, stats};
        fn fail(name: &'static str) -> impl FnOnce(tikv_jemalloc_ctl::Error) -> crate::Error {
            move |e| crate::Error::Allocator {
                name,
                message: e.to_string(),
            }
        }
        epoch::advance().map_err(fail("epoch"))?;
        let to_u64 = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        Ok(Self::from_counters(AllocatorCounters {
            allocated: to_u64(stats::allocated::read().map_err(fail("stats.allocated"))?),
            active: to_u64(stats::active::read().map_err(fail("stats.active"))?),
            resident: to_u64(stats::resident::read().map_err(fail("stats.resident"))?),
            mapped: to_u64(stats::mapped::read().map_err(fail("stats.mapped"))?),
            retained: to_u64(stats::retained::read().map_err(fail("stats.retained"))?),
            metadata: to_u64(stats::metadata::read().map_err(fail("stats.metadata"))?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_figures_never_underflow() {
        let s = AllocatorStats::from_counters(AllocatorCounters {
            allocated: 100,
            active: 90,
            resident: 80,
            mapped: 0,
            retained: 0,
            metadata: 50,
        });
        assert_eq!(s.fragmentation_bytes, 0);
        assert_eq!(s.dirty_bytes, 0);
        let s = AllocatorStats::from_counters(AllocatorCounters {
            allocated: 100,
            active: 150,
            resident: 400,
            mapped: 500,
            retained: 10,
            metadata: 50,
        });
        assert_eq!(s.fragmentation_bytes, 50);
        assert_eq!(s.dirty_bytes, 200);
    }
}
