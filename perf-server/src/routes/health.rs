use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;

use crate::api_error::ApiError;
use crate::app::AppState;

/// Liveness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when the process answers.
    status: &'static str,
    /// perf-server version.
    version: &'static str,
    /// Seconds since start.
    uptime_seconds: u64,
}

/// Readiness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    /// `ready`.
    status: &'static str,
    /// `sqlite` or `postgres`.
    store: &'static str,
    /// Highest schema migration applied.
    schema_version: i64,
}

/// Liveness: the process answers.
#[utoipa::path(get, operation_id = "getHealth", path = "/health", tag = "service", responses((status = 200, body = Health, description = "OK")))]
#[get("/health")]
pub(crate) async fn health(req: HttpRequest) -> HttpResponse {
    // The state by reference: extracting `web::Data` clones an `Arc` whose
    // count every worker touches on every request.
    let uptime_seconds = req
        .app_data::<web::Data<AppState>>()
        .map_or(0, |state| state.started.elapsed().as_secs());
    // The body changes once a second: serialized then, shared until the next.
    thread_local! {
        static BODY: super::CachedJson<u64> = const { super::CachedJson::new() };
    }
    BODY.with(|body| {
        body.answer(uptime_seconds, || Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds,
        })
    })
}

/// Readiness: the store answers and the host sampler has produced a sample.
#[utoipa::path(get, operation_id = "getReady", path = "/ready", tag = "service", responses(
    (status = 200, body = Ready, description = "OK"),
    (status = 503, description = "store unreachable, no sample yet, or shutting down (draining)", body = crate::api_error::ErrorBody)
))]
#[get("/ready")]
pub(crate) async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::unavailable(
            "shutting down: draining in-flight work, send new requests elsewhere",
            5,
        ));
    }
    let schema_version = state.store.schema_version().await?;
    if state.monitor.latest_now().is_none() {
        return Err(ApiError::unavailable(
            "the host sampler has not produced a sample yet",
            1,
        ));
    }
    Ok(HttpResponse::Ok().json(Ready {
        status: "ready",
        store: state.store.backend(),
        schema_version,
    }))
}
