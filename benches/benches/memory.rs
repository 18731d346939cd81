//! perf-memory's hot paths beside the alternatives: a 4 KiB or 64 KiB buffer taken,
//! written and returned through our `Pool`, the maintained pool crates and
//! plain allocation (jemalloc), from one thread and from two; and `Cache`
//! lookups from two threads beside a mutex-guarded LRU.
//!
//! `cargo bench -p perf-benches --bench memory`

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use perf_memory::{Cache, Pool};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const PAYLOAD: [u8; 64] = [7; 64];

/// A 4 KiB buffer: jemalloc's thread cache serves these.
fn small() -> Vec<u8> {
    Vec::with_capacity(4 << 10)
}

/// A 64 KiB buffer: above jemalloc's thread cache limit (32 KiB), so each
/// one goes to the arena.
fn large() -> Vec<u8> {
    Vec::with_capacity(64 << 10)
}

/// One use of a buffer: write a small payload, read it.
#[inline]
fn use_buffer(buf: &mut Vec<u8>) -> usize {
    buf.extend_from_slice(&PAYLOAD);
    black_box(buf.as_slice()).len()
}

/// Runs `op` `iters` times on each of `threads` threads; the time of the slowest.
fn on_threads(threads: usize, iters: u64, op: Op) -> Duration {
    let start = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let op = Arc::clone(&op);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                for _ in 0..iters {
                    op();
                }
                began.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .max()
        .unwrap_or_default()
}

/// One timed operation, shareable between threads.
type Op = Arc<dyn Fn() + Send + Sync>;

fn contenders(fresh: fn() -> Vec<u8>) -> Vec<(&'static str, Op)> {
    let ours = Arc::new(Pool::builder(64, fresh).reset(Vec::clear).build());
    let linear = Arc::new(lockfree_object_pool::LinearObjectPool::new(
        fresh,
        Vec::clear,
    ));
    let spin = Arc::new(lockfree_object_pool::SpinLockObjectPool::new(
        fresh,
        Vec::clear,
    ));
    let mutex = Arc::new(lockfree_object_pool::MutexObjectPool::new(
        fresh,
        Vec::clear,
    ));
    let object_pool = Arc::new(object_pool::Pool::new(64, fresh));
    vec![
        (
            "plain allocation",
            Arc::new(move || {
                let mut buf = fresh();
                use_buffer(&mut buf);
            }),
        ),
        (
            "perf_memory::Pool",
            Arc::new(move || {
                use_buffer(&mut ours.take());
            }),
        ),
        (
            "lockfree_object_pool::LinearObjectPool",
            Arc::new(move || {
                use_buffer(&mut linear.pull());
            }),
        ),
        (
            "lockfree_object_pool::SpinLockObjectPool",
            Arc::new(move || {
                use_buffer(&mut spin.pull());
            }),
        ),
        (
            "lockfree_object_pool::MutexObjectPool",
            Arc::new(move || {
                use_buffer(&mut mutex.pull());
            }),
        ),
        (
            "object_pool::Pool",
            Arc::new(move || {
                let mut buf = object_pool.pull(fresh);
                buf.clear();
                use_buffer(&mut buf);
            }),
        ),
    ]
}

fn pools(c: &mut Criterion) {
    for (size, fresh) in [("4KiB", small as fn() -> Vec<u8>), ("64KiB", large)] {
        for threads in [1usize, 2] {
            let mut group = c.benchmark_group(format!("pool_{size}_buffer_{threads}_thread"));
            for (name, op) in contenders(fresh) {
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| on_threads(threads, iters, Arc::clone(&op)))
                });
            }
            group.finish();
        }
    }
}

/// A mutex around an LRU: the plain cache the issue compares against.
type MutexLru = Mutex<lru::LruCache<u64, u64>>;

fn caches(c: &mut Criterion) {
    let keys: Arc<Vec<u64>> = Arc::new(perf_benches::zipf_trace(100_000, 1.0, 1 << 16, 42));
    let ours: Arc<Cache<u64, u64>> = Arc::new(Cache::lru(10_000));
    let plain: Arc<MutexLru> = Arc::new(Mutex::new(lru::LruCache::new(
        std::num::NonZeroUsize::new(10_000).unwrap_or(std::num::NonZeroUsize::MIN),
    )));
    for k in keys.iter() {
        ours.insert(*k, *k);
        if let Ok(mut l) = plain.lock() {
            l.put(*k, *k);
        }
    }
    let mut group = c.benchmark_group("cache_zipf_lookup_2_threads");
    let at = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next = move |keys: &Vec<u64>| {
        let i = at.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        keys[i % keys.len()]
    };
    {
        let (ours, keys, next) = (Arc::clone(&ours), Arc::clone(&keys), next.clone());
        let op: Op = Arc::new(move || {
            let k = next(&keys);
            if ours.get(&k).is_none() {
                ours.insert(k, k);
            }
        });
        group.bench_function("perf_memory::Cache (moka)", |b| {
            b.iter_custom(|iters| on_threads(2, iters, Arc::clone(&op)))
        });
    }
    {
        let (plain, keys, next) = (Arc::clone(&plain), Arc::clone(&keys), next.clone());
        let op: Op = Arc::new(move || {
            let k = next(&keys);
            if let Ok(mut l) = plain.lock()
                && l.get(&k).is_none()
            {
                l.put(k, k);
            }
        });
        group.bench_function("Mutex<lru::LruCache>", |b| {
            b.iter_custom(|iters| on_threads(2, iters, Arc::clone(&op)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = pools, caches
}
criterion_main!(benches);
