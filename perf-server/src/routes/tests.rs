use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, post, web};
use perf_core::Id;
use perf_loadgen::{Preset, Scenario, preset};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::body::JsonBody;
use crate::store::{LoadTestRecord, Page, TestFilter, TestStatus};
use crate::test_runner::{AdmissionError, CancelError, Placement};

/// What `GET /performance/tests/{id}` shows: the test without its full report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TestView {
    id: Id,
    scenario_name: String,
    targets: Vec<String>,
    status: TestStatus,
    created_at_ms: u64,
    started_at_ms: Option<u64>,
    finished_at_ms: Option<u64>,
    /// Newest live figures: elapsed_s, users, target_rate, rps, p95_ms, errors, in_flight, dropped.
    progress: Option<perf_loadgen::LiveSnapshot>,
    /// Whether every threshold held (once there is a report).
    passed: Option<bool>,
    error: Option<String>,
    /// Where the report is.
    results: String,
    /// `true` while the end of the test waits to be written to the store
    /// (the store was unavailable; the save is retried with backoff).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    save_pending: bool,
}

impl From<&LoadTestRecord> for TestView {
    fn from(r: &LoadTestRecord) -> Self {
        Self {
            results: format!("/performance/tests/{}/results", r.id),
            passed: r.report.as_ref().map(|rep| rep.passed),
            id: r.id,
            scenario_name: r.scenario_name.clone(),
            targets: r.targets.clone(),
            status: r.status,
            created_at_ms: r.created_at_ms,
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            progress: r.progress.clone(),
            error: r.error.clone(),
            save_pending: false,
        }
    }
}

impl From<LoadTestRecord> for TestView {
    fn from(r: LoadTestRecord) -> Self {
        Self::from(&r)
    }
}

/// The body of `POST /performance/tests`: a scenario's keys (the YAML
/// schema as JSON, parsed by [`Scenario`] itself), or a `preset` whose keys
/// the given ones override, plus where it runs. Its schema is the one the
/// OpenAPI document publishes; [`scenario_of`] reads the body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "checkout", "target": "http://127.0.0.1:8080", "duration": "30s", "users": 20,
    "requests": [{"method": "GET", "path": "/health"}], "thresholds": ["p95 < 50ms", "error_rate < 0.1%"]}))]
#[allow(dead_code)] // read field by field by `scenario_of`; this type is its published shape
pub(crate) struct StartTest {
    /// The scenario (with `preset`: the keys that override the preset's).
    /// `target` is required here (a preset has none).
    #[serde(flatten)]
    scenario: Scenario,
    /// The test's name in history and reports, 1 to 100 characters, not
    /// only spaces (default: the scenario's or preset's).
    #[schema(nullable = false, min_length = 1, max_length = 100)]
    name: Option<String>,
    /// Start from this preset (baseline, stress, spike, endurance, volume).
    #[schema(nullable = false)]
    preset: Option<Preset>,
    /// Base URLs of other perf-server instances to spread the load over, 1
    /// to 64 of them (not with `shards`).
    #[schema(nullable = false, min_items = 1, max_items = 64)]
    workers: Option<Vec<String>>,
    /// Split the load into this many shards on local worker processes (not with `workers`).
    #[schema(nullable = false, minimum = 1)]
    shards: Option<u32>,
    /// The text of a scenario file (`load_tests: {name: {...}}`, as
    /// `perf-server run` reads) to start one of its scenarios; the body's
    /// other keys (`target`, `users`...) override its keys. Not with `preset`.
    #[schema(nullable = false)]
    scenario_yaml: Option<String>,
    /// Which of `scenario_yaml`'s load_tests (needed when it has several).
    #[schema(nullable = false)]
    #[serde(rename = "scenario")]
    scenario_of_file: Option<String>,
}

