//! Slow queries read from pg_stat_statements of a real throwaway PostgreSQL.
#![allow(clippy::unwrap_used)]

use perf_db::{SlowQueryFilter, fingerprint, slow_queries};

async fn connect(url: &str) -> tokio_postgres::Client {
    testkit::connect(url).await.unwrap()
}

#[tokio::test]
async fn the_slow_statement_is_found_and_filters_apply() {
    let pg = testkit::PgCluster::start().unwrap();
    let url = pg.create_database("shop").unwrap();
    let client = connect(&url).await;

    // Without the extension the error says what to do.
    let err = slow_queries(&client, &SlowQueryFilter::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("CREATE EXTENSION pg_stat_statements"),
        "{err}"
    );

    client
        .batch_execute("CREATE EXTENSION pg_stat_statements; CREATE TABLE items (id int primary key, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;")
        .await
        .unwrap();
    client
        .execute("SELECT pg_stat_statements_reset()", &[])
        .await
        .unwrap();
    for i in 0..20 {
        client
            .query("SELECT name FROM items WHERE id = $1", &[&i])
            .await
            .unwrap();
    }
    for _ in 0..3 {
        client
            .query(
                "SELECT count(*), pg_sleep(0.03) FROM items WHERE name LIKE 'item 1%'",
                &[],
            )
            .await
            .unwrap();
    }

    let slow = slow_queries(
        &client,
        &SlowQueryFilter::builder()
            .min_mean_ms(20.0)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(slow.len(), 1, "{slow:#?}");
    assert!(slow[0].query.contains("pg_sleep"), "{slow:#?}");
    assert_eq!(slow[0].calls, 3);
    assert!(slow[0].mean_ms >= 30.0 && slow[0].max_ms >= slow[0].mean_ms);
    assert!(slow[0].fingerprint.is_some());

    let frequent = slow_queries(
        &client,
        &SlowQueryFilter::builder().min_calls(20).build().unwrap(),
    )
    .await
    .unwrap();
    let lookup = frequent
        .iter()
        .find(|q| q.query.contains("FROM items WHERE id"))
        .unwrap();
    assert_eq!(lookup.calls, 20);
    assert_eq!(lookup.rows, 19);
    // pg_stat_statements' text and ours group alike.
    assert_eq!(
        lookup.fingerprint,
        Some(fingerprint("SELECT name FROM items WHERE id = 7").unwrap())
    );
    assert!(frequent.iter().all(|q| q.calls >= 20));

    let few = slow_queries(
        &client,
        &SlowQueryFilter::builder().limit(1).build().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(few.len(), 1);

    // perf-db's own statements (here index health's catalog reads) are
    // marked, and left out unless asked for.
    perf_db::index_health(&client, &perf_db::HealthOptions::default())
        .await
        .unwrap();
    perf_db::database_activity(&client).await.unwrap();
    let workload = slow_queries(&client, &SlowQueryFilter::default())
        .await
        .unwrap();
    assert!(
        workload
            .iter()
            .all(|q| !q.query.starts_with(perf_db::OWN_STATEMENT_MARKER)),
        "{workload:#?}"
    );
    assert!(workload.iter().any(|q| q.query.contains("pg_sleep")));
    let everything = slow_queries(
        &client,
        &SlowQueryFilter::builder()
            .include_own(true)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let own = everything
        .iter()
        .filter(|q| q.query.starts_with(perf_db::OWN_STATEMENT_MARKER))
        .count();
    assert!(
        own >= 3,
        "index health and activity reads expected: {everything:#?}"
    );
}
