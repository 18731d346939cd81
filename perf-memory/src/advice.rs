//! Advice from what perf-memory measures: cache sizes, allocator tuning,
//! leaks and the memory budget, as [`Recommendation`]s.

use perf_core::{ByteSize, Recommendation, Severity};

use crate::{
    AllocatorStats, BudgetStatus, CacheStats, LeakStatus, LeakVerdict, MemoryTuning, Pressure,
};

/// A cache that misses most lookups while evicting: give it more room.
/// Needs at least 1,000 lookups to say anything.
///
/// ```
/// use perf_memory::{cache_advice, CacheStats};
/// let thrashing = CacheStats { name: "pages".into(), hits: 2_000, misses: 8_000, evictions: 7_000,
///     entries: 1_000, capacity: 1_000, hit_ratio: Some(0.2), ..CacheStats::default() };
/// assert_eq!(cache_advice(&thrashing).unwrap().kind, "cache_size");
/// ```
pub fn cache_advice(s: &CacheStats) -> Option<Recommendation> {
    let lookups = s.hits + s.misses;
    let ratio = s.hit_ratio?;
    if lookups < 1_000 {
        return None;
    }
    if ratio < 0.5 && s.evictions * 5 >= s.misses {
        return Some(
            Recommendation::new(
                "cache_size",
                Severity::Warning,
                format!(
                    "cache {} misses {:.0} % of lookups while evicting: it is too small",
                    s.name,
                    100.0 * (1.0 - ratio)
                ),
            )
            .evidence("cache", &s.name)
            .evidence("hit_ratio", ratio)
            .evidence("lookups", lookups)
            .evidence("evictions", s.evictions)
            .evidence("capacity", s.capacity)
            .action(format!(
                "raise the capacity of cache {} from {} to {} and watch the hit ratio",
                s.name,
                s.capacity,
                s.capacity.saturating_mul(4)
            )),
        );
    }
    // weighted_size and capacity are both bytes (with a weigher) or both entries.
    if ratio > 0.95
        && s.capacity >= 1_000
        && s.weighted_size.saturating_mul(10) < s.capacity
        && s.evictions == 0
    {
        return Some(
            Recommendation::new(
                "cache_size",
                Severity::Info,
                format!("cache {} uses under 10 % of its room", s.name),
            )
            .evidence("cache", &s.name)
            .evidence("entries", s.entries)
            .evidence("weighted_size", s.weighted_size)
            .evidence("capacity", s.capacity)
            .action(format!(
                "lower the capacity of cache {} to about {}",
                s.name,
                (s.weighted_size * 2).max(100)
            )),
        );
    }
    None
}

/// While the leak detector sees live allocations grow, a cache that only
/// grows is the first suspect: at least 1,000 entries, nothing evicted or
/// expired, and more lookups missing than hitting (or no lookups at all:
/// values written under keys nobody asks for again, such as request ids or
/// timestamps). Such a cache grows until its bound, which was set for
/// entries the size nobody measured. Says nothing unless the verdict is a
/// leak: a cold cache is otherwise just cold.
///
/// ```
/// use perf_memory::{leaking_cache_advice, CacheStats, LeakStatus, LeakVerdict};
/// let growing = CacheStats { name: "sessions".into(), misses: 5_000, entries: 5_000,
///     weighted_size: 5_000, capacity: 1_000_000, hit_ratio: Some(0.0), ..CacheStats::default() };
/// let mut verdict = LeakVerdict::default();
/// assert!(leaking_cache_advice(&growing, &verdict).is_none());
/// verdict.status = LeakStatus::Leak;
/// assert_eq!(leaking_cache_advice(&growing, &verdict).unwrap().kind, "cache_size");
/// ```
pub fn leaking_cache_advice(s: &CacheStats, verdict: &LeakVerdict) -> Option<Recommendation> {
    if verdict.status != LeakStatus::Leak
        || s.entries < 1_000
        || s.evictions > 0
        || s.expirations > 0
        || s.hit_ratio.is_some_and(|r| r >= 0.5)
    {
        return None;
    }
    let mut r = Recommendation::new(
        "cache_size",
        Severity::Critical,
        format!(
            "cache {} only grows while memory leaks: {} entries, nothing evicted or expired",
            s.name, s.entries
        ),
    )
    .evidence("cache", &s.name)
    .evidence("entries", s.entries)
    .evidence("weighted_size", s.weighted_size)
    .evidence("capacity", s.capacity)
    .evidence("hit_ratio", s.hit_ratio)
    .action(format!(
        "bound cache {} by bytes (Cache::builder(..).max_bytes(..)) and give it a time_to_live; if its keys are unique (request ids, timestamps) stop caching under them",
        s.name
    ));
    if let Some(t) = &verdict.allocated {
        r = r.evidence("allocated_slope_bytes_per_s", t.slope_bytes_per_s);
    }
    Some(r)
}

