//! perf-memory inside a service, the way a service author wires it: a pool of
//! response buffers, a cache of rendered pages bounded by bytes, a memory
//! budget that sheds the cache over its soft mark and refuses work over its
//! hard mark, and a leak detector fed once a "second".
//!
//! The service is simulated (no network) so the program runs anywhere:
//! it handles a stream of requests, leaks on purpose from its 40th second
//! (a vector that is never cleared, as a forgotten debug log would), and
//! prints what each part saw: the leak detector flags the growth, the budget
//! sheds the cache over its soft mark and refuses requests over its hard one.
//!
//! ```sh
//! cargo run --release -p perf-examples --example memory_service
//! ```
#![allow(clippy::print_stdout)] // an example prints what it found

use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_core::ByteSize;
use perf_memory::{
    Cache, LeakDetector, LeakDetectorConfig, LeakStatus, MemoryBudget, MemoryGuard, MemorySample,
    Pool,
};

fn main() -> Result<(), perf_memory::Error> {
    // Buffers for responses: taken per request, cleared and reused.
    let buffers = Pool::builder(64, || Vec::<u8>::with_capacity(16 * 1024))
        .reset(Vec::clear)
        .keep_if(|b| b.capacity() <= 256 * 1024)
        .build();
    // Rendered pages, at most 4 MiB of them, five minutes each.
    let pages: Cache<u64, Arc<Vec<u8>>> = Cache::builder("pages")
        .max_bytes(4 << 20, |_, page: &Arc<Vec<u8>>| {
            u32::try_from(page.len()).unwrap_or(u32::MAX)
        })
        .time_to_live(Duration::from_secs(300))
        .build();
    // The budget is the "resident" size of this simulation: what the cache
    // and the leak hold. The cache is shed over the soft mark.
    let guard = MemoryGuard::new(MemoryBudget::builder().limit(ByteSize(16 << 20)).build()?)?;
    let shed = pages.clone();
    guard.add_reliever(
        "pages",
        Box::new(move || {
            shed.invalidate_all();
            1
        }),
    );
    let mut detector = LeakDetector::new(
        LeakDetectorConfig::builder()
            .warmup(Duration::from_secs(10))
            .window(30)
            .build()?,
    )?;
    let leak: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    let (mut served, mut refused) = (0u64, 0u64);
    let mut flagged_at = None;
    for second in 0..120u64 {
        for request in 0..200u64 {
            if guard.admit().is_err() {
                refused += 1;
                continue;
            }
            let key = (second * 7 + request) % 400;
            let page = pages.get_with(key, || {
                Arc::new(vec![b'x'; 4096 + (key as usize % 8) * 512])
            });
            let mut body = buffers.take();
            body.extend_from_slice(&page);
            served += 1;
            if second >= 40 {
                // The bug: the head of every body kept "for debugging".
                if let Ok(mut kept) = leak.lock() {
                    kept.extend_from_slice(&body[..1024]);
                }
            }
        }
        pages.run_pending_tasks();
        let leaked = leak.lock().map_or(0, |l| l.len() as u64);
        let resident = pages.stats().weighted_size + leaked;
        guard.observe(resident);
        let status = detector.observe(MemorySample {
            at_s: second as f64,
            allocated_bytes: resident,
            resident_bytes: resident,
        });
        if status == LeakStatus::Leak && flagged_at.is_none() {
            flagged_at = Some(second + 1);
        }
        if second % 20 == 19 {
            println!(
                "t={:>3}s resident {:>8} B  pressure {:?}  leak {:?}",
                second + 1,
                resident,
                guard.status().pressure,
                status
            );
        }
    }
    let pool = buffers.stats();
    let cache = pages.stats();
    let verdict = detector.verdict();
    println!("served {served}, refused {refused}");
    println!(
        "buffers: {} takes from the pool, {} new ({} kept at most)",
        pool.hits, pool.created, 64
    );
    println!(
        "pages: {} hits, {} misses, {} evictions, hit ratio {:.2}",
        cache.hits,
        cache.misses,
        cache.evictions,
        cache.hit_ratio.unwrap_or(0.0)
    );
    println!(
        "budget: {} reliefs (the page cache shed), {} requests refused over the hard mark",
        guard.status().reliefs,
        guard.status().refused
    );
    match flagged_at {
        Some(t) => {
            println!("leak detector: growth flagged as a leak at t={t}s (it began at t=40s)")
        }
        None => println!("leak detector: no leak flagged"),
    }
    println!(
        "leak detector now: {:?}: {}",
        verdict.status, verdict.message
    );
    Ok(())
}
