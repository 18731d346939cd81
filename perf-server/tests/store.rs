//! The store conformance suite, run against both backends: SQLite in a temp
//! dir and PostgreSQL in a throwaway cluster.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use perf_core::Id;
use perf_server::Error;
use perf_server::monitor::HostSample;
use perf_server::store::{
    LoadTestRecord, MetricsSnapshot, PageRequest, PostgresStore, ProfileData, ProfileRecord,
    ScalingEventRecord, SqliteStore, Store, TestFilter, TestStatus,
};

fn sample() -> HostSample {
    let mut sampler = perf_core::system::SystemSampler::new().unwrap();
    std::thread::sleep(Duration::from_millis(120));
    HostSample {
        system: sampler.sample().unwrap(),
        allocator: None,
    }
}

fn snapshot(label: &str, sample: &HostSample) -> MetricsSnapshot {
    MetricsSnapshot {
        id: Id::new(),
        label: label.to_owned(),
        note: Some(format!("note of {label}")),
        created_at_ms: perf_core::unix_millis(),
        sample: sample.clone(),
    }
}

async fn conformance(store: &dyn Store) {
    store.ping().await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 5);

    let sample = sample();
    let mut written = Vec::new();
    for i in 0..7 {
        let s = snapshot(&format!("snapshot {i}"), &sample);
        store.insert_snapshot(&s).await.unwrap();
        written.push(s);
    }

    // Read back exactly what was written.
    let got = store.get_snapshot(written[3].id).await.unwrap().unwrap();
    assert_eq!(got, written[3]);
    assert!(store.get_snapshot(Id::new()).await.unwrap().is_none());

    // Newest first, in pages of 3 following the cursor, nothing lost or repeated.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_snapshots(PageRequest { limit: 3, before })
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|s| s.id));
        match page.next_cursor {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    let mut expected: Vec<Id> = written.iter().map(|s| s.id).collect();
    expected.reverse();
    assert_eq!(seen, expected);

    // A duplicate id is refused, not overwritten.
    let mut dup = written[0].clone();
    dup.label = "overwrite attempt".into();
    assert!(store.insert_snapshot(&dup).await.is_err());
    assert_eq!(
        store.get_snapshot(dup.id).await.unwrap().unwrap().label,
        "snapshot 0"
    );

    assert!(store.delete_snapshot(written[1].id).await.unwrap());
    assert!(!store.delete_snapshot(written[1].id).await.unwrap());
    assert!(store.get_snapshot(written[1].id).await.unwrap().is_none());
    let page = store.list_snapshots(PageRequest::first(500)).await.unwrap();
    assert_eq!(page.items.len(), 6);
    assert!(page.next_cursor.is_none());

    load_tests(store).await;
    store.close().await.unwrap();
}

fn load_test(name: &str, target: &str) -> LoadTestRecord {
    LoadTestRecord {
        id: Id::new(),
        scenario_name: name.to_owned(),
        targets: vec![target.to_owned()],
        status: TestStatus::Queued,
        created_at_ms: perf_core::unix_millis(),
        started_at_ms: None,
        finished_at_ms: None,
        scenario: serde_json::json!({"duration": "1s", "users": 2, "target": target}),
        progress: None,
        report: None,
        error: None,
    }
}

/// The newest ten tests `filter` selects.
async fn listed(store: &dyn Store, filter: &TestFilter) -> Vec<LoadTestRecord> {
    store
        .list_load_tests(filter, PageRequest::first(10))
        .await
        .unwrap()
        .items
}

