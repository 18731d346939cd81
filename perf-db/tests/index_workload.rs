//! Workload-wide index selection against a throwaway PostgreSQL with hypopg:
//! shared indexes instead of one per statement, budgets, the write penalty
//! and HOT updates, and pgbench's own workload.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use perf_db::{
    AdviceOptions, WorkloadAdvice, WorkloadOptions, WorkloadOptionsBuilder, WorkloadStatement,
    advise_indexes, advise_workload,
};

async fn connect(pg: &testkit::PgCluster, db: &str) -> tokio_postgres::Client {
    pg.require_hypopg();
    pg.database(db).await.unwrap().1
}

fn statement(query: &str, calls: u64, total_time_ms: f64) -> WorkloadStatement {
    WorkloadStatement {
        query: query.to_owned(),
        calls,
        total_time_ms,
    }
}

fn summary(label: &str, a: &WorkloadAdvice) {
    println!(
        "{label}: {} statements, {} helpable, {} served; {} indexes, {} bytes, {:.0} ms/h saved, \
         {:.0} ms/h write penalty, {} rejected, {} plans in {:.0} ms",
        a.statements,
        a.statements_helpable,
        a.statements_served,
        a.indexes.len(),
        a.total_bytes,
        a.saved_ms_per_hour,
        a.write_penalty_ms_per_hour,
        a.rejected.len(),
        a.plans,
        a.elapsed_ms
    );
}

/// `c_i = $1 AND c_j = $2` for every pair of `columns` columns.
fn pairs(columns: usize) -> Vec<WorkloadStatement> {
    let mut out = Vec::new();
    for i in 0..columns {
        for j in i + 1..columns {
            out.push(statement(
                &format!("SELECT * FROM grid WHERE c{i} = $1 AND c{j} = $2"),
                1000,
                1000.0,
            ));
        }
    }
    out
}

#[tokio::test]
async fn similar_statements_share_indexes_within_budgets() {
    let pg = testkit::PgCluster::start().unwrap();
    let client = connect(&pg, "grid").await;
    let columns = 12;
    let list: Vec<String> = (0..columns)
        .map(|i| format!("(random() * 999)::int AS c{i}"))
        .collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE grid AS SELECT {} FROM generate_series(1, 60000); ANALYZE grid;",
            list.join(", ")
        ))
        .await
        .unwrap();
    let workload = pairs(columns);
    let queries: Vec<String> = workload.iter().map(|s| s.query.clone()).collect();
    let per_statement = advise_indexes(&client, &queries, &AdviceOptions::default())
        .await
        .unwrap();
    let chosen = advise_workload(&client, &workload, &WorkloadOptions::default())
        .await
        .unwrap();
    summary("pairs", &chosen);
    println!(
        "pairs: per-statement advice gives {} indexes for {} statements",
        per_statement.indexes.len(),
        workload.len()
    );
    assert_eq!(
        per_statement.indexes.len(),
        workload.len(),
        "one pair index each"
    );
    assert!(
        chosen.indexes.len() <= columns,
        "at most one index per column: {:#?}",
        chosen
            .indexes
            .iter()
            .map(|w| &w.index.columns)
            .collect::<Vec<_>>()
    );
    // Each serves several statements: a pair index is chosen only where its
    // first column serves the other statements on that column too.
    assert!(
        chosen.indexes.iter().all(|w| w.index.helps.len() >= 2),
        "{:#?}",
        chosen.indexes
    );
    assert_eq!(chosen.statements_served, workload.len());
    // Every statement is still cut by half or more with the shared set.
    for w in &chosen.indexes {
        assert!(w.index.verified && w.saved_ms_per_hour > 0.0);
        for g in &w.index.helps {
            assert!(
                g.cost_after.unwrap() <= g.cost_before.unwrap() * 0.5,
                "{g:?}"
            );
        }
    }
    assert!(chosen.saved_ms_per_hour > 0.8 * 1000.0 * workload.len() as f64);
    assert!(
        chosen
            .rejected
            .iter()
            .any(|r| r.columns.len() == 2 && r.reason.contains("below min_gain_ms_per_hour")),
        "{:#?}",
        chosen.rejected
    );

    // Budgets: a count and a size.
    let three = advise_workload(
        &client,
        &workload,
        &WorkloadOptions::builder().max_indexes(3).build().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(three.indexes.len(), 3);
    assert!(
        three
            .rejected
            .iter()
            .any(|r| r.reason == "max_indexes reached")
    );
    let one_size = chosen.indexes[0].estimated_bytes;
    let small = advise_workload(
        &client,
        &workload,
        &WorkloadOptions::builder()
            .max_total_bytes(one_size * 2)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(small.total_bytes <= one_size * 2, "{}", small.total_bytes);
    assert!(
        small
            .rejected
            .iter()
            .any(|r| r.reason.contains("max_total_bytes"))
    );
    // A planning budget just past the two plans per statement that come
    // first stops the selection early: it says so, names the candidates it
    // did not weigh, and plans at most one evaluation (11 statements here)
    // past the budget before the final plan of each statement.
    assert!(chosen.stopped_early.is_none());
    let n = workload.len() as u64;
    let budget = 2 * n + 10;
    let bounded = advise_workload(
        &client,
        &workload,
        &WorkloadOptions::builder()
            .max_plans(budget)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let why = bounded.stopped_early.as_deref().unwrap_or_default();
    assert!(why.contains("max_plans"), "{why:?}");
    assert!(
        bounded
            .rejected
            .iter()
            .any(|r| r.reason.contains("not weighed")),
        "{:#?}",
        bounded.rejected
    );
    assert!(
        bounded.plans <= budget + 11 + n,
        "{} plans for a budget of {budget}",
        bounded.plans
    );
    assert!(bounded.plans < chosen.plans);
    // Refused by the builder, and by the advisor when set afterwards.
    let mut bad = WorkloadOptions::default();
    bad.max_plans = Some(0);
    let err = WorkloadOptionsBuilder::from(bad.clone())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("max_plans"), "{err}");
    let err = advise_workload(&client, &workload, &bad).await.unwrap_err();
    assert!(err.to_string().contains("max_plans"), "{err}");
    // Bad options are named.
    // Refused by the builder, and by the advisor when set afterwards.
    let mut bad = WorkloadOptions::default();
    bad.window_hours = 0.0;
    let err = WorkloadOptionsBuilder::from(bad.clone())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("window_hours"), "{err}");
    let err = advise_workload(&client, &workload, &bad).await.unwrap_err();
    assert!(err.to_string().contains("window_hours"), "{err}");
}

