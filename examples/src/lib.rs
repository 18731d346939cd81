//! Examples live as `cargo run -p perf-examples --example <name>`.