/// Reads the body: a scenario (the YAML schema as JSON) with an optional
/// `name`, or `{"preset": "...", "target": ...}` plus keys overriding the
/// preset; `workers: [urls]` or `shards: N` spread it over other instances.
fn scenario_of(body: serde_json::Value) -> Result<(String, Scenario, Placement), ApiError> {
    let serde_json::Value::Object(mut fields) = body else {
        return Err(ApiError::invalid_field(
            "",
            "the body must be a JSON object: a scenario, or a preset with overrides",
        ));
    };
    let placement =
        match (fields.remove("workers"), fields.remove("shards")) {
            (None, None) => Placement::Here,
            (Some(w), None) => {
                let urls: Vec<String> = serde_json::from_value(w).map_err(|_| {
                    ApiError::invalid_field(
                        "workers",
                        "workers must be a list of base URLs of perf-server instances",
                    )
                })?;
                Placement::Workers(urls)
            }
            (None, Some(n)) => {
                Placement::Shards(n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(
                    || ApiError::invalid_field("shards", "shards must be a positive whole number"),
                )?)
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_field(
                    "shards",
                    "give workers or shards, not both",
                ));
            }
        };
    let name = match fields.remove("name") {
        None => None,
        Some(serde_json::Value::String(n)) if is_test_name(&n) => Some(n),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "name",
                format!("name must be a string of 1 to 100 characters, not {other}"),
            ));
        }
    };
    let mut preset_name = None;
    let from_file = fields
        .remove("scenario_yaml")
        .map(|text| scenario_from_yaml(&text, fields.remove("scenario")))
        .transpose()?;
    if from_file.is_some() && fields.contains_key("preset") {
        return Err(ApiError::invalid_field(
            "preset",
            "give scenario_yaml or preset, not both",
        ));
    }
    let base = match fields.remove("preset") {
        None => match from_file {
            Some((file_name, keys)) => {
                preset_name = Some(file_name);
                keys
            }
            None => serde_json::Map::new(),
        },
        Some(serde_json::Value::String(p)) => {
            preset_name = Some(p.clone());
            let kind: Preset = p.parse().map_err(|e: perf_loadgen::Error| {
                ApiError::invalid_field("preset", e.to_string())
            })?;
            perf_loadgen::scenario_keys(&preset(kind))
        }
        Some(other) => {
            return Err(ApiError::invalid_field(
                "preset",
                format!(
                    "preset must be one of baseline, stress, spike, endurance, volume, not {other}"
                ),
            ));
        }
    };
    // Overrides replace the base's keys; switching model drops the other model's keys.
    let merged = perf_loadgen::with_overrides(base, fields);
    let scenario: Scenario =
        crate::body::parse(serde_json::Value::Object(merged).to_string().as_bytes())?;
    Ok((
        name.or(preset_name).unwrap_or_else(|| "api".to_owned()),
        scenario,
        placement,
    ))
}

/// A test's name: 1 to 100 characters, not only spaces.
fn is_test_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= 100
}

/// The most JSON a scenario read from `scenario_yaml` may amount to: YAML
/// aliases can repeat a large value many times over.
const MAX_EXPANDED_SCENARIO: usize = 1 << 20;

/// The scenario `which` (needed when there are several) of a scenario
/// file's text, as `perf-server run` reads it, with its name; its keys as
/// JSON, for the body's other keys to override.
fn scenario_from_yaml(
    text: &serde_json::Value,
    which: Option<serde_json::Value>,
) -> Result<(String, serde_json::Map<String, serde_json::Value>), ApiError> {
    let serde_json::Value::String(text) = text else {
        return Err(ApiError::invalid_field(
            "scenario_yaml",
            "scenario_yaml must be the text of a scenario file (load_tests: {name: {...}})",
        ));
    };
    let file = perf_loadgen::ScenarioFile::from_yaml(text)
        .map_err(|e| ApiError::invalid_field("scenario_yaml", e.to_string()))?;
    let which = match which {
        None => None,
        Some(serde_json::Value::String(name)) => Some(name),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "scenario",
                format!("scenario must be the name of one of the file's load_tests, not {other}"),
            ));
        }
    };
    let (name, scenario) = file
        .pick(which.as_deref())
        .map_err(|e| ApiError::invalid_field("scenario", e.to_string()))?;
    if !is_test_name(name) {
        return Err(ApiError::invalid_field(
            "scenario",
            "a scenario's name must be 1 to 100 characters, not only spaces",
        ));
    }
    let expanded = serde_json::to_string(scenario).map_or(usize::MAX, |j| j.len());
    if expanded > MAX_EXPANDED_SCENARIO {
        return Err(ApiError::invalid_field(
            "scenario_yaml",
            format!(
                "the scenario amounts to {expanded} bytes of JSON (aliases repeat values), more than {MAX_EXPANDED_SCENARIO}"
            ),
        ));
    }
    Ok((name.to_owned(), perf_loadgen::scenario_keys(scenario)))
}

fn admission_error(e: AdmissionError) -> ApiError {
    match e {
        AdmissionError::Invalid { field, message } => ApiError::invalid_field(field, message),
        AdmissionError::TargetRefused(message) => ApiError::forbidden(message).with_field("target"),
        AdmissionError::ShuttingDown => ApiError::unavailable("the server is shutting down", 5),
        e @ AdmissionError::QueueFull(_) => ApiError::too_many_requests(e.to_string(), 10),
        AdmissionError::Store(e) => e.into(),
    }
}

