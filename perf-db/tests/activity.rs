//! The database's activity read from a real throwaway PostgreSQL.
#![allow(clippy::unwrap_used)]

use perf_db::database_activity;

#[tokio::test]
async fn connections_by_state_and_the_buffer_cache_hit_ratio() {
    let pg = testkit::PgCluster::start().unwrap();
    let url = pg.create_database("activity").unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(testkit::connect(&url).await.unwrap());
    }
    clients[0]
        .batch_execute(
            "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10000) g;
             SELECT count(*) FROM t; SELECT count(*) FROM t;",
        )
        .await
        .unwrap();
    clients[1].batch_execute("BEGIN").await.unwrap();
    // The statistics collector publishes at transaction end; let it.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let a = database_activity(&clients[2]).await.unwrap();
    assert_eq!(a.database, "activity");
    // The asking connection is active, one idles in a transaction, one idles.
    assert_eq!(a.connections_by_state.get("active"), Some(&1), "{a:?}");
    assert_eq!(
        a.connections_by_state.get("idle in transaction"),
        Some(&1),
        "{a:?}"
    );
    assert!(
        a.connections_by_state.get("idle").copied().unwrap_or(0) >= 1,
        "{a:?}"
    );
    assert!(
        a.connections >= 3 && a.max_connections >= a.connections,
        "{a:?}"
    );
    let ratio = a.buffer_cache_hit_ratio.unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{a:?}");
    assert!(
        a.blocks_hit > 0 && a.commits > 0 && a.size_bytes > 0,
        "{a:?}"
    );
    assert_eq!(a.deadlocks, 0);
}

/// A PostgreSQL error keeps its SQLSTATE and its source, not a flattened string.
#[tokio::test]
async fn postgres_errors_keep_their_sqlstate_and_source() {
    let pg = testkit::PgCluster::start().unwrap();
    let url = pg.create_database("errors").unwrap();
    let client = testkit::connect(&url).await.unwrap();
    let refused = client
        .query("SELECT * FROM no_such_table", &[])
        .await
        .unwrap_err();
    let e = perf_db::Error::from(refused);
    assert_eq!(e.sqlstate(), Some("42P01"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    assert!(e.to_string().starts_with("database: 42P01: "), "{e}");
    // A statement timeout has its own code.
    client
        .batch_execute("SET statement_timeout = 1")
        .await
        .unwrap();
    let timed_out = client
        .query("SELECT pg_sleep(1)", &[])
        .await
        .map_err(perf_db::Error::from)
        .unwrap_err();
    assert_eq!(timed_out.sqlstate(), Some("57014"), "{timed_out}");
}
