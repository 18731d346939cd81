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

impl AllocatorStats {
    /// Builds the statistics from raw counters, deriving fragmentation and dirty pages.
    pub fn from_counters(
        allocated: u64,
        active: u64,
        resident: u64,
        mapped: u64,
        retained: u64,
        metadata: u64,
    ) -> Self {
        Self {
            allocated_bytes: allocated,
            active_bytes: active,
            resident_bytes: resident,
            mapped_bytes: mapped,
            retained_bytes: retained,
            metadata_bytes: metadata,
            fragmentation_bytes: active.saturating_sub(allocated),
            dirty_bytes: resident.saturating_sub(active).saturating_sub(metadata),
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
        Ok(Self::from_counters(
            to_u64(stats::allocated::read().map_err(fail("stats.allocated"))?),
            to_u64(stats::active::read().map_err(fail("stats.active"))?),
            to_u64(stats::resident::read().map_err(fail("stats.resident"))?),
            to_u64(stats::mapped::read().map_err(fail("stats.mapped"))?),
            to_u64(stats::retained::read().map_err(fail("stats.retained"))?),
            to_u64(stats::metadata::read().map_err(fail("stats.metadata"))?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_figures_never_underflow() {
        let s = AllocatorStats::from_counters(100, 90, 80, 0, 0, 50);
        assert_eq!(s.fragmentation_bytes, 0);
        assert_eq!(s.dirty_bytes, 0);
        let s = AllocatorStats::from_counters(100, 150, 400, 500, 10, 50);
        assert_eq!(s.fragmentation_bytes, 50);
        assert_eq!(s.dirty_bytes, 200);
    }
}
