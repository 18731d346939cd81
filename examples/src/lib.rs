//! Examples live as `cargo run -p perf-examples --example <name>`; what
//! several of them share is here.

use perf_db::InstrumentedPool;
use perf_loadgen::{Iteration, Operations, Workload};

/// A keyed PostgreSQL lookup through perf-db's pool as a Rust workload: one
/// operation, `lookup`, running `sql` with a random key in `1..=keys` as `$1`
/// (prepared once per connection).
#[derive(Debug)]
pub struct KeyedLookup {
    /// The pool the lookups go through.
    pub pool: InstrumentedPool,
    /// A statement with one `int` parameter.
    pub sql: &'static str,
    /// Keys are drawn from `1..=keys`.
    pub keys: i32,
}

impl Workload for KeyedLookup {
    /// The user's random-number state.
    type User = fastrand::Rng;

    fn operations(&self) -> Vec<String> {
        vec!["lookup".to_owned()]
    }

    fn user(&self, index: u64) -> fastrand::Rng {
        fastrand::Rng::with_seed(index + 1)
    }

    async fn iteration(&self, rng: &mut fastrand::Rng, ops: &Operations<'_>) -> Iteration {
        let key = rng.i32(1..=self.keys.max(1));
        let _ = ops
            .time(0, async {
                let conn = self.pool.get().await?;
                let statement = conn.prepare_cached(self.sql).await?;
                conn.query_one(&statement, &[&key])
                    .await
                    .map_err(perf_db::Error::from)?;
                Ok::<(), perf_db::Error>(())
            })
            .await;
        Iteration::Done
    }
}
