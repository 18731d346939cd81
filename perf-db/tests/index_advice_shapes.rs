//! Index advice on each statement shape, against a throwaway PostgreSQL
//! with hypopg: joins (constants propagated), inlined and materialized
//! CTEs, ORDER BY by position, alias and mixed directions, the 32-key limit
//! and pg_stats selectivity, partitions, materialized views, foreign tables,
//! computed view columns, statements PostgreSQL rejects, and the operator's
//! options. Each case prints the statement, the advised index and the
//! planned cost before and after (`--nocapture`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use perf_db::{Advice, AdviceOptions, advise_indexes};

async fn setup() -> (testkit::PgCluster, tokio_postgres::Client) {
    let pg = testkit::PgCluster::start().unwrap();
    pg.require_hypopg();
    let (_, client) = pg.database("shapes").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE blogs (id int PRIMARY KEY, name text, owner int);
             INSERT INTO blogs SELECT g, 'blog-' || g, g % 1000 FROM generate_series(1, 20000) g;
             CREATE TABLE posts (id int PRIMARY KEY, blog_id int, author int, score int,
                                 created_at timestamptz, title text);
             INSERT INTO posts SELECT g, g % 20000 + 1, g % 5000, g % 997,
                    now() - g * interval '1 second', 'post ' || g FROM generate_series(1, 200000) g;
             CREATE VIEW blog_post_counts AS SELECT blog_id, count(*) AS n FROM posts GROUP BY blog_id;
             CREATE MATERIALIZED VIEW author_scores AS
                 SELECT author, sum(score) AS total FROM posts GROUP BY author;
             CREATE TABLE events (id int, tenant int, at timestamptz) PARTITION BY RANGE (id);
             CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (0) TO (100000);
             CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM (100000) TO (200000);
             INSERT INTO events SELECT g, g % 3000, now() FROM generate_series(0, 199999) g;
             CREATE EXTENSION file_fdw;
             CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
             CREATE FOREIGN TABLE imported (id int, v text) SERVER files
                 OPTIONS (filename '/dev/null', format 'csv');
             ANALYZE;",
        )
        .await
        .unwrap();
    (pg, client)
}

/// The advised indexes as `table (keys)`, printed with their costs.
fn show(label: &str, advice: &Advice) -> Vec<String> {
    let mut out = Vec::new();
    for a in &advice.indexes {
        let keys: Vec<String> = a.keys.iter().map(ToString::to_string).collect();
        let entry = format!("{} ({})", a.table, keys.join(", "));
        for g in &a.helps {
            println!(
                "{label}: {entry} cost {:.1} -> {:.1} for {}",
                g.cost_before.unwrap(),
                g.cost_after.unwrap(),
                g.query
            );
        }
        out.push(entry);
    }
    for s in &advice.skipped {
        println!("{label}: skipped {} -- {}", s.query, s.reason);
    }
    out
}

async fn advise(
    client: &tokio_postgres::Client,
    label: &str,
    queries: &[&str],
) -> (Vec<String>, Advice) {
    let queries: Vec<String> = queries.iter().map(|q| (*q).to_owned()).collect();
    let advice = advise_indexes(client, &queries, &AdviceOptions::default())
        .await
        .unwrap();
    (show(label, &advice), advice)
}

#[tokio::test]
async fn every_statement_shape_gets_the_index_the_planner_uses() {
    let (_pg, client) = setup().await;

    // Joins: the inner side's join key, with a constant propagated through the join.
    let (found, _) = advise(
        &client,
        "join",
        &["SELECT p.title FROM blogs b JOIN posts p ON p.blog_id = b.id WHERE b.name = $1"],
    )
    .await;
    assert!(found.contains(&"posts (blog_id)".to_owned()), "{found:?}");
    assert!(found.contains(&"blogs (name)".to_owned()), "{found:?}");
    let (found, _) = advise(
        &client,
        "propagated",
        &["SELECT * FROM blogs, posts WHERE blogs.id = 1 AND blogs.id = posts.blog_id"],
    )
    .await;
    assert_eq!(found, ["posts (blog_id)"]);

    // CTEs: inlined ones are seen through, a MATERIALIZED one is a fence.
    let (found, _) = advise(
        &client,
        "cte",
        &["WITH mine AS (SELECT * FROM posts) SELECT * FROM mine WHERE author = $1"],
    )
    .await;
    assert_eq!(found, ["posts (author)"]);
    let (found, _) = advise(
        &client,
        "cte not materialized",
        &[
            "WITH mine AS NOT MATERIALIZED (SELECT id, author AS who FROM posts) \
           SELECT * FROM mine a JOIN mine b ON a.id = b.id WHERE a.who = $1",
        ],
    )
    .await;
    assert!(found.contains(&"posts (author)".to_owned()), "{found:?}");
    let (found, advice) = advise(
        &client,
        "cte materialized",
        &["WITH mine AS MATERIALIZED (SELECT * FROM posts) SELECT * FROM mine WHERE author = $1"],
    )
    .await;
    assert!(found.is_empty(), "{found:?}");
    assert!(
        advice.skipped[0].reason.contains("MATERIALIZED"),
        "{advice:?}"
    );

    // ORDER BY by position and alias, in ORDER BY order, directions when mixed.
    let (found, _) = advise(
        &client,
        "order by position",
        &["SELECT id, score FROM posts WHERE blog_id = $1 ORDER BY 2 DESC LIMIT 5"],
    )
    .await;
    assert!(
        found.contains(&"posts (blog_id, score)".to_owned()),
        "{found:?}"
    );
    let (found, _) = advise(
        &client,
        "order by alias",
        &["SELECT title, created_at AS c FROM posts ORDER BY c DESC LIMIT 10"],
    )
    .await;
    assert_eq!(found, ["posts (created_at)"]);
    let (found, _) = advise(
        &client,
        "mixed directions",
        &["SELECT * FROM posts ORDER BY author, score DESC LIMIT 10"],
    )
    .await;
    assert_eq!(found, ["posts (author, score DESC)"]);
    let (found, _) = advise(
        &client,
        "order of keys",
        &["SELECT * FROM posts ORDER BY score, author LIMIT 10"],
    )
    .await;
    assert_eq!(
        found,
        ["posts (score, author)"],
        "ORDER BY order, not sorted"
    );

    // Partitions advise on the parent; materialized views on themselves.
    let (found, _) = advise(
        &client,
        "partitioned",
        &[
            "SELECT * FROM events WHERE tenant = $1",
            "SELECT * FROM events_2 WHERE tenant = $1 AND at > $2",
        ],
    )
    .await;
    assert!(found.contains(&"events (tenant)".to_owned()), "{found:?}");
    assert!(found.iter().all(|f| f.starts_with("events ")), "{found:?}");
    let (found, _) = advise(
        &client,
        "materialized view",
        &["SELECT * FROM author_scores WHERE total = $1"],
    )
    .await;
    assert_eq!(found, ["author_scores (total)"]);
}

