//! `/performance/scaling`: the autoscaler's status, policy, manual scaling
//! and decision history. The policy and the history live in the store, so
//! every instance sharing it can answer.

use actix_web::{HttpResponse, get, post, put, web};
use serde::{Deserialize, Serialize};

use super::PageQuery;
use crate::api_error::ApiError;
use crate::app::AppState;
use crate::body::JsonBody;
use crate::store::ScalingEventRecord;

/// Body of `POST /performance/scaling/manual`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManualScale {
    /// Replicas to run.
    replicas: u32,
    /// Allow a count outside the policy's min/max.
    #[serde(default)]
    force: bool,
}

/// What `GET /performance/scaling/status` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum ScalingStatus {
    /// An autoscaler runs here.
    Managed(Box<Managed>),
    /// None runs here.
    Unmanaged(Unmanaged),
}

/// The status of the autoscaler running here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Managed {
    /// `true`: an autoscaler runs on this instance.
    configured: bool,
    #[serde(flatten)]
    status: perf_scaling::ControllerStatus,
}

/// `GET /performance/scaling/status` without an autoscaler here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Unmanaged {
    /// `false`: no autoscaler runs on this instance.
    configured: bool,
    message: &'static str,
    /// The stored policy, if one was ever put.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<perf_scaling::ScalingPolicy>)]
    policy: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_decision: Option<ScalingEventRecord>,
}

fn scaling_error(e: perf_scaling::Error) -> ApiError {
    match e {
        perf_scaling::Error::Invalid { field, message } => ApiError::invalid_field(field, message),
        other => ApiError::internal(other),
    }
}

async fn stored_policy(state: &AppState) -> Result<Option<serde_json::Value>, ApiError> {
    Ok(state
        .store
        .get_scaling_state("policy")
        .await?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

/// Current and desired replicas, the last decision and why, each
/// instance's health and share of the load, the policy.
#[utoipa::path(get, operation_id = "getScalingStatus", path = "/performance/scaling/status", tag = "scaling", responses(
    (status = 200, body = ScalingStatus, description = "the controller's status (`configured: true`), or `configured: false` with the stored policy and last decision"),
))]
#[get("/performance/scaling/status")]
pub(crate) async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(scaling) = &state.scaling else {
        let last = state
            .store
            .list_scaling_events(crate::store::PageRequest::first(1))
            .await?
            .items
            .into_iter()
            .next();
        return Ok(HttpResponse::Ok().json(ScalingStatus::Unmanaged(Unmanaged {
            configured: false,
            message: "no autoscaler runs on this instance: configure `scaling` (policy, manager, source); the stored policy and history are shown",
            policy: stored_policy(&state).await?,
            last_decision: last,
        })));
    };
    let status = scaling.controller.status().await.map_err(scaling_error)?;
    Ok(
        HttpResponse::Ok().json(ScalingStatus::Managed(Box::new(Managed {
            configured: true,
            status,
        }))),
    )
}

/// Replaces the policy (validated; 422 names the field), kept in the store.
#[utoipa::path(put, operation_id = "putScalingPolicy", path = "/performance/scaling/config", tag = "scaling",
    request_body(content = perf_scaling::ScalingPolicy, description = "a ScalingPolicy: min_replicas, max_replicas, metrics, behavior?, tolerance?, predictive?",
        example = json!({"min_replicas": 2, "max_replicas": 20, "metrics": [{"name": "cpu", "kind": "resource", "target": {"utilization": 70}}]})),
    responses(
    (status = 200, body = perf_scaling::ScalingPolicy, description = "the policy now in force"),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 422, body = crate::api_error::ErrorBody, description = "a field is not allowed")
))]
#[put("/performance/scaling/config")]
pub(crate) async fn config(
    state: web::Data<AppState>,
    body: JsonBody<perf_scaling::ScalingPolicy>,
) -> Result<HttpResponse, ApiError> {
    let policy = body.0;
    policy.validate().map_err(scaling_error)?;
    let text = serde_json::to_string(&policy).map_err(ApiError::internal)?;
    state.store.put_scaling_state("policy", &text).await?;
    if let Some(scaling) = &state.scaling {
        scaling
            .controller
            .set_policy(policy.clone())
            .map_err(scaling_error)?;
    }
    Ok(HttpResponse::Ok().json(policy))
}

