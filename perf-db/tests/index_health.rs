//! Index health read from the statistics of a real throwaway PostgreSQL.
#![allow(clippy::unwrap_used)]

use perf_db::{HealthOptions, index_health};

#[tokio::test]
async fn duplicates_unused_indexes_and_seq_scanned_tables_are_reported() {
    let pg = testkit::PgCluster::start().unwrap();
    let (_, client) = pg.database("shop").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, customer int, status text, note text);
             INSERT INTO orders SELECT g, g % 100, 'paid', 'n' FROM generate_series(1, 20000) g;
             CREATE INDEX orders_customer ON orders (customer);
             CREATE INDEX orders_customer_status ON orders (customer, status);
             CREATE UNIQUE INDEX orders_id_customer ON orders (id, customer);
             CREATE INDEX orders_note ON orders (note);
             CREATE INDEX orders_status_partial ON orders (status) WHERE status = 'open';
             CREATE TABLE small (id int);
             INSERT INTO small VALUES (1);
             ANALYZE;",
        )
        .await
        .unwrap();
    // Expressions no index matches: sequential scans only.
    for _ in 0..3 {
        client
            .query("SELECT count(*) FROM orders WHERE note || '' = 'x'", &[])
            .await
            .unwrap();
        client.query("SELECT * FROM small", &[]).await.unwrap();
    }
    // Statistics reach the views asynchronously: wait for them.
    let mut health = index_health(&client, &HealthOptions::default())
        .await
        .unwrap();
    for _ in 0..50 {
        if !health.missing_index_hints.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        health = index_health(&client, &HealthOptions::default())
            .await
            .unwrap();
    }

    let dups: Vec<(&str, &str)> = health
        .duplicates
        .iter()
        .map(|d| (d.index.as_str(), d.covered_by.as_str()))
        .collect();
    // (customer) is a prefix of (customer, status); the unique (id, customer) is not redundant
    // next to the primary key on (id): different uniqueness; the partial index has its own predicate.
    assert_eq!(
        dups,
        [("orders_customer", "orders_customer_status")],
        "{health:#?}"
    );
    assert_eq!(
        health.duplicates[0].drop_statement,
        "DROP INDEX CONCURRENTLY public.orders_customer"
    );

    // Unused: exactly the never-scanned indexes PostgreSQL counts, minus primary and unique ones.
    let never_scanned: Vec<String> = client
        .query(
            "SELECT indexrelname::text FROM pg_stat_user_indexes WHERE idx_scan = 0 AND indexrelname NOT IN ('orders_pkey', 'orders_id_customer') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut unused: Vec<String> = health.unused.iter().map(|u| u.index.clone()).collect();
    unused.sort();
    assert_eq!(unused, never_scanned, "{health:#?}");
    assert!(
        unused.contains(&"orders_status_partial".to_owned()),
        "{unused:?}"
    );
    assert!(health.unused.iter().all(|u| {
        u.drop_statement
            .starts_with("DROP INDEX CONCURRENTLY public.")
    }));

    let hinted: Vec<&str> = health
        .missing_index_hints
        .iter()
        .map(|h| h.table.as_str())
        .collect();
    assert_eq!(hinted, ["orders"], "{health:#?}");
    assert!(health.missing_index_hints[0].seq_scans >= 3);
}
