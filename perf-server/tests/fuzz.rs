//! Bounded fuzzing of every API body through the in-process app (real
//! routes, middleware and SQLite store). Invariants: no 500 and no panic,
//! every error is the JSON error shape, a 422 names its field, memory stays
//! bounded. `scripts/fuzz.sh DURATION` runs it longer.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use perf_core::HumanDuration;
use perf_server::app::app;
use perf_server::config::ServerConfig;
use perf_server::store::SqliteStore;
use serde_json::{Value, json};
use testkit::fuzz::{Budget, interesting, mutate_json, mutate_text, rss_bytes};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::test]
async fn fuzz_every_api_body_through_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        sample_interval: HumanDuration(Duration::from_millis(500)),
        sample_history: HumanDuration(Duration::from_secs(60)),
        max_queued_tests: 4,
        ..ServerConfig::default()
    };
    let store: Arc<dyn perf_server::store::Store> =
        Arc::new(SqliteStore::open(&config.sqlite_path()).await.unwrap());
    let settings = perf_server::test_runner::RunnerSettings {
        limits: config.test_limits,
        policy: config.target_policy().unwrap(),
        max_concurrent: 1,
        ..Default::default()
    };
    let state = common::state::app_state(&config, store, settings);
    let svc = test::init_service(app(state.clone(), Arc::new(config))).await;
    let target = "http://127.0.0.1:9";
    let bodies: Vec<(&str, &str, Value)> = vec![
        (
            "POST",
            "/performance/tests",
            json!({"target": target, "duration": "1s", "users": 2}),
        ),
        (
            "POST",
            "/performance/tests",
            json!({"preset": "baseline", "target": target, "duration": "1s", "users": 1}),
        ),
        (
            "POST",
            "/performance/tests",
            json!({"target": target, "stages": [{"duration": "1s", "rate": "10/s"}],
            "requests": [{"path": "/${id}", "headers": {"X-A": "b"}}], "data": {"csv": "id\n1\n"},
            "thresholds": ["p95 < 1s"], "name": "n"}),
        ),
        (
            "POST",
            "/performance/tests",
            json!({"target": target, "duration": "1s", "users": 1, "shards": 2}),
        ),
        (
            "POST",
            "/performance/metrics/snapshots",
            json!({"label": "before", "note": "n"}),
        ),
        (
            "POST",
            "/performance/profiling/stop",
            json!({"id": "0190f0c2-0000-7000-8000-000000000000"}),
        ),
        (
            "PUT",
            "/performance/scaling/config",
            json!({"min_replicas": 1, "max_replicas": 5, "metrics": []}),
        ),
        (
            "POST",
            "/performance/scaling/manual",
            json!({"replicas": 3, "force": false}),
        ),
    ];
    let rss_before = rss_bytes();
    let mut budget = Budget::from_env("api-bodies", 8.0);
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    while let Some(mut rng) = budget.next_input() {
        let seed = budget.seed();
        let (method, path, base) = &bodies[rng.usize(..bodies.len())];
        let payload = match rng.u8(..6) {
            0 => mutate_text(&base.to_string(), &mut rng, 3),
            1 => interesting(&mut rng).to_string(),
            _ => mutate_json(base, &mut rng, 3).to_string(),
        };
        let content_type = match rng.u8(..12) {
            0 => "text/plain;charset=+json",
            1 => "application/merge-patch+json",
            _ => "application/json",
        };
        let request = TestRequest::default()
            .method(method.parse().unwrap())
            .uri(path)
            .insert_header(("content-type", content_type))
            .set_payload(payload.clone());
        let resp = test::call_service(&svc, request.to_request()).await;
        let status = resp.status().as_u16();
        let body = test::read_body(resp).await;
        *statuses.entry(status).or_default() += 1;
        assert!(
            status != 500,
            "seed {seed}: {method} {path} {payload:?} answered 500: {body:?}"
        );
        if status >= 400 {
            let v: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("seed {seed}: error body is not JSON: {body:?}"));
            assert!(v["error"]["code"].is_string(), "seed {seed}: {v}");
            assert!(v["error"]["message"].is_string(), "seed {seed}: {v}");
            if status == 422 {
                assert!(
                    v["error"]["field"].is_string(),
                    "seed {seed}: a 422 names its field: {v}"
                );
            }
        }
        if status == 202 {
            // Accepted tests are cancelled at once: the fuzzer is not a load test.
            let v: Value = serde_json::from_slice(&body).unwrap();
            let id = v["id"].as_str().unwrap();
            let cancel = TestRequest::delete().uri(&format!("/performance/tests/{id}"));
            let _ = test::call_service(&svc, cancel.to_request()).await;
        }
    }
    budget.report();
    eprintln!("  answers by status: {statuses:?}");
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(grown < 512 << 20, "RSS grew {grown} bytes");
}
