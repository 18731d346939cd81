//! Index advice verified with hypopg on a real throwaway PostgreSQL.
#![allow(clippy::unwrap_used)]

use perf_db::{AdviceOptions, advise_indexes, apply_index};

#[tokio::test]
async fn missing_indexes_are_advised_verified_and_covered_ones_are_not() {
    let pg = testkit::PgCluster::start().unwrap();
    pg.require_hypopg();
    let (_, client) = pg.database("shop").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, sku text, category int, price numeric, created_at timestamptz);
             INSERT INTO items SELECT g, 'sku-' || g, g % 50, g % 997, now() - g * interval '1 minute' FROM generate_series(1, 100000) g;
             CREATE INDEX items_created ON items (created_at);
             CREATE VIEW item_codes AS SELECT id, sku AS code FROM items;
             ANALYZE items;",
        )
        .await
        .unwrap();
    let queries: Vec<String> = [
        "SELECT * FROM items WHERE sku = $1", // needs (sku)
        "SELECT * FROM items WHERE category = $1 AND price > $2", // needs (category, price)
        "SELECT * FROM items WHERE id = $1",  // the primary key covers it
        "SELECT * FROM items WHERE created_at > now() - interval '5 minutes'", // items_created covers it
        "SELECT count(*) FROM items WHERE price > 0", // most rows: an index would not help
        "SELECT id FROM item_codes WHERE code = $1",  // through the view: items (sku)
    ]
    .map(str::to_owned)
    .into();
    let advice = advise_indexes(&client, &queries, &AdviceOptions::default())
        .await
        .unwrap()
        .indexes;
    let found: Vec<(String, Vec<String>)> = advice
        .iter()
        .map(|a| (a.table.clone(), a.columns.clone()))
        .collect();
    assert!(
        found.contains(&("items".into(), vec!["sku".into()])),
        "{advice:#?}"
    );
    assert!(
        found.contains(&("items".into(), vec!["category".into(), "price".into()])),
        "{advice:#?}"
    );
    assert_eq!(advice.len(), 2, "{advice:#?}");
    let sku = advice.iter().find(|a| a.columns == ["sku"]).unwrap();
    assert!(
        sku.helps.iter().any(|g| g.query.contains("item_codes")),
        "the view's statement is helped by the index on its base table: {sku:#?}"
    );
    for a in &advice {
        assert!(a.verified);
        let gain = &a.helps[0];
        let (before, after) = (gain.cost_before.unwrap(), gain.cost_after.unwrap());
        assert!(after <= before * 0.5, "{a:#?}");
        assert!(
            a.create_statement
                .starts_with("CREATE INDEX CONCURRENTLY ON items ("),
            "{}",
            a.create_statement
        );
    }
    // Nothing was created: the advice is only advice.
    let indexes: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'items'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 2);
    // Applied on request, under a name of its own; then it is no longer advised.
    let mut tampered = sku.clone();
    tampered.create_statement = "DROP TABLE items".to_owned();
    let applied = apply_index(&client, &tampered).await.unwrap();
    assert_eq!(applied.name, "items_sku_perf_idx");
    assert_eq!(
        applied.statement,
        "CREATE INDEX CONCURRENTLY items_sku_perf_idx ON items (sku)"
    );
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_sku_perf_idx'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    let again = advise_indexes(&client, &queries, &AdviceOptions::default())
        .await
        .unwrap()
        .indexes;
    assert!(again.iter().all(|a| a.columns != ["sku"]), "{again:#?}");
    // Applying it twice is a clear error, not a second index.
    let err = apply_index(&client, sku).await.unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    client
        .batch_execute("DROP INDEX items_sku_perf_idx")
        .await
        .unwrap();
    // A stricter threshold drops what saves less.
    let strict = advise_indexes(
        &client,
        &queries,
        &AdviceOptions::builder()
            .min_saving(0.999_999)
            .build()
            .unwrap(),
    )
    .await
    .unwrap()
    .indexes;
    assert!(
        strict.len() < 2
            || strict.iter().all(|a| a
                .helps
                .iter()
                .all(|g| g.cost_after.unwrap() <= g.cost_before.unwrap() * 1e-6))
    );
}

#[tokio::test]
async fn pgbench_accounts_without_keys_get_an_index_on_aid() {
    let pg = testkit::PgCluster::start().unwrap();
    let url = pg.create_database("bench").unwrap();
    pg.pgbench_tables_without_keys("bench").unwrap();
    let client = testkit::connect(&url).await.unwrap();
    client.batch_execute("ANALYZE").await.unwrap();
    let advice = advise_indexes(
        &client,
        &["SELECT abalance FROM pgbench_accounts WHERE aid = $1".to_owned()],
        &AdviceOptions::default(),
    )
    .await
    .unwrap()
    .indexes;
    assert_eq!(advice.len(), 1, "{advice:#?}");
    assert_eq!(
        (advice[0].table.as_str(), advice[0].columns.as_slice()),
        ("pgbench_accounts", ["aid".to_owned()].as_slice())
    );
    assert!(advice[0].verified);
    let gain = &advice[0].helps[0];
    // A sequential scan of 100,000 rows against an index probe.
    assert!(
        gain.cost_after.unwrap() < gain.cost_before.unwrap() / 100.0,
        "{gain:?}"
    );
    assert_eq!(
        advice[0].create_statement,
        "CREATE INDEX CONCURRENTLY ON pgbench_accounts (aid)"
    );
}
