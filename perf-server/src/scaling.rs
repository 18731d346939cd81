//! `perf-server scaling ...`: try a scaling policy on a recorded load.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use perf_scaling::{ScalingPolicy, SimulationSettings, TracePoint};

/// `perf-server scaling` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ScalingCommand {
    /// Replay a recorded load through a policy and print the result as JSON.
    Simulate(SimulateArgs),
}

/// Options of `perf-server scaling simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The policy, YAML or JSON (`min_replicas`, `max_replicas`, `metrics`, `behavior`, `tolerance`).
    #[arg(long)]
    pub policy: PathBuf,
    /// The load: a CSV of `time_s,value` (header first), or a load test's JSON
    /// report (its timeline's requests per second).
    #[arg(long)]
    pub trace: PathBuf,
    /// Replicas at the start [default: the policy's min_replicas].
    #[arg(long)]
    pub initial: Option<u32>,
    /// Seconds between decisions [default: 15].
    #[arg(long, default_value_t = 15.0)]
    pub period: f64,
    /// Seconds for a new replica to become ready [default: 30].
    #[arg(long, default_value_t = 30.0)]
    pub startup: f64,
    /// Request of one replica in the trace's unit, for utilization targets [default: 100].
    #[arg(long, default_value_t = 100.0)]
    pub request: f64,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a trace from CSV or from a load test report's timeline.
fn read_trace(path: &Path) -> Result<Vec<TracePoint>, String> {
    let text = read(path)?;
    if text.trim_start().starts_with('{') {
        let report: perf_loadgen::RunReport = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a load test report: {e}", path.display()))?;
        if report.timeline.is_empty() {
            return Err(format!(
                "{}: the report's timeline is empty",
                path.display()
            ));
        }
        return Ok(report
            .timeline
            .iter()
            .map(|row| TracePoint {
                t_s: row.t_s as f64,
                value: row.rps,
            })
            .collect());
    }
    perf_scaling::parse_trace_csv(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_policy(path: &Path) -> Result<ScalingPolicy, String> {
    let text = read(path)?;
    let policy: ScalingPolicy =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    policy
        .validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(policy)
}

/// Runs `simulate`; 0 on success, 2 on bad input.
pub fn simulate(args: &SimulateArgs) -> u8 {
    let result = read_policy(&args.policy).and_then(|policy| {
        let trace = read_trace(&args.trace)?;
        let settings = SimulationSettings {
            initial_replicas: args.initial,
            period_s: args.period,
            startup_s: args.startup,
            request_per_replica: args.request,
        };
        perf_scaling::simulate(&policy, &trace, &settings).map_err(|e| e.to_string())
    });
    match result.and_then(|r| serde_json::to_string_pretty(&r).map_err(|e| e.to_string())) {
        Ok(json) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(json.as_bytes());
            let _ = out.write_all(b"\n");
            0
        }
        Err(message) => {
            eprintln!("perf-server scaling simulate: {message}");
            2
        }
    }
}