/// Freed pages held as dirty, or space lost to fragmentation: tune the decay.
pub fn allocator_advice(stats: &AllocatorStats, tuning: &MemoryTuning) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let dirty_share = stats.dirty_bytes as f64 / stats.resident_bytes.max(1) as f64;
    if stats.dirty_bytes >= 64 << 20 && dirty_share > 0.25 {
        out.push(
            Recommendation::new(
                "allocator_tuning",
                Severity::Warning,
                format!("{} of resident memory are freed pages not yet returned", ByteSize(stats.dirty_bytes)),
            )
            .evidence("dirty_bytes", stats.dirty_bytes)
            .evidence("resident_bytes", stats.resident_bytes)
            .evidence("dirty_decay_ms", tuning.dirty_decay_ms)
            .evidence("background_threads", tuning.background_threads)
            .action("memory_tuning: {background_threads: true, dirty_decay_ms: 1000, muzzy_decay_ms: 0}"),
        );
    }
    let frag_share = stats.fragmentation_bytes as f64 / stats.active_bytes.max(1) as f64;
    if stats.fragmentation_bytes >= 32 << 20 && frag_share > 0.3 {
        out.push(
            Recommendation::new(
                "allocator_tuning",
                Severity::Info,
                format!("{:.0} % of active pages hold no live data (fragmentation)", 100.0 * frag_share),
            )
            .evidence("fragmentation_bytes", stats.fragmentation_bytes)
            .evidence("active_bytes", stats.active_bytes)
            .action("pool long-lived buffers of one size (perf_memory::Pool) instead of allocating them in many sizes; take a heap profile to see who allocates"),
        );
    }
    out
}

/// A leak or growing fragmentation found by the detector.
pub fn leak_advice(verdict: &LeakVerdict) -> Option<Recommendation> {
    let (severity, title, action) = match verdict.status {
        LeakStatus::Leak => (
            Severity::Critical,
            "live allocations keep growing: a leak",
            r#"take a heap profile: POST /performance/profiling/start {"kind": "heap", "duration_s": 120}, then GET /performance/profiling/{id}?format=svg"#,
        ),
        LeakStatus::Fragmentation => (
            Severity::Warning,
            "resident memory grows while live allocations stay flat",
            "memory_tuning: {dirty_decay_ms: 1000, background_threads: true}",
        ),
        LeakStatus::WarmingUp | LeakStatus::Steady => return None,
    };
    let mut r = Recommendation::new("memory_leak", severity, title)
        .evidence("message", &verdict.message)
        .action(action);
    if let Some(t) = &verdict.allocated {
        r = r
            .evidence("allocated_slope_bytes_per_s", t.slope_bytes_per_s)
            .evidence("confidence", t.confidence);
    }
    if let Some(t) = &verdict.resident {
        r = r.evidence("resident_slope_bytes_per_s", t.slope_bytes_per_s);
    }
    Some(r)
}

/// Over the budget's marks.
pub fn budget_advice(status: &BudgetStatus) -> Option<Recommendation> {
    let severity = match status.pressure {
        Pressure::Normal => return None,
        Pressure::Soft => Severity::Warning,
        Pressure::Hard => Severity::Critical,
    };
    Some(
        Recommendation::new(
            "memory_budget",
            severity,
            format!("resident memory is at {:.0} % of the budget", 100.0 * status.used_fraction),
        )
        .evidence("resident_bytes", status.resident_bytes)
        .evidence("limit_bytes", status.budget.limit.bytes())
        .evidence("refused", status.refused)
        .action("find what grows (GET /performance/metrics/memory, a heap profile); or raise memory_budget.limit with the container limit"),
    )
}

