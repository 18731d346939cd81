//! Allocator tuning on a real jemalloc installed as the global allocator.
#![allow(clippy::unwrap_used)]

use perf_memory::{AllocatorStats, MemoryTuning, purge_now};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[test]
fn decay_settings_apply_and_purge_returns_dirty_pages() {
    // Keep freed pages dirty for a minute, on this thread, so they can be seen.
    let slow = MemoryTuning::builder()
        .background_threads(false)
        .dirty_decay_ms(60_000)
        .muzzy_decay_ms(60_000)
        .build()
        .unwrap();
    slow.apply().unwrap();
    assert_eq!(MemoryTuning::current().unwrap(), slow);

    let blocks: Vec<Vec<u8>> = (0..256)
        .map(|i| vec![u8::try_from(i).unwrap(); 256 << 10])
        .collect();
    drop(std::hint::black_box(blocks));
    let dirty = AllocatorStats::read().unwrap();
    assert!(
        dirty.dirty_bytes >= 32 << 20,
        "freed pages stay dirty: {dirty:?}"
    );

    purge_now().unwrap();
    let purged = AllocatorStats::read().unwrap();
    assert!(
        purged.dirty_bytes < 8 << 20 && purged.resident_bytes + (32 << 20) <= dirty.resident_bytes,
        "{dirty:?} -> {purged:?}"
    );
    // Purging leaves the settings as they were.
    assert_eq!(MemoryTuning::current().unwrap(), slow);

    let fast = MemoryTuning::builder()
        .background_threads(true)
        .dirty_decay_ms(1_000)
        .muzzy_decay_ms(0)
        .build()
        .unwrap();
    fast.apply().unwrap();
    assert_eq!(MemoryTuning::current().unwrap(), fast);
    // A field left out is left alone; a bad one is refused before anything changes.
    MemoryTuning::builder()
        .dirty_decay_ms(5_000)
        .build()
        .unwrap()
        .apply()
        .unwrap();
    assert_eq!(MemoryTuning::current().unwrap().muzzy_decay_ms, Some(0));
    // The builder refuses a bad value where it is set...
    let bad = MemoryTuning::builder()
        .background_threads(false)
        .dirty_decay_ms(-2);
    let err = bad.clone().build().unwrap_err();
    assert!(err.to_string().starts_with("dirty_decay_ms"), "{err}");
    // ...and one changed after the build is refused by apply, before any of it is applied.
    let mut changed = MemoryTuning::builder()
        .background_threads(false)
        .build()
        .unwrap();
    changed.dirty_decay_ms = Some(-2);
    let err = changed.apply().unwrap_err();
    assert!(err.to_string().starts_with("dirty_decay_ms"), "{err}");
    assert_eq!(
        MemoryTuning::current().unwrap().background_threads,
        Some(true)
    );
}
