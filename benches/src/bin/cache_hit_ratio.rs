//! Hit ratios of `perf_memory::Cache` (moka: TinyLFU admission) and of a
//! plain LRU on the same traces: a Zipf trace, and the same trace cut by
//! scans. Deterministic; prints a table.
//!
//! `cargo run --release -p perf-benches --bin cache_hit_ratio`

use std::num::NonZeroUsize;

use perf_memory::Cache;

const KEYS: u64 = 100_000;
const ACCESSES: usize = 1_000_000;

fn lru_hit_ratio(trace: &[u64], capacity: usize) -> f64 {
    let mut lru = lru::LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN));
    let mut hits = 0usize;
    for k in trace {
        if lru.get(k).is_some() {
            hits += 1;
        } else {
            lru.put(*k, *k);
        }
    }
    hits as f64 / trace.len() as f64
}

fn moka_hit_ratio(trace: &[u64], capacity: usize) -> f64 {
    let cache: Cache<u64, u64> = Cache::lru(capacity as u64);
    for (i, k) in trace.iter().enumerate() {
        if cache.get(k).is_none() {
            cache.insert(*k, *k);
        }
        if i % 4096 == 0 {
            cache.run_pending_tasks();
        }
    }
    cache.stats().hit_ratio.unwrap_or(0.0)
}

fn main() {
    let traces = [
        (
            "zipf s=1.0",
            perf_benches::zipf_trace(KEYS, 1.0, ACCESSES, 42),
        ),
        (
            "zipf + scans (5000 new keys every 20000)",
            perf_benches::scan_heavy_trace(KEYS, ACCESSES, 20_000, 5_000, 42),
        ),
    ];
    #[allow(clippy::print_stdout)]
    {
        println!("| trace | capacity | perf_memory::Cache (moka) | Mutex<LruCache> |");
        println!("| --- | --- | --- | --- |");
        for (name, trace) in &traces {
            for capacity in [1_000usize, 10_000] {
                println!(
                    "| {name} | {capacity} | {:.1} % | {:.1} % |",
                    100.0 * moka_hit_ratio(trace, capacity),
                    100.0 * lru_hit_ratio(trace, capacity)
                );
            }
        }
    }
}