#[tokio::test]
async fn an_index_on_an_updated_column_must_pay_for_the_hot_updates_it_breaks() {
    let pg = testkit::PgCluster::start().unwrap();
    let client = connect(&pg, "hot").await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int, branch int) WITH (fillfactor = 50);
             INSERT INTO accounts SELECT g, g % 5000, g % 10 FROM generate_series(1, 100000) g;
             ANALYZE accounts;
             UPDATE accounts SET balance = balance + 1 WHERE id % 4 = 0;",
        )
        .await
        .unwrap();
    // The statistics collector sees the HOT updates.
    let mut hot = 0i64;
    for _ in 0..50 {
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
        hot = client
            .query_one(
                "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'accounts'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if hot > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(hot > 10_000, "HOT updates seen: {hot}");
    let update = statement(
        "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
        1_000_000,
        50_000.0,
    );
    let rare = advise_workload(
        &client,
        &[
            update.clone(),
            statement("SELECT * FROM accounts WHERE balance = $1", 10, 3_000.0),
        ],
        &WorkloadOptions::default(),
    )
    .await
    .unwrap();
    summary("hot, rare read", &rare);
    assert!(rare.indexes.is_empty(), "{rare:#?}");
    let reason = &rare.rejected[0].reason;
    assert!(reason.contains("HOT"), "{reason}");
    let frequent = advise_workload(
        &client,
        &[
            update,
            statement(
                "SELECT * FROM accounts WHERE balance = $1",
                100_000,
                3_000_000.0,
            ),
        ],
        &WorkloadOptions::default(),
    )
    .await
    .unwrap();
    summary("hot, frequent read", &frequent);
    assert_eq!(frequent.indexes.len(), 1, "{frequent:#?}");
    let w = &frequent.indexes[0];
    assert_eq!(w.index.columns, ["balance"]);
    assert!(w.breaks_hot_updates && w.write_penalty_ms_per_hour > 0.0);
    assert!(w.saved_ms_per_hour > w.write_penalty_ms_per_hour);
}

#[tokio::test]
async fn pgbench_workload_gets_its_keys_and_nothing_for_tiny_tables() {
    let pg = testkit::PgCluster::start().unwrap();
    let client = connect(&pg, "bench").await;
    pg.pgbench_tables_without_keys("bench").unwrap();
    client.batch_execute("ANALYZE").await.unwrap();
    // pgbench's TPC-B transaction, as pg_stat_statements would count an hour of it.
    let workload = [
        statement(
            "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            360_000,
            120_000.0,
        ),
        statement(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            360_000,
            90_000.0,
        ),
        statement(
            "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
            360_000,
            20_000.0,
        ),
        statement(
            "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
            360_000,
            20_000.0,
        ),
        statement(
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
            360_000,
            15_000.0,
        ),
        statement(
            "SELECT * FROM pgbench_accounts WHERE aid = $1 AND bid = $2",
            1_000,
            300.0,
        ),
    ];
    let chosen = advise_workload(&client, &workload, &WorkloadOptions::default())
        .await
        .unwrap();
    summary("pgbench", &chosen);
    let tables: Vec<(&str, &[String])> = chosen
        .indexes
        .iter()
        .map(|w| (w.index.table.as_str(), w.index.columns.as_slice()))
        .collect();
    assert_eq!(
        tables,
        [("pgbench_accounts", ["aid".to_owned()].as_slice())],
        "{chosen:#?}"
    );
    // One index serves the three account statements.
    assert_eq!(chosen.indexes[0].index.helps.len(), 3, "{chosen:#?}");
    assert!(chosen.indexes[0].saved_ms_per_hour > 100_000.0);
}
