//! Regression tests of the hardening issue: each reproducer that once
//! crashed perf-server, exhausted it, read its files or crossed a boundary,
//! through the real app (routes, middleware, store) in-process or the binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::web;
use perf_core::HumanDuration;
use perf_server::app::{AppState, app_with_routes};
use perf_server::config::ServerConfig;
use perf_server::store::{SqliteStore, Store, TestStatus};
use perf_server::test_runner::{RunnerSettings, TestRunner};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The app over a SQLite store in `dir`, with `config` and a route that panics.
async fn service(
    config: ServerConfig,
    store: Option<Arc<dyn Store>>,
    dir: &std::path::Path,
) -> (
    impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    web::Data<AppState>,
) {
    let config = ServerConfig {
        data_dir: dir.to_owned(),
        sample_interval: HumanDuration(Duration::from_millis(200)),
        sample_history: HumanDuration(Duration::from_secs(60)),
        ..config
    };
    let store: Arc<dyn Store> = match store {
        Some(s) => s,
        None => Arc::new(SqliteStore::open(&config.sqlite_path()).await.unwrap()),
    };
    let state = common::state::app_state(&config, store, config.runner_settings().unwrap());
    let svc = test::init_service(app_with_routes(state.clone(), Arc::new(config), |cfg| {
        cfg.route(
            "/test/panic",
            web::get().to(|| async {
                let v: Vec<u8> = Vec::new();
                #[allow(clippy::indexing_slicing)]
                let x = v[3];
                actix_web::HttpResponse::Ok().body(x.to_string())
            }),
        );
    }))
    .await;
    (svc, state)
}

async fn call(
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    req: TestRequest,
) -> (StatusCode, actix_web::http::header::HeaderMap, Value) {
    match test::try_call_service(svc, req.to_request()).await {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = test::read_body(resp).await;
            let value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
            (status, headers, value)
        }
        Err(e) => {
            let resp = e.error_response();
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = actix_web::body::to_bytes(resp.into_body())
                .await
                .unwrap_or_default();
            (
                status,
                headers,
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
    }
}

fn post(path: &str, body: &str) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_owned())
}

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

