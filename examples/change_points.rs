//! Reads run reports (JSON, in run order) and names the runs where p95
//! latency shifted by 3 % or more, with E-divisive means (`MIN_SHIFT=0.01`
//! in the environment to see smaller shifts, such as a target restart's):
//! `cargo run -p perf-examples --example change_points -- r1.json r2.json ...`

use perf_loadgen::{RunReport, change_points};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        return Err("give run reports (JSON) in run order".into());
    }
    let mut p95 = Vec::new();
    for path in &paths {
        let report: RunReport = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        p95.push(report.latency_ms.p95);
    }
    let min_shift = std::env::var("MIN_SHIFT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(0.03);
    let shifts = change_points(&p95, 0.05, 3, min_shift);
    #[allow(clippy::print_stdout)]
    {
        println!(
            "p95 ms by run: {}",
            p95.iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for i in &shifts {
            println!(
                "shift before run {} ({}): p95 {:.3} -> {:.3} ms",
                i + 1,
                paths[*i],
                p95[i - 1],
                p95[*i]
            );
        }
        if shifts.is_empty() {
            println!("no shift");
        }
    }
    Ok(())
}
