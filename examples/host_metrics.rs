//! Samples this host and process five times, one second apart, and prints the
//! figures as JSON lines: `cargo run -p perf-examples --example host_metrics`.

use std::time::Duration;

use perf_core::system::SystemSampler;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sampler = SystemSampler::new()?;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        let sample = sampler.sample()?;
        #[allow(clippy::print_stdout)]
        {
            println!(
                "{}",
                serde_json::json!({
                    "cpu_utilization_percent": sample.cpu.utilization_percent,
                    "per_core_utilization_percent": sample.cpu.per_core_utilization_percent,
                    "process_rss_bytes": sample.memory.process_rss_bytes,
                    "host_available_bytes": sample.memory.host_available_bytes,
                    "tcp_established": sample.network.tcp.established,
                })
            );
        }
    }
    Ok(())
}
