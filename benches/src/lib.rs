//! Criterion suites live in `benches/benches/`; run them with `cargo bench -p perf-benches`.
//! This library holds what the suites and the comparison programs share:
//! synthetic access traces for caches.

/// `len` keys drawn from `0..keys` with Zipf exponent `s` (key 0 the most
/// popular), reproducible from `seed`.
///
/// ```
/// let trace = perf_benches::zipf_trace(1000, 1.0, 10_000, 7);
/// let zeros = trace.iter().filter(|k| **k == 0).count();
/// let last = trace.iter().filter(|k| **k == 999).count();
/// assert!(zeros > 50 * last.max(1));
/// ```
pub fn zipf_trace(keys: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(usize::try_from(keys).unwrap_or(0));
    let mut total = 0.0;
    for k in 1..=keys {
        total += 1.0 / (k as f64).powf(s);
        cdf.push(total);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len)
        .map(|_| {
            let u = rng.f64() * total;
            cdf.partition_point(|c| *c < u) as u64
        })
        .collect()
}

/// A Zipf trace interrupted by scans: every `scan_every` accesses, a scan
/// of `scan_len` keys never seen before (a report reading a whole table),
/// the pattern that flushes a plain LRU.
pub fn scan_heavy_trace(
    keys: u64,
    len: usize,
    scan_every: usize,
    scan_len: usize,
    seed: u64,
) -> Vec<u64> {
    let hot = zipf_trace(keys, 1.0, len, seed);
    let mut out = Vec::with_capacity(len + len / scan_every.max(1) * scan_len);
    let mut fresh = keys;
    for (i, k) in hot.into_iter().enumerate() {
        if i > 0 && i % scan_every.max(1) == 0 {
            for _ in 0..scan_len {
                out.push(fresh);
                fresh += 1;
            }
        }
        out.push(k);
    }
    out
}
