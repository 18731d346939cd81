//! The HTTP API in-process: real routes, middleware, store (SQLite in a temp
//! dir) and host sampler.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod load_tests;
mod recommendations;
mod service;
mod system;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::web;
use perf_core::HumanDuration;
use perf_server::app::{AppState, app};
use perf_server::config::ServerConfig;
use perf_server::store::SqliteStore;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

/// As in the binary, so allocator figures and the leak detector see this
/// process's allocations.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

async fn service(
    token: Option<&str>,
) -> (
    impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    tempfile::TempDir,
) {
    let (app, dir, _) = service_from(Setup {
        token,
        ..Setup::default()
    })
    .await;
    (app, dir)
}

/// What a test service is built from.
#[derive(Default)]
struct Setup<'a> {
    token: Option<&'a str>,
    /// The analyzed database.
    database: Option<String>,
    memory_budget: perf_memory::MemoryBudget,
    /// A PostgreSQL store with this pool size instead of SQLite.
    postgres_store: Option<(String, usize)>,
    leak_detection: Option<perf_memory::LeakDetectorConfig>,
}

/// The application built from `setup`, and its state.
async fn service_from(
    setup: Setup<'_>,
) -> (
    impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    tempfile::TempDir,
    web::Data<AppState>,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        api_token: setup.token.map(str::to_owned),
        analyze_database_url: setup.database,
        sample_interval: HumanDuration(Duration::from_millis(100)),
        sample_history: HumanDuration(Duration::from_secs(60)),
        memory_budget: setup.memory_budget,
        leak_detection: setup.leak_detection.unwrap_or_default(),
        ..ServerConfig::default()
    };
    let store: Arc<dyn perf_server::store::Store> = match setup.postgres_store {
        Some((url, size)) => Arc::new(
            perf_server::store::PostgresStore::open(&url, size)
                .await
                .unwrap(),
        ),
        None => Arc::new(SqliteStore::open(&config.sqlite_path()).await.unwrap()),
    };
    let settings = perf_server::test_runner::RunnerSettings {
        max_concurrent: 1,
        ..Default::default()
    };
    let state = common::state::app_state(&config, store, settings);
    (
        test::init_service(app(state.clone(), Arc::new(config))).await,
        dir,
        state,
    )
}

async fn json_of(
    resp: actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
) -> (StatusCode, Value) {
    let status = resp.status();
    let body = test::read_body(resp).await;
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

/// The app's answer to `request`: its status and JSON body (a body that is
/// not JSON comes back as a JSON string).
async fn call_json(
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    request: actix_http::Request,
) -> (StatusCode, Value) {
    json_of(test::call_service(svc, request).await).await
}

/// `GET uri`, as [`call_json`] answers it.
async fn get_json(
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    uri: &str,
) -> (StatusCode, Value) {
    call_json(svc, TestRequest::get().uri(uri).to_request()).await
}

/// `POST uri` with `body` as JSON.
fn post_json(uri: &str, body: impl serde::Serialize) -> actix_http::Request {
    TestRequest::post().uri(uri).set_json(body).to_request()
}

/// An answer's header `name`, which must be there.
fn header<B>(resp: &actix_web::dev::ServiceResponse<B>, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// A refusal with status `wanted` that names `field` and has a message,
/// which says `words` when they are given.
fn assert_refused(status: StatusCode, body: &Value, wanted: u16, field: &str, words: Option<&str>) {
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (wanted, Some(field)),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && words.is_none_or(|w| m.contains(w))),
        "{body}"
    );
}

fn assert_error(body: &Value, code: &str, field: Option<&str>) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(f) => assert_eq!(body["error"]["field"], f, "{body}"),
        None => assert!(body["error"].get("field").is_none(), "{body}"),
    }
}

async fn wait_for_status(
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    location: &str,
    wanted: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get_json(svc, location).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == wanted || Instant::now() > deadline {
            assert_eq!(body["status"], wanted, "{body}");
            return body;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}