/// What perf-memory can say about a process at once, from its readings:
/// the budget, the leak verdict, the allocator (when jemalloc's figures and
/// the tuning in force are known) and every watched cache. An embedding
/// service calls this with what it measured; perf-server's
/// recommendations route does the same.
///
/// ```
/// use perf_memory::{memory_advice, LeakVerdict, MemoryBudget, MemoryGuard};
/// // A budget far above what a doc test uses: no pressure, nothing to say.
/// let guard = MemoryGuard::new(MemoryBudget::builder().limit("64GiB".parse()?).build()?)?;
/// let advice = memory_advice(&guard.status(), &LeakVerdict::default(), None, &[]);
/// assert!(advice.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn memory_advice(
    budget: &BudgetStatus,
    leak: &LeakVerdict,
    allocator: Option<(&AllocatorStats, &MemoryTuning)>,
    caches: &[CacheStats],
) -> Vec<Recommendation> {
    let mut out: Vec<Recommendation> = budget_advice(budget)
        .into_iter()
        .chain(leak_advice(leak))
        .collect();
    if let Some((stats, tuning)) = allocator {
        out.extend(allocator_advice(stats, tuning));
    }
    for cache in caches {
        out.extend(cache_advice(cache));
        out.extend(leaking_cache_advice(cache, leak));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AllocatorCounters;

    #[test]
    fn caches_are_advised_only_with_enough_evidence() {
        let base = CacheStats {
            name: "c".into(),
            capacity: 10_000,
            ..CacheStats::default()
        };
        let healthy = CacheStats {
            hits: 9_000,
            misses: 1_000,
            entries: 5_000,
            evictions: 100,
            hit_ratio: Some(0.9),
            ..base.clone()
        };
        assert!(cache_advice(&healthy).is_none());
        let few = CacheStats {
            hits: 10,
            misses: 90,
            evictions: 90,
            hit_ratio: Some(0.1),
            ..base.clone()
        };
        assert!(cache_advice(&few).is_none(), "100 lookups say nothing");
        let cold_but_roomy = CacheStats {
            hits: 1_000,
            misses: 9_000,
            evictions: 0,
            entries: 9_000,
            hit_ratio: Some(0.1),
            ..base.clone()
        };
        assert!(
            cache_advice(&cold_but_roomy).is_none(),
            "misses without evictions: the keys are just new"
        );
        let by_bytes = CacheStats {
            hits: 99_000,
            misses: 1_000,
            entries: 16,
            weighted_size: 1 << 20,
            capacity: 8 << 20,
            hit_ratio: Some(0.99),
            ..base.clone()
        };
        assert!(
            cache_advice(&by_bytes).is_none(),
            "16 entries of 64 KiB fill 1/8 of 8 MiB"
        );
        let oversized = CacheStats {
            hits: 99_000,
            misses: 1_000,
            evictions: 0,
            entries: 200,
            weighted_size: 200,
            hit_ratio: Some(0.99),
            ..base
        };
        assert_eq!(cache_advice(&oversized).unwrap().severity, Severity::Info);
    }

    #[test]
    fn a_cache_that_only_grows_is_named_only_during_a_leak() {
        let growing = CacheStats {
            name: "by_request_id".into(),
            misses: 20_000,
            entries: 20_000,
            capacity: 1_000_000,
            hit_ratio: Some(0.0),
            ..CacheStats::default()
        };
        let leak = LeakVerdict {
            status: LeakStatus::Leak,
            ..LeakVerdict::default()
        };
        let r = leaking_cache_advice(&growing, &leak).unwrap();
        assert_eq!(r.severity, Severity::Critical);
        assert!(r.action.contains("max_bytes"), "{}", r.action);
        // Written, never read: still a suspect.
        let write_only = CacheStats {
            misses: 0,
            hit_ratio: None,
            ..growing.clone()
        };
        assert!(leaking_cache_advice(&write_only, &leak).is_some());
        for (what, steady) in [
            ("steady memory", (growing.clone(), LeakVerdict::default())),
            (
                "fragmentation is not a leak of live data",
                (
                    growing.clone(),
                    LeakVerdict {
                        status: LeakStatus::Fragmentation,
                        ..LeakVerdict::default()
                    },
                ),
            ),
            (
                "a cache that evicts is at its bound",
                (
                    CacheStats {
                        evictions: 10,
                        ..growing.clone()
                    },
                    leak.clone(),
                ),
            ),
            (
                "a cache that expires entries drains",
                (
                    CacheStats {
                        expirations: 10,
                        ..growing.clone()
                    },
                    leak.clone(),
                ),
            ),
            (
                "a cache that mostly hits reuses its keys",
                (
                    CacheStats {
                        hits: 90_000,
                        hit_ratio: Some(0.82),
                        ..growing.clone()
                    },
                    leak.clone(),
                ),
            ),
            (
                "a small cache",
                (
                    CacheStats {
                        entries: 999,
                        ..growing.clone()
                    },
                    leak.clone(),
                ),
            ),
        ] {
            assert!(
                leaking_cache_advice(&steady.0, &steady.1).is_none(),
                "{what}"
            );
        }
    }

    #[test]
    fn allocator_advice_needs_real_waste() {
        let mib = 1u64 << 20;
        let fine = AllocatorStats::from_counters(AllocatorCounters {
            allocated: 100 * mib,
            active: 110 * mib,
            resident: 130 * mib,
            mapped: 200 * mib,
            retained: 0,
            metadata: 10 * mib,
        });
        assert!(allocator_advice(&fine, &MemoryTuning::default()).is_empty());
        let dirty = AllocatorStats::from_counters(AllocatorCounters {
            allocated: 100 * mib,
            active: 110 * mib,
            resident: 300 * mib,
            mapped: 400 * mib,
            retained: 0,
            metadata: 10 * mib,
        });
        let advice = allocator_advice(&dirty, &MemoryTuning::default());
        assert_eq!(advice.len(), 1);
        assert!(advice[0].action.contains("dirty_decay_ms"));
        let fragmented = AllocatorStats::from_counters(AllocatorCounters {
            allocated: 60 * mib,
            active: 120 * mib,
            resident: 130 * mib,
            mapped: 200 * mib,
            retained: 0,
            metadata: 5 * mib,
        });
        assert_eq!(
            allocator_advice(&fragmented, &MemoryTuning::default()).len(),
            1
        );
    }
}