/// Test `id`, or a 404 that names it.
pub(crate) async fn record_of(
    state: &AppState,
    id: Id,
) -> Result<std::sync::Arc<LoadTestRecord>, ApiError> {
    state
        .tests
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no load test {id}")))
}

/// A test's report (interim while it runs), or a 404 that says it has none yet.
fn report_of(record: &LoadTestRecord) -> Result<&perf_loadgen::RunReport, ApiError> {
    record.report.as_ref().ok_or_else(|| {
        ApiError::not_found(format!(
            "load test {} has measured nothing yet ({})",
            record.id,
            record.status.as_str()
        ))
    })
}

pub(crate) fn parse_id(text: &str) -> Result<Id, ApiError> {
    super::parse_id(text, "id")
}

/// Starts (or queues) a load test.
#[utoipa::path(post, operation_id = "startLoadTest", path = "/performance/tests", tag = "tests", request_body(content = StartTest, description = "a scenario (the YAML schema as JSON) with optional `name`, or `{\"preset\": \"baseline\", \"target\": \"http://...\"}` plus overrides"), responses(
    (status = 202, body = TestView, description = "accepted (saved); running or queued", headers(("Location" = String, description = "URL of the test"))),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 403, body = crate::api_error::ErrorBody, description = "a target is not allowed"),
    (status = 422, body = crate::api_error::ErrorBody, description = "invalid scenario or over a server limit"),
    (status = 429, body = crate::api_error::ErrorBody, description = "the queue of waiting tests is full; retry after Retry-After seconds")
))]
#[post("/performance/tests")]
pub(crate) async fn start(
    state: web::Data<AppState>,
    body: JsonBody<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    // Parsing (a scenario file's YAML especially) is CPU work: off the HTTP workers.
    let (name, scenario, placement) = web::block(move || scenario_of(body.0))
        .await
        .map_err(ApiError::internal)??;
    let record = state
        .tests
        .submit(name, scenario, placement)
        .await
        .map_err(admission_error)?;
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("/performance/tests/{}", record.id),
        ))
        .json(TestView::from(record)))
}

/// A test's status and live progress.
#[utoipa::path(get, operation_id = "getLoadTest", path = "/performance/tests/{id}", tag = "tests", responses(
    (status = 200, body = TestView, description = "OK"),
    (status = 404, body = crate::api_error::ErrorBody, description = "not found")
))]
#[get("/performance/tests/{id}")]
pub(crate) async fn show(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    match state.tests.get(id).await? {
        Some(record) => {
            let mut view = TestView::from(&*record);
            view.save_pending = state.tests.save_pending(id);
            Ok(HttpResponse::Ok().json(view))
        }
        None => Err(ApiError::not_found(format!("no load test {id}"))),
    }
}

/// `?format=json|csv|html`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultsQuery {
    /// `json` (default, the full report), `csv` (the timeline) or `html`.
    format: Option<String>,
}

/// The report (interim while the test runs).
#[utoipa::path(get, operation_id = "getLoadTestResults", path = "/performance/tests/{id}/results", tag = "tests", params(ResultsQuery), responses(
    (status = 200, content((perf_loadgen::RunReport = "application/json"), (String = "text/csv"), (String = "text/html")), description = "the RunReport as JSON, the timeline as CSV, or a self-contained HTML report with charts and threshold and regression verdicts (also for `Accept: text/html`)"),
    (status = 404, body = crate::api_error::ErrorBody, description = "no such test, or no measurement yet"),
    (status = 400, body = crate::api_error::ErrorBody, description = "unknown format")
))]
#[get("/performance/tests/{id}/results")]
pub(crate) async fn results(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<ResultsQuery>,
    request: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let record = record_of(&state, id).await?;
    let report = report_of(&record)?;
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let format = query
        .format
        .as_deref()
        .unwrap_or(if wants_html { "html" } else { "json" });
    match format {
        "json" => Ok(HttpResponse::Ok().json(report)),
        "csv" => Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(report.timeline_csv())),
        "html" => {
            let comparison = state.tests.comparison(&record).await?;
            Ok(HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(report.to_html(comparison.as_ref())))
        }
        other => Err(ApiError::bad_request(format!(
            "format {other:?} is not one of json, csv, html"
        ))
        .with_field("format")),
    }
}

/// How a test compares: the regression verdicts against the recent history
/// of its scenario, and the scenario's p95 per run with its level shifts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TestTrendView {
    /// The verdicts against up to 5 earlier completed runs (absent without
    /// history or before the test measured anything).
    #[schema(value_type = Object)]
    comparison: Option<perf_loadgen::Comparison>,
    /// The scenario's p95 over its runs and where it shifted.
    trend: crate::test_runner::Trend,
}

