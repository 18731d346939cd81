//! CPU and heap profiles of this test process (jemalloc with `prof:true`).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use perf_memory::{Error, ProfileKind, ProfileRequest, Profiler};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// jemalloc reads its options from this symbol at start-up: profiling
// compiled in and enabled, sampling off until a heap profile starts.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
/// jemalloc options.
pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:false,lg_prof_sample:12\0";

#[inline(never)]
fn spin_in_a_busy_loop_for(d: Duration) -> u64 {
    let until = Instant::now() + d;
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

#[inline(never)]
fn keep_many_small_buffers() -> Vec<Vec<u8>> {
    (0..20_000u32)
        .map(|i| vec![i.to_le_bytes()[0]; 512])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_then_heap_one_at_a_time() {
    let profiler = Profiler::new();
    let cpu = ProfileRequest {
        kind: ProfileKind::Cpu,
        duration_s: None,
        frequency_hz: Some(250),
    };
    let session = profiler.start(cpu).await.unwrap();
    // Never both at once.
    let busy = profiler
        .start(ProfileRequest {
            kind: ProfileKind::Heap,
            duration_s: None,
            frequency_hz: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(busy, Error::ProfilerBusy { .. }), "{busy}");
    assert_eq!(profiler.running().unwrap().id, session.id);
    tokio::task::spawn_blocking(|| spin_in_a_busy_loop_for(Duration::from_millis(1500)))
        .await
        .unwrap();
    let profile = profiler.stop(&session.id).await.unwrap();
    assert!(profiler.running().is_none());
    let svg = String::from_utf8(profile.flamegraph_svg.clone()).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100.min(svg.len())]);
    assert!(
        svg.contains("spin_in_a_busy_loop_for"),
        "the loop's function is in the flamegraph"
    );
    assert!(profile.pprof.len() > 100);
    std::fs::create_dir_all("../target/profiles").ok();
    std::fs::write(
        "../target/profiles/busy-loop-cpu.svg",
        &profile.flamegraph_svg,
    )
    .ok();
    // Stopping again names the profile.
    let err = profiler.stop(&session.id).await.unwrap_err().to_string();
    assert!(err.contains("not running"), "{err}");

    assert!(Profiler::heap_available());
    let heap = profiler
        .start(ProfileRequest {
            kind: ProfileKind::Heap,
            duration_s: None,
            frequency_hz: None,
        })
        .await
        .unwrap();
    let kept = keep_many_small_buffers();
    let profile = profiler.stop(&heap.id).await.unwrap();
    drop(std::hint::black_box(kept));
    let svg = String::from_utf8(profile.flamegraph_svg).unwrap();
    assert!(
        svg.contains("keep_many_small_buffers"),
        "the allocating function is in the heap flamegraph"
    );
    assert!(profile.pprof.len() > 100);
    std::fs::write("../target/profiles/small-buffers-heap.svg", svg.as_bytes()).ok();
}