#[tokio::test]
async fn one_bad_statement_is_skipped_with_its_reason_and_the_others_are_advised() {
    let (_pg, client) = setup().await;
    let (found, advice) = advise(
        &client,
        "isolation",
        &[
            "SELECT * FROM posts WHERE no_such_column = 1",
            "SELECT * FROM imported WHERE id = 7",
            "SELECT * FROM blog_post_counts WHERE n = 5",
            "SELECT * FROM no_such_table WHERE id = 1",
            "SELECT * FROM WHERE",
            "SELECT * FROM posts WHERE author = $1",
            "SELECT * FROM posts WHERE x = $70000",
        ],
    )
    .await;
    assert_eq!(found, ["posts (author)"]);
    let reason = |needle: &str| {
        advice
            .skipped
            .iter()
            .find(|s| s.query.contains(needle))
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{needle} not skipped: {advice:#?}"))
    };
    assert!(
        reason("no_such_column").contains("42703"),
        "{}",
        reason("no_such_column")
    );
    assert!(
        reason("imported").contains("foreign table"),
        "{}",
        reason("imported")
    );
    assert!(
        reason("blog_post_counts").contains("computed"),
        "{}",
        reason("blog_post_counts")
    );
    assert!(
        reason("no_such_table").contains("42P01"),
        "{}",
        reason("no_such_table")
    );
    assert!(reason("FROM WHERE").contains("cannot be parsed"));
    assert!(reason("$70000").contains("65535"));
    assert_eq!(advice.skipped.len(), 6, "{advice:#?}");
}

#[tokio::test]
async fn wide_equality_sets_use_pg_stats_and_options_are_honoured() {
    let (_pg, client) = setup().await;
    let columns: Vec<String> = (1..=40).map(|i| format!("c{i}")).collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE wide AS SELECT g AS c1, {} FROM generate_series(1, 50000) g; ANALYZE wide;",
            (2..=40)
                .map(|i| format!("g % {i} AS c{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await
        .unwrap();
    let filter: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let wide = format!("SELECT * FROM wide WHERE {}", filter.join(" AND "));
    let (found, advice) = advise(&client, "wide", &[wide.as_str()]).await;
    assert!(
        advice
            .indexes
            .iter()
            .all(|a| a.columns.len() <= perf_db::INDEX_MAX_KEYS)
    );
    assert_eq!(
        found,
        ["wide (c1)"],
        "the unique column alone singles out a row"
    );

    // Options: include/exclude, the cost floor, plain CREATE INDEX, ANALYZE of stale tables.
    let queries = vec![
        "SELECT * FROM posts WHERE author = $1".to_owned(),
        "SELECT * FROM blogs WHERE name = $1".to_owned(),
    ];
    let only_blogs = advise_indexes(
        &client,
        &queries,
        &AdviceOptions::builder()
            .include_tables(vec!["blogs".into()])
            .concurrently(false)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(only_blogs.indexes.len(), 1, "{only_blogs:#?}");
    assert_eq!(
        only_blogs.indexes[0].create_statement,
        "CREATE INDEX ON blogs (name)"
    );
    let not_posts = advise_indexes(
        &client,
        &queries,
        &AdviceOptions::builder()
            .exclude_tables(vec!["public.posts".into()])
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(
        not_posts.indexes.iter().all(|a| a.table == "blogs"),
        "{not_posts:#?}"
    );
    let floor = advise_indexes(
        &client,
        &queries,
        &AdviceOptions::builder().min_cost(1e9).build().unwrap(),
    )
    .await
    .unwrap();
    assert!(floor.indexes.is_empty());
    assert!(
        floor.skipped.iter().all(|s| s.reason.contains("min_cost")),
        "{floor:#?}"
    );
    client
        .batch_execute("CREATE TABLE fresh (k int); INSERT INTO fresh SELECT g FROM generate_series(1, 30000) g;")
        .await
        .unwrap();
    let analyzed = advise_indexes(
        &client,
        &["SELECT * FROM fresh WHERE k = $1".to_owned()],
        &AdviceOptions::builder()
            .analyze_stale(true)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(analyzed.analyzed, ["fresh"]);
    assert_eq!(analyzed.indexes[0].columns, ["k"]);
    // The session is left as it was: no hypothetical index, generic plans off.
    let left: i64 = client
        .query_one("SELECT count(*) FROM hypopg_list_indexes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let mode: String = client
        .query_one("SHOW plan_cache_mode", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "auto");
}
