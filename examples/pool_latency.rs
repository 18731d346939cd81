//! The latency of a keyed lookup through an instrumented pool at 64
//! concurrent clients, beside pgbench's own select-only run on the same
//! throwaway PostgreSQL: `cargo run --release -p perf-examples --example pool_latency`

use std::time::{Duration, Instant};

use perf_core::LatencyHistogram;
use perf_db::{InstrumentedPool, PoolSettings};

const CLIENTS: usize = 64;
const SECONDS: u64 = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pg = testkit::PgCluster::start()?;
    let bin = std::path::Path::new("/usr/lib/postgresql/15/bin");
    let init = std::process::Command::new(bin.join("pgbench"))
        .args(["-i", "-s", "10", "-q", &pg.url()])
        .output()?;
    if !init.status.success() {
        return Err(String::from_utf8_lossy(&init.stderr).into_owned().into());
    }
    for pool_size in [16usize, 64] {
        let pool = InstrumentedPool::new(
            &pg.url(),
            &PoolSettings {
                max_size: pool_size,
                wait_timeout: Duration::from_secs(10),
                ..PoolSettings::default()
            },
        )?;
        let until = Instant::now() + Duration::from_secs(SECONDS);
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let mut h = LatencyHistogram::new();
                let mut rng = fastrand_like(c as u64 + 1);
                while Instant::now() < until {
                    let aid = i32::try_from(rng() % 1_000_000 + 1).unwrap_or(1);
                    let started = Instant::now();
                    let conn = pool.get().await?;
                    let statement = conn
                        .prepare_cached("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
                        .await?;
                    conn.query_one(&statement, &[&aid])
                        .await
                        .map_err(|e| perf_db::Error::Database(e.to_string()))?;
                    drop(conn);
                    let _ = h.record(started.elapsed());
                }
                Ok::<LatencyHistogram, perf_db::Error>(h)
            }));
        }
        let mut all = LatencyHistogram::new();
        for t in tasks {
            all.merge(&t.await??)?;
        }
        let s = all.summary();
        #[allow(clippy::print_stdout)]
        {
            println!(
                "pool of {pool_size}, {CLIENTS} clients: {:.0} q/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
                s.count as f64 / SECONDS as f64,
                s.p50_us as f64 / 1000.0,
                s.p95_us as f64 / 1000.0,
                s.p99_us as f64 / 1000.0
            );
        }
    }
    // pgbench's select-only script on 64 connections, per-transaction log for percentiles.
    let dir = tempfile_dir()?;
    let run = std::process::Command::new(bin.join("pgbench"))
        .current_dir(&dir)
        .args([
            "-S",
            "-M",
            "prepared",
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
            "-T",
            &SECONDS.to_string(),
            "-l",
            "--log-prefix=tx",
            &pg.url(),
        ])
        .output()?;
    if !run.status.success() {
        return Err(String::from_utf8_lossy(&run.stderr).into_owned().into());
    }
    let mut h = LatencyHistogram::new();
    for entry in std::fs::read_dir(&dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                let _ = h.record_micros(us);
            }
        }
    }
    let s = h.summary();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "pgbench -S -M prepared -c {CLIENTS}: {:.0} tps, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            s.count as f64 / SECONDS as f64,
            s.p50_us as f64 / 1000.0,
            s.p95_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A small xorshift generator (no extra dependency for one example).
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("perf-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
