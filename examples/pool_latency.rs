//! A keyed lookup through perf-db's instrumented pool beside `pgbench -S`,
//! fairly: the same statement (`SELECT abalance FROM pgbench_accounts WHERE
//! aid = $1`, prepared), the same server connections on both sides, the same
//! fixed rate as a Poisson process (`pgbench -R`; perf-loadgen's open model
//! with `arrivals: poisson`), a warm-up before measuring, and latency counted
//! from each request's scheduled start on both sides (pgbench's per-transaction
//! log includes the schedule lag under `-R`; the open model counts from the
//! intended time). Runs on a throwaway PostgreSQL 15, pgbench scale 10.
//!
//! `cargo run --release -p perf-examples --example pool_latency [-- RATES CONNECTIONS SECONDS ROUNDS]`
//! e.g. `-- 2000,10000,20000 16 15 3` (the defaults). Each round measures
//! every rate with the pool and with pgbench in turn, so both see the same
//! machine.

#![allow(clippy::print_stdout)] // a command-line program: it prints the table

use std::path::Path;
use std::time::Duration;

use perf_core::LatencyHistogram;
use perf_db::{InstrumentedPool, PoolSettings};
use perf_examples::KeyedLookup;
use perf_loadgen::{ScenarioFile, start_workload};

/// pgbench's scale: 100,000 accounts per unit.
const SCALE: i32 = 10;
const LOOKUP: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
/// Seconds of load before each measured run.
const WARM_UP: u64 = 5;

/// What one side measured at one rate.
struct Measured {
    per_second: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    errors: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rates: Vec<u32> = args
        .first()
        .map_or("2000,10000,20000", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let connections: usize = args.get(1).map_or(Ok(16), |s| s.parse())?;
    let seconds: u64 = args.get(2).map_or(Ok(15), |s| s.parse())?;
    let rounds: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let pg = testkit::PgCluster::start()?;
    let bin = Path::new("/usr/lib/postgresql/15/bin");
    let init = std::process::Command::new(bin.join("pgbench"))
        .args(["-i", "-s", &SCALE.to_string(), "-q", &pg.url()])
        .output()?;
    if !init.status.success() {
        return Err(String::from_utf8_lossy(&init.stderr).into_owned().into());
    }
    println!(
        "keyed lookup at a fixed rate (Poisson arrivals), {connections} server connections each side, \
         {WARM_UP} s warm-up, {seconds} s measured, latency from the scheduled start"
    );
    println!(
        "| round | rate | perf-db pool q/s | p50 | p95 | p99 | pgbench tps | p50 | p95 | p99 | p95 pool/pgbench |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for round in 1..=rounds {
        for &rate in &rates {
            let pool = pool_run(&pg.url(), rate, connections, seconds).await?;
            let bench = pgbench_run(bin, &pg.url(), rate, connections, seconds)?;
            println!(
                "| {round} | {rate}/s | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} |",
                pool.per_second,
                pool.p50_ms,
                pool.p95_ms,
                pool.p99_ms,
                bench.per_second,
                bench.p50_ms,
                bench.p95_ms,
                bench.p99_ms,
                pool.p95_ms / bench.p95_ms,
            );
            if pool.errors + bench.errors > 0 {
                println!(
                    "  errors: pool {}, pgbench {} (the figures above are not comparable)",
                    pool.errors, bench.errors
                );
            }
        }
    }
    Ok(())
}

/// The pool at `rate` for a warm-up, then measured on the same (warm) pool.
async fn pool_run(
    url: &str,
    rate: u32,
    connections: usize,
    seconds: u64,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let pool = InstrumentedPool::new(
        url,
        &PoolSettings::builder()
            .max_size(connections)
            .wait_timeout(Duration::from_secs(10))
            .build()?,
    )?;
    let mut report = None;
    for length in [WARM_UP, seconds] {
        let file = ScenarioFile::from_yaml(&format!(
            "load_tests:\n  lookup: {{duration: {length}s, rate: {rate}/s, arrivals: poisson, max_in_flight: 100000}}\n"
        ))?;
        // `pgbench -S`'s transaction: one lookup of a random account.
        let lookup = KeyedLookup {
            pool: pool.clone(),
            sql: LOOKUP,
            keys: 100_000 * SCALE,
        };
        report = Some(
            start_workload("lookup", file.get("lookup")?, lookup)
                .await?
                .report()
                .await?,
        );
    }
    let report = report.ok_or("no run")?;
    let l = &report.latency_ms;
    let o = pool.observe();
    eprintln!(
        "  pool at {rate}/s: uncorrected p95 {:.2} ms, checkout wait p95 {:.2} ms, held p95 {:.2} ms",
        report
            .latency_uncorrected_ms
            .as_ref()
            .map_or(f64::NAN, |u| u.p95),
        o.wait_ms.p95,
        o.held_ms.p95
    );
    Ok(Measured {
        per_second: report.rps,
        p50_ms: l.p50,
        p95_ms: l.p95,
        p99_ms: l.p99,
        errors: report.errors + report.dropped,
    })
}

/// `pgbench -S -M prepared -R rate` on `connections` connections for the
/// warm-up and the measured seconds in one run; the transactions of the
/// warm-up are left out of the figures by their timestamps.
fn pgbench_run(
    bin: &Path,
    url: &str,
    rate: u32,
    connections: usize,
    seconds: u64,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("perf-pgbench-{}-{rate}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let run = std::process::Command::new(bin.join("pgbench"))
        .current_dir(&dir)
        .args([
            "-S",
            "-M",
            "prepared",
            "-R",
            &rate.to_string(),
            "-c",
            &connections.to_string(),
            "-j",
            "2",
            "-T",
            &(WARM_UP + seconds).to_string(),
            "-l",
            "--log-prefix=tx",
            url,
        ])
        .output()?;
    if !run.status.success() {
        return Err(String::from_utf8_lossy(&run.stderr).into_owned().into());
    }
    // Per transaction: client, number, latency µs (from the scheduled start
    // under -R), script, epoch s, µs, schedule lag µs.
    let mut rows: Vec<(u64, u64)> = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            if let (Some(latency), Some(s), Some(us)) = (field(2), field(4), field(5)) {
                rows.push((s * 1_000_000 + us, latency));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let first = rows
        .iter()
        .map(|r| r.0)
        .min()
        .ok_or("pgbench logged nothing")?;
    let measured_from = first + WARM_UP * 1_000_000;
    let mut h = LatencyHistogram::new();
    for &(_, latency) in rows.iter().filter(|r| r.0 >= measured_from) {
        let _ = h.record_micros(latency);
    }
    let s = h.summary();
    Ok(Measured {
        per_second: h.count() as f64 / seconds as f64,
        p50_ms: s.p50,
        p95_ms: s.p95,
        p99_ms: s.p99,
        errors: 0,
    })
}