async fn wait_finished(state: &AppState, id: &str) -> perf_server::store::LoadTestRecord {
    let id = id.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = state.tests.get(id).await.unwrap().unwrap();
        if r.status.is_finished() || Instant::now() > deadline {
            return std::sync::Arc::unwrap_or_clone(r);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Defects 1, 2, 5 and 11: bodies that once aborted the process, took it to
/// an OOM kill, smuggled a request, or passed where they should not.
#[actix_web::test]
async fn hostile_scenarios_are_refused_naming_the_field_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _state) = service(ServerConfig::default(), None, dir.path()).await;
    let many: Vec<Value> = (0..3000)
        .map(|i| json!({"path": format!("/r{i}")}))
        .collect();
    let cases: Vec<(String, &str)> = vec![
        (r#"{"target": "http://127.0.0.1:9", "duration": "2s", "rate": "1e-30/s"}"#.into(), "rate"),
        (r#"{"target": "http://127.0.0.1:9", "duration": "2s", "rate": 5e-324}"#.into(), "rate"),
        (r#"{"target": "http://127.0.0.1:9", "stages": [{"duration": "2s", "rate": "1e-30/s"}]}"#.into(), "stages[0].rate"),
        (json!({"target": "http://127.0.0.1:9", "duration": "2s", "users": 2, "requests": many}).to_string(), "requests"),
        (r#"{"target": "http://127.0.0.1:9/x HTTP/1.1\r\nHost: injected\r\n\r\nDELETE /admin/everything HTTP/1.1\r\nX-Pad:", "duration": "2s", "users": 1}"#.into(), "target[0]"),
        (r#"{"target": "http://127.0.0.1:0", "duration": "2s", "users": 1}"#.into(), "target[0]"),
        (r#"{"target": "http://127.0.0.1:9", "duration": "2s", "users": 1, "requests": [{"path": "/${zz}"}]}"#.into(), "requests[0]"),
        (r#"{"target": "http://127.0.0.1:9", "duration": "2s", "users": 1, "name": "a\u0000b"}"#.into(), "name"),
        (r#"{"target": "http://127.0.0.1:9", "duration": "2s", "users": 1, "users": 500}"#.into(), "users"),
    ];
    for (body, want) in &cases {
        let (status, _, v) = call(&svc, post("/performance/tests", body)).await;
        assert_eq!(status, 422, "{want}: {v}");
        assert!(field(&v).starts_with(want), "{want}: {v}");
    }
    // Trailing garbage is malformed JSON.
    let (status, _, v) = call(
        &svc,
        post(
            "/performance/tests",
            r#"{"target": "http://127.0.0.1:9", "users": 1, "duration": "1s"} {"#,
        ),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // A test that would need more memory than the server allows per test.
    // (Still up: every case above was answered.)
    let (status, _, _) = call(&svc, TestRequest::get().uri("/health")).await;
    assert_eq!(status, 200);
}

/// Defect 3: `data.file` read any file the server could open and put its
/// first line in an error any client could read.
#[actix_web::test]
async fn feeder_data_comes_from_the_request_or_the_feeds_directory_only() {
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, "root:SECRET-HASH:19000:0:99999:7:::\nx\n").unwrap();
    let feeds = tempfile::tempdir().unwrap();
    std::fs::write(feeds.path().join("ids.csv"), "id\n1\n2\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (svc, state) = service(
        ServerConfig {
            feeds_dir: Some(feeds.path().to_owned()),
            ..ServerConfig::default()
        },
        None,
        dir.path(),
    )
    .await;
    for file in [
        secret.to_string_lossy().into_owned(),
        "/etc/shadow".to_owned(),
        "/dev/zero".to_owned(),
        "../ids.csv".to_owned(),
        "/no/such/file".to_owned(),
    ] {
        let body = json!({"target": target.url(), "duration": "1s", "users": 1,
            "data": {"file": file}, "requests": [{"path": "/${zz}"}]});
        let (status, _, v) = call(&svc, post("/performance/tests", &body.to_string())).await;
        assert_eq!(status, 422, "{file}: {v}");
        assert_eq!(field(&v), "data.file", "{file}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains("SECRET") && !text.contains("root:"),
            "{text}"
        );
    }
    // Inline CSV and a file of the feeds directory both run.
    for data in [json!({"csv": "id\n1\n2\n"}), json!({"file": "ids.csv"})] {
        let body = json!({"target": target.url(), "duration": "1s", "users": 2,
            "data": data, "requests": [{"path": "/items/${id}"}]});
        let (status, _, v) = call(&svc, post("/performance/tests", &body.to_string())).await;
        assert_eq!(status, 202, "{v}");
        let done = wait_finished(&state, v["id"].as_str().unwrap()).await;
        assert_eq!(done.status, TestStatus::Completed, "{:?}", done.error);
        assert!(done.report.unwrap().requests > 0);
    }
    // An unknown column is refused at submission, not found at run time.
    let body = json!({"target": target.url(), "duration": "1s", "users": 1,
        "data": {"csv": "id\n1\n"}, "requests": [{"path": "/${zz}"}]});
    let (status, _, v) = call(&svc, post("/performance/tests", &body.to_string())).await;
    assert_eq!((status.as_u16(), field(&v)), (422, "requests[0]"), "{v}");
}

/// Defect 4: a browser page could POST `text/plain;charset=+json` without a
/// preflight; DNS rebinding could reach a loopback server by name.
#[actix_web::test]
async fn cross_site_requests_and_foreign_host_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _state) = service(
        ServerConfig {
            allowed_origins: vec!["https://console.example.com".into()],
            ..ServerConfig::default()
        },
        None,
        dir.path(),
    )
    .await;
    let snapshot = r#"{"label": "x"}"#;
    let (status, _, v) = call(
        &svc,
        TestRequest::post()
            .uri("/performance/metrics/snapshots")
            .insert_header(("content-type", "text/plain;charset=+json"))
            .set_payload(snapshot),
    )
    .await;
    assert_eq!(status, 415, "{v}");
    let (status, _, v) = call(
        &svc,
        post("/performance/metrics/snapshots", snapshot)
            .insert_header(("origin", "https://evil.example")),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_origins"),
        "{v}"
    );
    for origin in ["https://console.example.com", "http://127.0.0.1:8080"] {
        let (status, _, v) = call(
            &svc,
            post("/performance/metrics/snapshots", snapshot)
                .insert_header(("origin", origin))
                .insert_header(("host", "127.0.0.1:8080")),
        )
        .await;
        assert_eq!(status, 201, "{origin}: {v}");
    }
    let (status, _, v) = call(
        &svc,
        TestRequest::get()
            .uri("/health")
            .insert_header(("host", "rebind.attacker.example:8080")),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    let (status, _, v) = call(
        &svc,
        TestRequest::get().uri("/health").insert_header((
            "host",
            actix_web::http::header::HeaderValue::from_bytes(b"a\x80").unwrap(),
        )),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
        let (status, _, _) = call(
            &svc,
            TestRequest::get()
                .uri("/health")
                .insert_header(("host", host)),
        )
        .await;
        assert_eq!(status, 200, "{host}");
    }
}

/// Defect 11 (the HTTP part): HEAD, OPTIONS, a wrong method, `bearer`.
#[actix_web::test]
async fn head_options_wrong_methods_and_the_bearer_scheme_follow_http() {
    let dir = tempfile::tempdir().unwrap();
    let token = "hardening-token-0123456789";
    let (svc, _state) = service(
        ServerConfig {
            api_token: Some(token.into()),
            ..ServerConfig::default()
        },
        None,
        dir.path(),
    )
    .await;
    let resp = test::call_service(
        &svc,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri("/health")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (status, headers, _) = call(
        &svc,
        TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/performance/tests"),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(headers.get("allow").unwrap(), "GET, HEAD, POST, OPTIONS");
    let (status, headers, v) = call(
        &svc,
        TestRequest::delete()
            .uri("/health")
            .insert_header(("authorization", format!("Bearer {token}"))),
    )
    .await;
    assert_eq!(status, 405, "{v}");
    assert_eq!(headers.get("allow").unwrap(), "GET, HEAD, OPTIONS");
    let (status, _, v) = call(
        &svc,
        post("/performance/metrics/snapshots", r#"{"label": "x"}"#)
            .insert_header(("authorization", format!("bearer {token}"))),
    )
    .await;
    assert_eq!(status, 201, "{v}");
}

/// Defect 13: a panic in a handler costs its request, not the process.
#[actix_web::test]
async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _state) = service(ServerConfig::default(), None, dir.path()).await;
    let (status, _, v) = call(&svc, TestRequest::get().uri("/test/panic")).await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["error"]["code"], "internal", "{v}");
    let (status, _, _) = call(&svc, TestRequest::get().uri("/health")).await;
    assert_eq!(status, 200);
}

/// Defects 9 and 10: an unbounded queue, and a worker token sent wherever a
/// request said.
#[actix_web::test]
async fn the_queue_is_bounded_and_the_worker_token_goes_only_to_configured_workers() {
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (svc, state) = service(
        ServerConfig {
            max_concurrent_tests: 1,
            max_queued_tests: 1,
            ..ServerConfig::default()
        },
        None,
        dir.path(),
    )
    .await;
    let body =
        json!({"target": target.url(), "duration": "20s", "users": 1, "think_time": "100ms"})
            .to_string();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, _, v) = call(&svc, post("/performance/tests", &body)).await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let (status, headers, v) = call(&svc, post("/performance/tests", &body)).await;
    assert_eq!(status, 429, "{v}");
    assert!(headers.get("retry-after").is_some());
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_queued_tests"),
        "{v}"
    );
    for id in &ids {
        let (status, _, _) = call(
            &svc,
            TestRequest::delete().uri(&format!("/performance/tests/{id}")),
        )
        .await;
        assert_eq!(status, 200);
    }
    // A worker address from the request: refused, and nothing connects there.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let body = json!({"target": target.url(), "duration": "1s", "users": 1,
        "workers": [format!("http://{}", trap.local_addr().unwrap())]});
    let (status, _, v) = call(&svc, post("/performance/tests", &body.to_string())).await;
    assert_eq!((status.as_u16(), field(&v)), (422, "workers"), "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        trap.accept().is_err(),
        "a connection reached the unconfigured worker"
    );
    drop(state);
}

/// Defects 6 and 7 on a real PostgreSQL: one instance's start-up no longer
/// interrupts another's running test, a cancel through the other instance
/// reaches it, and the end of a test survives the store being down.
#[actix_web::test]
async fn a_shared_store_keeps_each_instances_tests_and_an_outage_loses_no_end() {
    let pg = testkit::PgCluster::start().unwrap();
    let url = pg.create_database("shared").unwrap();
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let store_a: Arc<dyn Store> = Arc::new(
        perf_server::store::PostgresStore::open(&url, 4)
            .await
            .unwrap(),
    );
    let store_b: Arc<dyn Store> = Arc::new(
        perf_server::store::PostgresStore::open(&url, 4)
            .await
            .unwrap(),
    );
    let runner = |store: &Arc<dyn Store>, owner: &str| {
        TestRunner::new(
            Arc::clone(store),
            tokio::runtime::Handle::current(),
            RunnerSettings {
                owner: owner.to_owned(),
                ..RunnerSettings::default()
            },
        )
    };
    let a = runner(&store_a, "instance-a");
    let scenario: perf_loadgen::Scenario = serde_json::from_value(json!({
        "target": target.url(), "duration": "30s", "users": 1, "think_time": "50ms"}))
    .unwrap();
    let running = a
        .submit(
            "long".into(),
            scenario,
            perf_server::test_runner::Placement::Here,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Instance B starts on the same store: A's test is not its to interrupt.
    let b = runner(&store_b, "instance-b");
    assert_eq!(b.interrupt_abandoned().await.unwrap(), 0);
    let seen = b.get(running.id).await.unwrap().unwrap();
    assert_eq!(seen.status, TestStatus::Running);
    // A cancel through B reaches A through the store.
    let cancelled = b.cancel(running.id).await.unwrap();
    assert_eq!(cancelled.status, TestStatus::Cancelled);
    assert!(cancelled.report.is_some(), "what was measured is kept");

    // The store goes down across the end of a test.
    let short: perf_loadgen::Scenario = serde_json::from_value(json!({
        "target": target.url(), "duration": "2s", "users": 1, "think_time": "50ms"}))
    .unwrap();
    let record = a
        .submit(
            "short".into(),
            short,
            perf_server::test_runner::Placement::Here,
        )
        .await
        .unwrap();
    pg.pause().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pending = a.get(record.id).await.unwrap().unwrap();
    assert_eq!(pending.status, TestStatus::Completed);
    assert!(a.save_pending(record.id), "the end waits for the store");
    pg.resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    while a.save_pending(record.id) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!a.save_pending(record.id));
    let stored = store_b.get_load_test(record.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TestStatus::Completed);
    assert!(stored.report.unwrap().requests > 0);
}

/// Defect 8: bodies that never finish, and more connections than files.
#[test]
fn slow_bodies_time_out_and_connections_stay_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("perf.yaml");
    std::fs::write(
        &config,
        "body_timeout: 1s\nmax_connections: 64\nworkers: 1\n",
    )
    .unwrap();
    let server = common::ServerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST /performance/metrics/snapshots HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"la").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // 300 idle connections against a cap of 64: the process holds no file
    // for those beyond it, and answers again once the idle ones time out.
    let idle: Vec<_> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(server.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .unwrap()
        .count();
    assert!(fds < 64 + 64, "{fds} open files");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = testkit::http::get(server.addr, "/health") {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer after the idle connections closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Defect 12: first-hour crashes of the binary.
#[test]
fn a_busy_port_and_a_closed_pipe_are_plain_errors_not_panics() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("address {addr} is already in use")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // `perf-server openapi | head -c 10`: the reader goes away early.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?} {stderr}", out.status);
}

/// A cancel through another instance reaches a test still waiting in the
/// owner's queue (it would otherwise start later and send load).
#[actix_web::test]
async fn a_queued_test_is_cancelled_through_the_store_by_another_instance() {
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("perf.db"))
            .await
            .unwrap(),
    );
    let runner = |owner: &str| {
        TestRunner::new(
            Arc::clone(&store),
            tokio::runtime::Handle::current(),
            RunnerSettings {
                owner: owner.to_owned(),
                max_concurrent: 1,
                ..RunnerSettings::default()
            },
        )
    };
    let (a, b) = (runner("a"), runner("b"));
    let scenario: perf_loadgen::Scenario = serde_json::from_value(json!({
        "target": target.url(), "duration": "20s", "users": 1, "think_time": "50ms"}))
    .unwrap();
    let running = a
        .submit(
            "one".into(),
            scenario.clone(),
            perf_server::test_runner::Placement::Here,
        )
        .await
        .unwrap();
    let queued = a
        .submit(
            "two".into(),
            scenario,
            perf_server::test_runner::Placement::Here,
        )
        .await
        .unwrap();
    assert_eq!(queued.status, TestStatus::Queued);
    let cancelled = b.cancel(queued.id).await.unwrap();
    assert_eq!(cancelled.status, TestStatus::Cancelled);
    a.cancel(running.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = store.get_load_test(queued.id).await.unwrap().unwrap();
    assert_eq!(after.status, TestStatus::Cancelled, "it never started");
    assert!(after.started_at_ms.is_none());
}

/// `perf-server run` against nothing: exit 2 with the reason, never PASSED;
/// Ctrl-C and SIGTERM: the reports are written with `interrupted: true`
/// and the exit code is 3.
#[test]
fn the_run_command_tells_a_dead_target_and_an_interruption_apart_from_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let dead_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = dir.path().join("dead.yaml");
    std::fs::write(
        &dead,
        format!("load_tests:\n  dead: {{target: 'http://127.0.0.1:{dead_port}', duration: 2s, users: 4}}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .arg("run")
        .arg(&dead)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("target unreachable: connect:"), "{stderr}");
    assert!(!stdout.contains("PASSED"), "{stdout}");
    assert!(stdout.contains("NOTHING TO JUDGE"), "{stdout}");

    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let long = dir.path().join("long.yaml");
    std::fs::write(
        &long,
        format!(
            "load_tests:\n  long: {{target: '{}', duration: 60s, users: 2, think_time: 20ms}}\n",
            target.url()
        ),
    )
    .unwrap();
    for signal in ["TERM", "INT"] {
        let report = dir.path().join(format!("{signal}.json"));
        let html = dir.path().join(format!("{signal}.html"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_perf-server"))
            .arg("run")
            .arg(&long)
            .arg("--out")
            .arg(&report)
            .arg("--html")
            .arg(&html)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        let out = child.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            out.status.code(),
            Some(3),
            "{signal}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(written["interrupted"], true, "{signal}");
        assert!(written["requests"].as_u64().unwrap() > 0);
        assert!(
            std::fs::read_to_string(&html)
                .unwrap()
                .contains("Interrupted")
        );
    }
}
