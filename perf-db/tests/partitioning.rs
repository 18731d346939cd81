//! Partitioning advice on real tables of a throwaway PostgreSQL (thresholds
//! scaled down so a test-sized table counts as large).
#![allow(clippy::unwrap_used)]

use perf_db::{PartitionOptions, PartitionOptionsBuilder, PartitionStrategy, partition_advice};

#[tokio::test]
async fn time_ranges_get_range_partitions_and_keys_get_list_or_hash() {
    let pg = testkit::PgCluster::start().unwrap();
    let (_, client) = pg.database("metrics").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE events (id bigint, tenant int, region text, at timestamptz, payload text);
             INSERT INTO events SELECT g, g % 5000, 'r' || (g % 4), '2026-01-01'::timestamptz + g * interval '1 minute', repeat('x', 100)
             FROM generate_series(1, 200000) g;
             CREATE TABLE tiny (id int, at timestamptz);
             INSERT INTO tiny VALUES (1, now());
             ANALYZE;",
        )
        .await
        .unwrap();
    let size: i64 = client
        .query_one("SELECT pg_total_relation_size('events')", &[])
        .await
        .unwrap()
        .get(0);
    let options = PartitionOptions::builder()
        .min_table_bytes(size / 2)
        .target_partition_bytes(size / 15)
        .max_list_values(50.0)
        .build()
        .unwrap();

    let by_time = partition_advice(
        &client,
        &[
            "SELECT * FROM events WHERE at >= $1 AND at < $2".into(),
            "SELECT * FROM tiny WHERE at > $1".into(),
        ],
        &options,
    )
    .await
    .unwrap();
    assert_eq!(by_time.len(), 1, "{by_time:#?}");
    let a = &by_time[0];
    assert_eq!(
        (a.table.as_str(), a.strategy, a.key.as_str()),
        ("events", PartitionStrategy::Range, "at")
    );
    // About 139 days of data at a fifteenth of the size per partition: weekly partitions.
    assert_eq!(a.interval.as_deref(), Some("week"), "{a:#?}");
    assert!(
        a.partition_bytes <= options.target_partition_bytes && a.partitions >= 19,
        "{a:#?}"
    );
    assert!(a.create_statement.ends_with("PARTITION BY RANGE (at)"));

    let by_region = partition_advice(
        &client,
        &["SELECT count(*) FROM events WHERE region = $1".into()],
        &options,
    )
    .await
    .unwrap();
    assert_eq!(
        (by_region[0].strategy, by_region[0].partitions),
        (PartitionStrategy::List, 4),
        "{by_region:#?}"
    );

    let by_tenant = partition_advice(
        &client,
        &["SELECT * FROM events WHERE tenant = $1".into()],
        &options,
    )
    .await
    .unwrap();
    assert_eq!(
        by_tenant[0].strategy,
        PartitionStrategy::Hash,
        "{by_tenant:#?}"
    );
    assert!((by_tenant[0].partitions as u64).is_power_of_two() && by_tenant[0].partitions >= 16);

    let big_only = PartitionOptionsBuilder::from(options)
        .min_table_bytes(size * 10)
        .build()
        .unwrap();
    assert!(
        partition_advice(
            &client,
            &["SELECT * FROM events WHERE at > $1".into()],
            &big_only
        )
        .await
        .unwrap()
        .is_empty()
    );
}
