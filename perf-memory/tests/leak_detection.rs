//! The leak detector on a real process: a task that keeps what it allocates
//! is flagged within a bounded time; a task that churns memory at a steady
//! level is never flagged over a long window.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use perf_memory::{AllocatorStats, LeakDetector, LeakDetectorConfig, LeakStatus, MemorySample};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);

fn config(warmup_s: u64, window: usize) -> LeakDetectorConfig {
    LeakDetectorConfig::builder()
        .warmup(Duration::from_secs(warmup_s))
        .window(window)
        .build()
        .unwrap()
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn sample(origin: Instant) -> MemorySample {
    let stats = AllocatorStats::read().unwrap();
    MemorySample {
        at_s: origin.elapsed().as_secs_f64(),
        allocated_bytes: stats.allocated_bytes,
        resident_bytes: rss(),
    }
}

/// Runs `work` on a thread while sampling every 100 ms for at most `limit`;
/// returns every status seen and the time of the first `Leak`.
fn watch(
    limit: Duration,
    warmup_s: u64,
    window: usize,
    work: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
) -> (Vec<LeakStatus>, Option<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || work(stop))
    };
    let mut detector = LeakDetector::new(config(warmup_s, window)).unwrap();
    let origin = Instant::now();
    let mut statuses = Vec::new();
    let mut flagged = None;
    while origin.elapsed() < limit {
        std::thread::sleep(SAMPLE_EVERY);
        let status = detector.observe(sample(origin));
        statuses.push(status);
        if status != LeakStatus::WarmingUp && status != LeakStatus::Steady {
            eprintln!("{:?}", detector.verdict());
        }
        if status == LeakStatus::Leak && flagged.is_none() {
            flagged = Some(origin.elapsed());
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    (statuses, flagged)
}

#[test]
fn a_leaking_task_is_flagged_and_a_steady_one_never() {
    // Keeps 64 KiB every 20 ms: about 3 MiB/s.
    // A 3 s window: found fast.
    let (_, flagged) = watch(Duration::from_secs(20), 5, 30, |stop| {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            kept.push(vec![1u8; 64 << 10]);
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(std::hint::black_box(kept));
    });
    let flagged = flagged.expect("the leak was not flagged within 20 s");
    eprintln!("leak flagged after {flagged:?}");
    // Warm-up 5 s (the window is full by then) + 3 consecutive evaluations, and slack.
    assert!(flagged < Duration::from_secs(12), "{flagged:?}");

    // Churns 200 buffers of 16 to 256 KiB (four sizes), replacing one every millisecond.
    // Its resident size settles once jemalloc's 10 s dirty-page decay has
    // run once (sooner on an idle machine): a 12 s warm-up, as a service's
    // start-up is covered by the default 60 s, and a 10 s window (the
    // default is 120 samples) so that a few seconds of page faults on a
    // starved machine are not "sustained".
    let (statuses, flagged) = watch(Duration::from_secs(40), 12, 100, |stop| {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut live: Vec<Vec<u8>> = (0..200).map(|_| vec![0u8; 128 << 10]).collect();
        while !stop.load(Ordering::Relaxed) {
            let i = (next() % 200) as usize;
            let size = [16 << 10, 64 << 10, 128 << 10, 256 << 10][(next() % 4) as usize];
            live[i] = vec![2u8; size];
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(std::hint::black_box(live));
    });
    let evaluated = statuses
        .iter()
        .filter(|s| **s != LeakStatus::WarmingUp)
        .count();
    let false_positives = statuses
        .iter()
        .filter(|s| matches!(s, LeakStatus::Leak | LeakStatus::Fragmentation))
        .count();
    eprintln!("steady task: {evaluated} evaluations, {false_positives} flagged");
    assert!(flagged.is_none());
    assert!(evaluated >= 150, "{evaluated}");
    assert_eq!(false_positives, 0);
}