/// The test against its scenario's history.
#[utoipa::path(get, operation_id = "getLoadTestTrend", path = "/performance/tests/{id}/trend", tag = "tests", responses(
    (status = 200, body = TestTrendView, description = "OK"),
    (status = 404, body = crate::api_error::ErrorBody, description = "not found")
))]
#[get("/performance/tests/{id}/trend")]
pub(crate) async fn trend(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let record = record_of(&state, id).await?;
    let comparison = state.tests.comparison(&record).await?;
    let trend = state.tests.trend(&record).await?;
    Ok(HttpResponse::Ok().json(TestTrendView { comparison, trend }))
}

/// `?baseline=<id>`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct BaselineQuery {
    /// The test to compare against.
    baseline: String,
}

/// This test judged against another one: each metric's change with its
/// confidence interval and the regression verdicts.
#[utoipa::path(get, operation_id = "compareLoadTests", path = "/performance/tests/{id}/compare", tag = "tests", params(BaselineQuery), responses(
    (status = 200, body = Object, description = "the Comparison: metrics with baseline, current, change and verdict; regressed; inconclusive"),
    (status = 404, body = crate::api_error::ErrorBody, description = "a test is missing or has measured nothing"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad id")
))]
#[get("/performance/tests/{id}/compare")]
pub(crate) async fn compare(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<BaselineQuery>,
) -> Result<HttpResponse, ApiError> {
    let current_id = parse_id(&id)?;
    let baseline_id = parse_id(&query.baseline).map_err(|e| e.with_field("baseline"))?;
    let baseline = record_of(&state, baseline_id).await?;
    let current = record_of(&state, current_id).await?;
    Ok(HttpResponse::Ok().json(perf_loadgen::compare(
        report_of(&baseline)?,
        report_of(&current)?,
        &perf_loadgen::CompareOptions::default(),
    )))
}

/// `?limit=&cursor=&scenario=&target=&status=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Items per page, 1 to 500 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only this scenario name.
    scenario: Option<String>,
    /// Only tests with this base URL among their targets.
    target: Option<String>,
    /// Only this status.
    status: Option<String>,
}

/// Test history, newest first.
#[utoipa::path(get, operation_id = "listLoadTestHistory", path = "/performance/tests/history", tag = "tests", params(HistoryQuery), responses(
    (status = 200, body = Page<TestView>, description = "OK"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/tests/history")]
pub(crate) async fn history(
    state: web::Data<AppState>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    list_page(&state, query.into_inner()).await
}

/// The tests, newest first: the same listing as `/performance/tests/history`
/// (the collection's own URL, where a REST client looks first).
#[utoipa::path(get, operation_id = "listLoadTests", path = "/performance/tests", tag = "tests", params(HistoryQuery), responses(
    (status = 200, body = Page<TestView>, description = "OK"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/tests")]
pub(crate) async fn list(
    state: web::Data<AppState>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    list_page(&state, query.into_inner()).await
}

async fn list_page(state: &AppState, q: HistoryQuery) -> Result<HttpResponse, ApiError> {
    let page = super::PageQuery::new(q.limit, q.cursor).page()?;
    let wanted = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<TestStatus>()
                .map_err(|e| ApiError::bad_request(e).with_field("status"))
        })
        .transpose()?;
    let filter = TestFilter {
        scenario: q.scenario,
        target: q.target,
        status: wanted,
    };
    let page = state.store.list_load_tests(&filter, page).await?;
    // Past and current tests, newest first, without their reports.
    Ok(HttpResponse::Ok().json(page.map(TestView::from)))
}

/// Cancels a queued or running test (within a second), keeping what it measured.
#[utoipa::path(delete, operation_id = "cancelLoadTest", path = "/performance/tests/{id}", tag = "tests", responses(
    (status = 200, body = TestView, description = "cancelled"),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 404, body = crate::api_error::ErrorBody, description = "not found"),
    (status = 409, body = crate::api_error::ErrorBody, description = "already finished")
))]
#[delete("/performance/tests/{id}")]
pub(crate) async fn cancel(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    match state.tests.cancel(id).await {
        Ok(record) => Ok(HttpResponse::Ok().json(TestView::from(record))),
        Err(CancelError::NotFound(_)) => Err(ApiError::not_found(format!("no load test {id}"))),
        Err(e @ CancelError::Finished(..)) => Err(ApiError::conflict(e.to_string())),
        Err(CancelError::Store(e)) => Err(e.into()),
    }
}
