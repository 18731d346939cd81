//! The instrumented pool against a real throwaway PostgreSQL.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use perf_db::{InstrumentedPool, PoolObservation, PoolSettings, recommend_pool_size};

/// Six tasks each holding a connection for a 100 ms query; what the pool saw.
async fn six_100ms_holds(pool: &InstrumentedPool) -> PoolObservation {
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let conn = pool.get().await.unwrap();
            conn.query("SELECT pg_sleep(0.1)", &[]).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    pool.observe()
}

/// A pool of `size` connections, each waited for `wait_ms` at most.
fn pool_of(size: usize, wait_ms: u64) -> PoolSettings {
    PoolSettings::builder()
        .max_size(size)
        .wait_timeout(Duration::from_millis(wait_ms))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_holds_and_timeouts_are_measured_and_turned_into_a_size() {
    let pg = testkit::PgCluster::start().unwrap();
    let pool = InstrumentedPool::new(&pg.url(), &pool_of(2, 2000)).unwrap();
    let seen = six_100ms_holds(&pool).await;
    assert_eq!(
        (seen.checkouts, seen.timeouts, seen.max_size),
        (6, 0, 2),
        "{seen:?}"
    );
    assert!(
        seen.held_ms.mean >= 100.0 && seen.held_ms.mean < 400.0,
        "{seen:?}"
    );
    // Six 100 ms holds through two connections: someone waited about 200 ms.
    assert!(seen.wait_ms.max >= 150.0, "{seen:?}");
    assert!(
        seen.held_ms.p50 >= 100.0 && seen.held_ms.max >= seen.held_ms.p95,
        "{seen:?}"
    );
    // The connection's statement cache: the second prepare is the same statement.
    let conn = pool.get().await.unwrap();
    let first = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
    let second = conn.prepare_cached("SELECT $1::int + 1").await.unwrap();
    let row = conn.query_one(&second, &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    drop(first);
    let prepared: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::int + 1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(prepared, 1, "prepared once, reused");
    drop(conn);
    let advice = recommend_pool_size(&seen, 100, 10);
    assert!(
        advice.size >= 2 && advice.reason.contains("Little's law"),
        "{advice:?}"
    );

    // A wait longer than the timeout is counted and reported, not hung on.
    let strict = InstrumentedPool::new(&pg.url(), &pool_of(1, 100)).unwrap();
    let holder = strict.get().await.unwrap();
    let started = std::time::Instant::now();
    let err = strict.get().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("timeout"), "{err}");
    drop(holder);
    assert_eq!(strict.observe().timeouts, 1);
}

#[test]
fn the_tuner_caps_at_the_server_and_names_an_oversized_pool() {
    let seen = PoolObservation {
        elapsed_s: 10.0,
        checkouts: 100_000,
        timeouts: 0,
        errors: 0,
        wait_ms: perf_core::LatencyMs {
            max: 1.0,
            ..perf_core::LatencyMs::default()
        },
        held_ms: perf_core::LatencyMs {
            p50: 45.0,
            p95: 60.0,
            p99: 80.0,
            max: 120.0,
            mean: 50.0,
            ..perf_core::LatencyMs::default()
        },
        size: 10,
        idle: 0,
        waiting: 0,
        max_size: 200,
    };
    // 10,000/s × 50 ms = 500 busy: capped by max_connections 100 minus 10 reserved.
    let r = recommend_pool_size(&seen, 100, 10);
    assert_eq!(r.size, 90);
    assert!(r.reason.contains("capped at 90"), "{}", r.reason);
    let idle = PoolObservation {
        checkouts: 100,
        held_ms: perf_core::LatencyMs {
            mean: 2.0,
            ..seen.held_ms
        },
        ..seen
    };
    let r = recommend_pool_size(&idle, 100, 10);
    assert_eq!(r.size, 2);
    assert!(r.reason.contains("oversized"), "{}", r.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_is_measured_the_same_way() {
    let pg = testkit::PgCluster::start().unwrap();
    let pool = InstrumentedPool::new_bb8(&pg.url(), &pool_of(2, 2000))
        .await
        .unwrap();
    let seen = six_100ms_holds(&pool).await;
    assert_eq!(
        (seen.checkouts, seen.timeouts, seen.max_size),
        (6, 0, 2),
        "{seen:?}"
    );
    assert!(
        seen.wait_ms.max >= 150.0 && seen.held_ms.mean >= 100.0,
        "{seen:?}"
    );

    let strict = InstrumentedPool::new_bb8(&pg.url(), &pool_of(1, 100))
        .await
        .unwrap();
    let holder = strict.get().await.unwrap();
    assert!(
        strict
            .get()
            .await
            .unwrap_err()
            .to_string()
            .contains("timeout")
    );
    drop(holder);
    assert_eq!(strict.observe().timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_advice_names_a_failed_source_and_still_sizes_the_pool() {
    let pg = testkit::PgCluster::start().unwrap();
    let pool = InstrumentedPool::new(
        &pg.url(),
        &PoolSettings::builder().max_size(64).build().unwrap(),
    )
    .unwrap();
    let conn = pool.get().await.unwrap();
    // A pool of 64 kept about one connection busy: oversized. Without
    // pg_stat_statements the workload cannot be read; the rest still advises.
    let seen = PoolObservation {
        elapsed_s: 10.0,
        checkouts: 1_000,
        timeouts: 0,
        errors: 0,
        wait_ms: perf_core::LatencyMs::default(),
        held_ms: perf_core::LatencyMs {
            mean: 5.0,
            ..perf_core::LatencyMs::default()
        },
        size: 64,
        idle: 63,
        waiting: 0,
        max_size: 64,
    };
    let advice = perf_db::database_advice(&conn, &seen, 20).await;
    assert!(
        advice.errors.iter().any(|e| e.starts_with("slow queries:")),
        "{:?}",
        advice.errors
    );
    assert!(
        !advice.errors.iter().any(|e| e.starts_with("index health:")),
        "{:?}",
        advice.errors
    );
    let pool_advice = advice
        .recommendations
        .iter()
        .find(|r| r.kind == "pool_size")
        .unwrap_or_else(|| panic!("{:?}", advice.recommendations));
    assert!(pool_advice.title.contains("oversized"), "{pool_advice:?}");
}
