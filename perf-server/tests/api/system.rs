//! The database, memory and profiling endpoints.

use super::*;

#[actix_web::test]
async fn database_metrics_say_plainly_when_unconfigured_and_report_a_real_database() {
    let (app, _dir) = service(None).await;
    let resp = test::call_service(
        &app,
        TestRequest::get()
            .uri("/performance/metrics/database")
            .to_request(),
    )
    .await;
    let (status, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["configured"], false);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("--analyze-database-url"),
        "{body}"
    );

    let pg = testkit::PgCluster::start().unwrap();
    let url = pg.create_database("observed").unwrap();
    pg.psql(
        "observed",
        "CREATE EXTENSION pg_stat_statements;
         CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 20000) g;
         SELECT count(*) FROM t WHERE id > 10;",
    )
    .unwrap();
    let (app, _dir, _) = service_from(Setup {
        database: Some(url),
        ..Setup::default()
    })
    .await;
    let get = || {
        TestRequest::get()
            .uri("/performance/metrics/database")
            .to_request()
    };
    let (status, body) = call_json(&app, get()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["configured"], true);
    assert_eq!(body["errors"], json!([]), "{body}");
    assert!(
        body["database"].as_str().unwrap().ends_with("/observed"),
        "{body}"
    );
    assert!(!body["database"].as_str().unwrap().contains("password"));
    assert_eq!(body["activity"]["database"], "observed");
    assert!(
        body["activity"]["connections_by_state"]["active"]
            .as_i64()
            .unwrap()
            >= 1
    );
    let ratio = body["activity"]["buffer_cache_hit_ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{body}");
    assert_eq!(body["pool"]["checkouts"], 1);
    assert!(body["query_latency_ms"]["p95"].as_f64().unwrap() >= 0.0);
    // One latency summary everywhere: the pool's hold times are the query latency.
    assert_eq!(body["query_latency_ms"], body["pool"]["held_ms"], "{body}");
    for key in ["p50", "p90", "p95", "p99", "p999", "max", "mean"] {
        assert!(body["pool"]["wait_ms"][key].is_number(), "{key}: {body}");
    }
    let slow = body["slow_queries"].as_array().unwrap();
    assert!(
        slow.iter()
            .any(|q| q["query"].as_str().unwrap().contains("FROM t WHERE id >")),
        "{body}"
    );
    // The second read of the slow statements comes from the query cache.
    let (_, body) = call_json(&app, get()).await;
    assert_eq!(body["query_cache"]["hits"], 1, "{body}");
    assert_eq!(body["query_cache_hit_ratio"], 0.5, "{body}");
    assert_eq!(body["pool"]["checkouts"], 2);

    // A database that is down: the answer says what failed, and the pool counts it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (app, _dir, _) = service_from(Setup {
        database: Some(format!("postgresql://nobody@127.0.0.1:{port}/none")),
        ..Setup::default()
    })
    .await;
    let (status, body) = call_json(&app, get()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["errors"][0].as_str().unwrap().starts_with("connect:"),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("could not be read")
    );
    assert_eq!(body["pool"]["errors"], 1, "{body}");
}

