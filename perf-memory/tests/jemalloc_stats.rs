//! Allocator statistics read from a real jemalloc installed as the global allocator.

use perf_memory::AllocatorStats;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[test]
fn a_large_allocation_shows_in_allocated_and_goes_away_when_freed() {
    let before = AllocatorStats::read().unwrap();
    let block = vec![1u8; 64 << 20];
    let during = AllocatorStats::read().unwrap();
    assert!(
        during.allocated_bytes >= before.allocated_bytes + (60 << 20),
        "{before:?} -> {during:?}"
    );
    assert!(during.active_bytes >= during.allocated_bytes);
    assert!(during.resident_bytes >= during.active_bytes);
    assert!(during.mapped_bytes >= during.active_bytes);
    assert!(during.metadata_bytes > 0);
    drop(std::hint::black_box(block));
    let after = AllocatorStats::read().unwrap();
    assert!(
        after.allocated_bytes + (32 << 20) < during.allocated_bytes,
        "{after:?}"
    );
}
