//! Renders a stored run report (JSON) as the self-contained HTML report,
//! optionally judged against baseline reports:
//! `cargo run -p perf-examples --example report_html -- report.json out.html [baseline.json ...]`

use perf_loadgen::{CompareOptions, RunReport, compare, compare_to_history};

fn read(path: &str) -> Result<RunReport, Box<dyn std::error::Error>> {
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [report, out, baselines @ ..] = args.as_slice() else {
        return Err("usage: report_html REPORT.json OUT.html [BASELINE.json ...]".into());
    };
    let report = read(report)?;
    let baselines = baselines
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let comparison = match baselines.as_slice() {
        [] => None,
        [one] => Some(compare(one, &report, &CompareOptions::default())),
        many => compare_to_history(many, &report, &CompareOptions::default()),
    };
    std::fs::write(out, report.to_html(comparison.as_ref()))?;
    Ok(())
}