#[actix_web::test]
async fn memory_shows_budget_and_leak_verdict_and_the_hard_mark_refuses_new_work() {
    let (app, _dir) = service(Some(TOKEN)).await;
    let get = |uri: &str| TestRequest::get().uri(uri).to_request();
    let (status, body) = call_json(&app, get("/performance/metrics/memory")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["budget"]["budget"]["limit"], 512u64 << 20, "{body}");
    assert_eq!(body["budget"]["pressure"], "normal", "{body}");
    assert_eq!(body["leak"]["status"], "warming_up", "{body}");
    assert!(body["process_rss_bytes"].as_u64().unwrap() > 0);
    // A series has no verdict per sample.
    let (_, series) = call_json(&app, get("/performance/metrics/memory?window=1s")).await;
    assert!(series["samples"][0].get("leak").is_none(), "{series}");

    // A budget this process is already over: new work is refused, probes answer.
    let tiny = perf_memory::MemoryBudget::builder()
        .limit(perf_core::ByteSize(16 << 20))
        .build()
        .unwrap();
    let (app, _dir, _) = service_from(Setup {
        token: Some(TOKEN),
        memory_budget: tiny,
        ..Setup::default()
    })
    .await;
    let (_, body) = call_json(&app, get("/performance/metrics/memory")).await;
    assert_eq!(body["budget"]["pressure"], "hard", "{body}");
    let resp = test::call_service(
        &app,
        TestRequest::post()
            .uri("/performance/metrics/snapshots")
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .set_json(json!({"label": "refused"}))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "5");
    let (_, body) = json_of(resp).await;
    assert_error(&body, "unavailable", None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hard mark"),
        "{body}"
    );
    for probe in [
        "/health",
        "/ready",
        "/metrics",
        "/performance/metrics/memory",
    ] {
        let resp = test::call_service(&app, get(probe)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{probe}");
    }
    let (_, body) = call_json(&app, get("/performance/metrics/memory")).await;
    assert!(body["budget"]["refused"].as_u64().unwrap() >= 1, "{body}");
    assert!(body["budget"]["reliefs"].as_u64().unwrap() >= 1, "{body}");
}

#[actix_web::test]
async fn profiles_run_one_at_a_time_and_are_kept() {
    let (app, _dir) = service(None).await;
    let get = |uri: &str| TestRequest::get().uri(uri).to_request();
    let (status, body) = call_json(
        &app,
        post_json(
            "/performance/profiling/start",
            json!({"kind": "cpu", "frequency_hz": 5000}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&body, "invalid_field", Some("frequency_hz"));
    let (status, body) = call_json(
        &app,
        post_json("/performance/profiling/start", json!({"kind": "gpu"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "kind");

    let (status, session) = call_json(
        &app,
        post_json(
            "/performance/profiling/start",
            json!({"kind": "cpu", "frequency_hz": 200}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let (status, body) = call_json(
        &app,
        post_json("/performance/profiling/start", json!({"kind": "heap"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "never two at once: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(&id));
    let (_, listing) = call_json(&app, get("/performance/profiling")).await;
    assert_eq!(listing["running"]["id"], id.as_str());
    // Something to sample.
    let until = Instant::now() + Duration::from_millis(600);
    let mut x = 0u64;
    while Instant::now() < until {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    let (status, record) = call_json(
        &app,
        post_json("/performance/profiling/stop", json!({"id": id})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["kind"], "cpu");
    assert!(record["pprof_bytes"].as_u64().unwrap() > 0);
    let (status, _) = call_json(
        &app,
        post_json("/performance/profiling/stop", json!({"id": id})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "already finished");
    let (status, _) = call_json(
        &app,
        post_json(
            "/performance/profiling/stop",
            json!({"id": perf_core::Id::new().to_string()}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let resp = test::call_service(
        &app,
        get(&format!("/performance/profiling/{id}?format=svg")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get("content-type").unwrap(), "image/svg+xml");
    let svg = test::read_body(resp).await;
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));
    let resp = test::call_service(
        &app,
        get(&format!("/performance/profiling/{id}?format=pprof")),
    )
    .await;
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/octet-stream"
    );
    assert_eq!(
        test::read_body(resp).await.len() as u64,
        record["pprof_bytes"].as_u64().unwrap()
    );
    let (status, body) = call_json(
        &app,
        get(&format!("/performance/profiling/{id}?format=xml")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request", Some("format"));

    // jemalloc in this test binary was not started with prof:true.
    let (status, body) = call_json(
        &app,
        post_json("/performance/profiling/start", json!({"kind": "heap"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prof:true")
    );

    // With a duration it stops and is kept by itself.
    let (status, timed) = call_json(
        &app,
        post_json(
            "/performance/profiling/start",
            json!({"kind": "cpu", "duration_s": 1}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, listing) = call_json(&app, get("/performance/profiling")).await;
        if listing["running"].is_null() && listing["profiles"]["items"][0]["id"] == timed["id"] {
            assert_eq!(listing["profiles"]["items"].as_array().unwrap().len(), 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed profile was not kept: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
