//! Criterion suites live in `benches/benches/`; run them with `cargo bench -p perf-benches`.