async fn load_tests(store: &dyn Store) {
    let a = load_test("checkout", "http://127.0.0.1:1");
    let mut b = load_test("search", "http://127.0.0.1:2");
    let c = load_test("checkout", "http://127.0.0.1:2");
    for t in [&a, &b, &c] {
        store.insert_load_test(t, "me").await.unwrap();
    }
    assert_eq!(store.get_load_test(a.id).await.unwrap().unwrap(), a);

    // A real report and progress survive the round trip exactly.
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let scenario: perf_loadgen::Scenario = serde_json::from_value(
        serde_json::json!({"target": target.url(), "duration": "1s", "users": 2}),
    )
    .unwrap();
    let run = perf_loadgen::start("search", &scenario).await.unwrap();
    let live = run.progress();
    let report = run.report().await.unwrap();
    b.status = TestStatus::Completed;
    b.started_at_ms = Some(b.created_at_ms + 1);
    b.finished_at_ms = Some(b.created_at_ms + 1001);
    b.progress = Some(live.borrow().clone());
    b.report = Some(report);
    store.save_load_test(&b).await.unwrap();
    assert_eq!(store.get_load_test(b.id).await.unwrap().unwrap(), b);

    // History: newest first, filters, no reports in listings.
    let all = store
        .list_load_tests(&TestFilter::default(), PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [c.id, b.id, a.id]
    );
    assert!(all.items.iter().all(|t| t.report.is_none()));
    let checkout = TestFilter {
        scenario: Some("checkout".into()),
        ..TestFilter::default()
    };
    assert_eq!(listed(store, &checkout).await.len(), 2);
    let on_2 = TestFilter {
        target: Some("http://127.0.0.1:2".into()),
        ..TestFilter::default()
    };
    assert_eq!(listed(store, &on_2).await.len(), 2);
    let done = TestFilter {
        status: Some(TestStatus::Completed),
        ..TestFilter::default()
    };
    assert_eq!(listed(store, &done).await[0].id, b.id);
    let page = store
        .list_load_tests(&TestFilter::default(), PageRequest::first(2))
        .await
        .unwrap();
    let rest = store
        .list_load_tests(
            &TestFilter::default(),
            PageRequest {
                limit: 2,
                before: page.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.iter().map(|t| t.id).collect::<Vec<_>>(), [a.id]);

    // Another live instance's test: its heartbeat says so, and a cancel
    // asked through the store reaches it there.
    let theirs = load_test("theirs", "http://127.0.0.1:3");
    store.insert_load_test(&theirs, "other").await.unwrap();
    assert!(
        store
            .heartbeat("other", &[theirs.id])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.request_cancel(theirs.id).await.unwrap());
    assert!(!store.request_cancel(b.id).await.unwrap(), "b is finished");
    assert_eq!(
        store.heartbeat("other", &[theirs.id]).await.unwrap(),
        [theirs.id]
    );
    // A heartbeat speaks only for the owner's own tests.
    assert!(
        store
            .heartbeat("me", &[theirs.id])
            .await
            .unwrap()
            .is_empty()
    );

    // After a restart, what this instance left queued or running is
    // interrupted; finished tests stay, and another live instance's too.
    let long_ago = perf_core::unix_millis() - 60_000;
    assert_eq!(
        store
            .interrupt_unfinished(Some("me"), long_ago)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.get_load_test(a.id).await.unwrap().unwrap().status,
        TestStatus::Interrupted
    );
    assert_eq!(
        store.get_load_test(b.id).await.unwrap().unwrap().status,
        TestStatus::Completed
    );
    assert_eq!(
        store
            .get_load_test(theirs.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TestStatus::Queued
    );
    // Once the other instance's heartbeat is older than the timeout, anyone's
    // sweep interrupts its tests.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.interrupt_unfinished(None, 60_000).await.unwrap(), 0);
    assert_eq!(store.interrupt_unfinished(None, 10).await.unwrap(), 1);
    assert_eq!(
        store
            .get_load_test(theirs.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        TestStatus::Interrupted
    );

    // Retention: keep the newest two finished tests, then none older than now.
    let pruned = store
        .prune(perf_server::store::Retained::LoadTests, 2, 0)
        .await
        .unwrap();
    assert_eq!(pruned, 2, "four finished tests, two kept");
    let left = store
        .list_load_tests(&TestFilter::default(), PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(left.items.len(), 2);
    let queued = load_test("waiting", "http://127.0.0.1:4");
    store.insert_load_test(&queued, "me").await.unwrap();
    store
        .prune(
            perf_server::store::Retained::LoadTests,
            1_000,
            perf_core::unix_millis() + 1,
        )
        .await
        .unwrap();
    let left = store
        .list_load_tests(&TestFilter::default(), PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        left.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        [queued.id],
        "an unfinished test is never pruned"
    );
}

async fn profile_deletion(store: &dyn Store) {
    let first = store.list_profiles(PageRequest::first(1)).await.unwrap();
    let id = first.items[0].id;
    assert!(store.delete_profile(id).await.unwrap());
    assert!(!store.delete_profile(id).await.unwrap());
    assert!(store.get_profile(id).await.unwrap().is_none());
    // Retention by count keeps the newest.
    store
        .prune(perf_server::store::Retained::Profiles, 0, 0)
        .await
        .unwrap();
    let left = store.list_profiles(PageRequest::first(10)).await.unwrap();
    assert!(left.items.is_empty());
}

async fn profiles(store: &dyn Store) {
    let make = |kind: &str, bytes: usize| ProfileData {
        record: ProfileRecord {
            id: Id::new(),
            kind: kind.to_owned(),
            started_at_ms: perf_core::unix_millis(),
            duration_ms: 1500,
            frequency_hz: (kind == "cpu").then_some(250),
            pprof_bytes: bytes as u64,
            flamegraph_svg_bytes: 5,
        },
        // Binary data with every byte value, NULs included.
        pprof: (0..bytes).map(|i| i.to_le_bytes()[0]).collect(),
        flamegraph_svg: b"<svg>".to_vec(),
    };
    let cpu = make("cpu", 70_000);
    let heap = make("heap", 300);
    store.insert_profile(&cpu).await.unwrap();
    store.insert_profile(&heap).await.unwrap();
    assert!(
        store.insert_profile(&cpu).await.is_err(),
        "the same id twice"
    );
    let page = store.list_profiles(PageRequest::first(1)).await.unwrap();
    assert_eq!(page.items, std::slice::from_ref(&heap.record));
    let rest = store
        .list_profiles(PageRequest {
            limit: 10,
            before: page.next_cursor,
        })
        .await
        .unwrap();
    assert_eq!(rest.items, std::slice::from_ref(&cpu.record));
    assert_eq!(rest.next_cursor, None);
    assert_eq!(store.get_profile(cpu.record.id).await.unwrap(), Some(cpu));
    assert_eq!(store.get_profile(Id::new()).await.unwrap(), None);
}

async fn scaling(store: &dyn Store) {
    assert_eq!(store.get_scaling_state("policy").await.unwrap(), None);
    store
        .put_scaling_state("policy", "{\"a\":1}")
        .await
        .unwrap();
    store
        .put_scaling_state("policy", "{\"a\":2}")
        .await
        .unwrap();
    assert_eq!(
        store.get_scaling_state("policy").await.unwrap().as_deref(),
        Some("{\"a\":2}")
    );
    let mut ids = Vec::new();
    for i in 0..3u32 {
        let record = ScalingEventRecord {
            id: Id::new(),
            event: perf_scaling::ScalingEvent {
                at_ms: perf_core::unix_millis(),
                kind: "auto".into(),
                from: i,
                to: i + 1,
                reason: format!("step {i}"),
                metrics: vec![perf_scaling::MetricOutcome {
                    name: "rps".into(),
                    observed: Some(150.0),
                    target: 100.0,
                    replicas: Some(i + 1),
                    error: None,
                }],
            },
        };
        store.insert_scaling_event(&record).await.unwrap();
        ids.push(record);
    }
    let page = store
        .list_scaling_events(PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(page.items, vec![ids[2].clone(), ids[1].clone()]);
    let rest = store
        .list_scaling_events(PageRequest {
            limit: 2,
            before: page.next_cursor,
        })
        .await
        .unwrap();
    assert_eq!(rest.items, vec![ids[0].clone()]);
}

#[tokio::test]
async fn sqlite_backend_conforms_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/perf.db");
    let store = SqliteStore::open(&path).await.unwrap();
    profiles(&store).await;
    profile_deletion(&store).await;
    scaling(&store).await;
    conformance(&store).await;
    drop(store);
    // Reopening applies no migration twice and keeps the data.
    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), 5);
    let page = again.list_snapshots(PageRequest::first(50)).await.unwrap();
    assert_eq!(page.items.len(), 6);
}

#[tokio::test]
async fn sqlite_refuses_a_schema_newer_than_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perf.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)", [])
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_names_the_row_and_column_of_a_damaged_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perf.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let test = load_test("damaged", "http://127.0.0.1:1");
    store.insert_load_test(&test, "me").await.unwrap();
    drop(store);
    // Writes `progress` behind the store's back, then reads the test.
    let read_with_progress = |progress: &'static str| {
        let path = path.clone();
        async move {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute("UPDATE load_tests SET progress = ?1", [progress])
                .unwrap();
            drop(conn);
            let store = SqliteStore::open(&path).await.unwrap();
            let err = store.get_load_test(test.id).await.unwrap_err().to_string();
            (store, err)
        }
    };
    // Valid JSON of the wrong shape, then text that is not JSON at all.
    let (store, err) = read_with_progress("[1, 2]").await;
    assert!(
        err.contains(&format!("load test {}", test.id)) && err.contains("unreadable progress"),
        "{err}"
    );
    drop(store);
    let (store, err) = read_with_progress("{not json").await;
    assert!(
        err.contains(&format!(
            "load test {}: column progress holds unreadable JSON",
            test.id
        )),
        "{err}"
    );
    // The listing leaves the report out but reads the rest: the same error,
    // not a panic or a silently missing row.
    let listing = store
        .list_load_tests(&TestFilter::default(), PageRequest::first(10))
        .await;
    assert!(listing.is_err());
    // A replica count no scaling event can have is named, not read as 0.
    let event = ScalingEventRecord {
        id: Id::new(),
        event: perf_scaling::ScalingEvent {
            at_ms: perf_core::unix_millis(),
            kind: "auto".into(),
            from: 1,
            to: 2,
            reason: "damaged".into(),
            metrics: Vec::new(),
        },
    };
    store.insert_scaling_event(&event).await.unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE scaling_events SET to_replicas = -1", [])
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    let err = store
        .list_scaling_events(PageRequest::first(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "scaling event {}: to_replicas -1 is not a replica count",
            event.id
        )),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_backend_conforms_and_survives_reopen() {
    let pg = testkit::PgCluster::start().unwrap();
    let url = pg.create_database("perf_store").unwrap();
    let store = PostgresStore::open(&url, 4).await.unwrap();
    profiles(&store).await;
    profile_deletion(&store).await;
    scaling(&store).await;
    conformance(&store).await;
    // Two instances opening at once both succeed: migrations are serialized.
    let (a, b) = tokio::join!(PostgresStore::open(&url, 2), PostgresStore::open(&url, 2));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.schema_version().await.unwrap(), 5);
    let page = b.list_snapshots(PageRequest::first(50)).await.unwrap();
    assert_eq!(page.items.len(), 6);
    assert_eq!(
        pg.psql("perf_store", "SELECT count(*) FROM schema_migrations")
            .unwrap(),
        "5"
    );

    pg.psql(
        "perf_store",
        "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')",
    )
    .unwrap();
    let err = PostgresStore::open(&url, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_unreachable_is_a_clear_error_not_a_hang() {
    let started = std::time::Instant::now();
    let err = PostgresStore::open("postgresql://postgres@127.0.0.1:1/none", 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("postgres"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
