//! Hot paths of perf-core: recording a latency, merging histograms, encoding
//! them for transport, parsing human durations, and one host sample.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use perf_core::{LatencyHistogram, parse_duration, parse_size};

fn histogram(c: &mut Criterion) {
    let mut h = LatencyHistogram::new();
    let mut x = 1u64;
    c.bench_function("histogram/record", |b| {
        b.iter(|| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            h.record_micros(black_box(x % 5_000_000)).ok();
        })
    });

    let mut full = LatencyHistogram::new();
    for us in 1..200_000u64 {
        full.record_micros(us * 7 % 3_000_000).ok();
    }
    c.bench_function("histogram/merge", |b| {
        b.iter(|| {
            let mut target = LatencyHistogram::new();
            target.merge(black_box(&full)).ok();
            target
        })
    });
    c.bench_function("histogram/to_base64", |b| {
        b.iter(|| black_box(&full).to_base64())
    });
    let encoded = full.to_base64();
    c.bench_function("histogram/from_base64", |b| {
        b.iter(|| LatencyHistogram::from_base64(black_box(&encoded)))
    });
    c.bench_function("histogram/p99", |b| {
        b.iter(|| black_box(&full).percentile(99.0))
    });
}

fn units(c: &mut Criterion) {
    c.bench_function("units/parse_duration", |b| {
        b.iter(|| parse_duration(black_box("1h30m15.5s")))
    });
    c.bench_function("units/parse_size", |b| {
        b.iter(|| parse_size(black_box("512MiB")))
    });
}

fn system(c: &mut Criterion) {
    let Ok(mut sampler) = perf_core::system::SystemSampler::new() else {
        return;
    };
    let mut group = c.benchmark_group("system");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("sample", |b| b.iter(|| sampler.sample()));
    group.finish();
}

criterion_group!(benches, histogram, units, system);
criterion_main!(benches);
