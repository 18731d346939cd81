//! Records latencies on two "machines", ships one histogram as JSON, merges,
//! and prints the percentiles of the whole:
//! `cargo run -p perf-examples --example latency_histogram`.

use std::time::Duration;

use perf_core::LatencyHistogram;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut machine_a = LatencyHistogram::new();
    let mut machine_b = LatencyHistogram::new();
    for i in 0..10_000u64 {
        // A: mostly fast; B: a slow tail.
        machine_a.record(Duration::from_micros(800 + i % 400))?;
        machine_b.record(Duration::from_micros(if i % 100 == 0 {
            250_000
        } else {
            1_200
        }))?;
    }
    let wire = serde_json::to_string(&machine_b)?;
    let received: LatencyHistogram = serde_json::from_str(&wire)?;
    machine_a.merge(&received)?;
    #[allow(clippy::print_stdout)]
    {
        println!("histogram on the wire: {} bytes of JSON", wire.len());
        println!("{}", serde_json::to_string_pretty(&machine_a.summary())?);
    }
    Ok(())
}
