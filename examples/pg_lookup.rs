//! A Rust workload: a keyed PostgreSQL lookup through perf-db's
//! instrumented pool, driven by perf-loadgen's open model (requests start
//! on schedule whatever the database does; latency counts from the intended
//! time), with the standard report and the pool's own figures.
//!
//! `cargo run --release -p perf-examples --example pg_lookup [-- RATE SECONDS]`
//!
//! It uses `PERF_DATABASE_URL` when set (it creates a table `perf_lookup_items`
//! there), else a throwaway PostgreSQL 15 cluster of its own.

#![allow(clippy::print_stdout)] // a command-line program: it prints the report

use std::time::Duration;

use perf_db::{InstrumentedPool, PoolSettings};
use perf_examples::KeyedLookup;
use perf_loadgen::{ScenarioFile, start_workload};

const ROWS: i32 = 100_000;
const LOOKUP: &str = "SELECT name FROM perf_lookup_items WHERE id = $1";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rate = args.first().map_or("1000/s", String::as_str);
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let cluster;
    let url = match std::env::var("PERF_DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            cluster = testkit::PgCluster::start()?;
            cluster.url()
        }
    };
    let pool = InstrumentedPool::new(
        &url,
        &PoolSettings::builder()
            .max_size(16)
            .wait_timeout(Duration::from_secs(5))
            .build()?,
    )?;
    {
        let conn = pool.get().await?;
        conn.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS perf_lookup_items (id int PRIMARY KEY, name text);
             INSERT INTO perf_lookup_items SELECT g, 'item ' || g FROM generate_series(1, {ROWS}) g
             ON CONFLICT (id) DO NOTHING; ANALYZE perf_lookup_items;"
        ))
        .await
        .map_err(perf_db::Error::from)?;
    }
    let file = ScenarioFile::from_yaml(&format!(
        "load_tests:\n  lookup: {{duration: {seconds}s, rate: {rate}, max_in_flight: 256, thresholds: ['p95 < 10ms', 'error_rate < 0.001']}}\n"
    ))?;
    let report = start_workload(
        "lookup",
        file.get("lookup")?,
        KeyedLookup {
            pool: pool.clone(),
            sql: LOOKUP,
            keys: ROWS,
        },
    )
    .await?
    .report()
    .await?;
    print!("{}", report.summary());
    let p = pool.observe();
    println!(
        "pool        {} checkouts, wait p95 {:.2} ms, {} timeouts, {} errors",
        p.checkouts, p.wait_ms.p95, p.timeouts, p.errors
    );
    if !report.passed {
        std::process::exit(1);
    }
    Ok(())
}