/// Scales now (`{"replicas", "force"?}`); outside min/max is 422 unless
/// `force`; recorded as an event.
#[utoipa::path(post, operation_id = "scaleManually", path = "/performance/scaling/manual", tag = "scaling", request_body = ManualScale, responses(
    (status = 200, body = ScalingEventRecord, description = "scaled; the recorded event"),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 409, body = crate::api_error::ErrorBody, description = "no instance manager on this instance"),
    (status = 422, body = crate::api_error::ErrorBody, description = "replicas outside the bounds without force")
))]
#[post("/performance/scaling/manual")]
pub(crate) async fn manual(
    state: web::Data<AppState>,
    body: JsonBody<ManualScale>,
) -> Result<HttpResponse, ApiError> {
    let Some(scaling) = &state.scaling else {
        return Err(ApiError::conflict(
            "no instance manager runs on this instance: configure `scaling` to scale by hand",
        ));
    };
    if body.0.replicas > 10_000 {
        return Err(ApiError::invalid_field("replicas", "at most 10000"));
    }
    let event = scaling
        .controller
        .manual(body.0.replicas, body.0.force)
        .await
        .map_err(scaling_error)?;
    crate::telemetry::count_scaling_event(&event);
    let record = ScalingEventRecord {
        id: perf_core::Id::new(),
        event,
    };
    state.store.insert_scaling_event(&record).await?;
    Ok(HttpResponse::Ok().json(record))
}

/// The most decisions a request may simulate (its timeline is the answer:
/// about 2.5 MB of JSON at this bound).
const API_SIMULATION_STEPS: f64 = 20_000.0;
/// The most replica-decisions a request may simulate (about a second of CPU).
const API_SIMULATION_WORK: f64 = 2e6;
/// Held while a request's simulation runs.
static SIMULATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Body of `POST /performance/scaling/simulate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimulateRequest {
    /// The policy to replay (default: the one in force).
    policy: Option<perf_scaling::ScalingPolicy>,
    /// The load over time as CSV, `t,v` rows (seconds, load), as
    /// `perf-server scaling simulate --trace` reads it.
    trace_csv: String,
    /// Decision period, start-up time, load one replica serves.
    #[serde(default)]
    settings: perf_scaling::SimulationSettings,
}

/// Replays a policy over a recorded load: the replicas it would have run,
/// each decision with its reason, how long users waited for capacity and
/// what it cost. Nothing is scaled.
#[utoipa::path(post, operation_id = "simulateScaling", path = "/performance/scaling/simulate", tag = "scaling", request_body = SimulateRequest, responses(
    (status = 200, body = perf_scaling::SimulationReport, description = "the replay"),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 422, body = crate::api_error::ErrorBody, description = "a bad policy, trace or setting (named), or too much to simulate")
))]
#[post("/performance/scaling/simulate")]
pub(crate) async fn simulate(
    state: web::Data<AppState>,
    body: JsonBody<SimulateRequest>,
) -> Result<HttpResponse, ApiError> {
    let SimulateRequest {
        policy,
        trace_csv,
        settings,
    } = body.0;
    let policy = match policy {
        Some(p) => p,
        None => stored_policy(&state)
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| {
                ApiError::invalid_field("policy", "no policy is in force here: give one")
            })?,
    };
    let trace = perf_scaling::parse_trace_csv(&trace_csv)
        .map_err(|e| ApiError::invalid_field("trace_csv", e.to_string()))?;
    settings.validate().map_err(scaling_error)?;
    policy.validate().map_err(scaling_error)?;
    let (steps, work) = perf_scaling::simulation_size(&policy, &trace, &settings);
    if !(steps <= API_SIMULATION_STEPS && work <= API_SIMULATION_WORK) {
        return Err(ApiError::invalid_field(
            "trace_csv",
            format!(
                "{steps:.0} decisions over up to {} replicas is more than a request may simulate (at most {API_SIMULATION_STEPS:.0} decisions and {API_SIMULATION_WORK:e} replica-decisions); use a longer period_s, or `perf-server scaling simulate` for a longer trace",
                policy.max_replicas
            ),
        ));
    }
    // One at a time, off the HTTP workers: CPU work that must not starve a
    // running load test.
    let Ok(_one) = SIMULATING.try_lock() else {
        return Err(ApiError::too_many_requests(
            "a simulation is already running; try again in a moment",
            2,
        ));
    };
    let report =
        tokio::task::spawn_blocking(move || perf_scaling::simulate(&policy, &trace, &settings))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| match e {
                perf_scaling::Error::Invalid { field, message } => {
                    ApiError::invalid_field(field, message)
                }
                other => ApiError::invalid_field("trace_csv", other.to_string()),
            })?;
    Ok(HttpResponse::Ok().json(report))
}

/// Decisions, newest first (`?limit=&cursor=`).
#[utoipa::path(get, operation_id = "listScalingEvents", path = "/performance/scaling/history", tag = "scaling", params(PageQuery), responses(
    (status = 200, body = crate::store::Page<ScalingEventRecord>, description = "a page of ScalingEventRecord"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/scaling/history")]
pub(crate) async fn history(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state.store.list_scaling_events(query.page()?).await?;
    Ok(HttpResponse::Ok().json(page))
}
