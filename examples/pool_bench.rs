//! deadpool-postgres and bb8 on the same workload against a throwaway
//! PostgreSQL: 64 tasks, each running `SELECT $1::int` 500 times through a
//! 16-connection pool; prints queries per second and the wait for a
//! connection. `cargo run --release -p perf-examples --example pool_bench`

use std::time::{Duration, Instant};

use perf_db::{InstrumentedPool, PoolSettings};

const TASKS: usize = 64;
const QUERIES: usize = 500;

async fn run(
    pool: InstrumentedPool,
) -> Result<(f64, perf_db::PoolObservation), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..QUERIES {
                let conn = pool.get().await?;
                let v = i32::try_from(t * QUERIES + i).unwrap_or(0);
                conn.query_one("SELECT $1::int", &[&v])
                    .await
                    .map_err(perf_db::Error::from)?;
            }
            Ok::<(), perf_db::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let qps = (TASKS * QUERIES) as f64 / started.elapsed().as_secs_f64();
    Ok((qps, pool.observe()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pg = testkit::PgCluster::start()?;
    let settings = PoolSettings::builder()
        .max_size(16)
        .wait_timeout(Duration::from_secs(10))
        .build()?;
    for round in 0..3 {
        let deadpool = run(InstrumentedPool::new(&pg.url(), &settings)?).await?;
        let bb8 = run(InstrumentedPool::new_bb8(&pg.url(), &settings).await?).await?;
        #[allow(clippy::print_stdout)]
        {
            println!(
                "round {round}: deadpool {:.0} q/s (wait p99 {:.2} ms, max {:.1} ms) | bb8 {:.0} q/s (wait p99 {:.2} ms, max {:.1} ms)",
                deadpool.0,
                deadpool.1.wait_ms.p99,
                deadpool.1.wait_ms.max,
                bb8.0,
                bb8.1.wait_ms.p99,
                bb8.1.wait_ms.max
            );
        }
    }
    Ok(())
}
