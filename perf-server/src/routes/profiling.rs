//! `/performance/profiling`: CPU and heap profiles of this process, one at
//! a time, kept in the store.

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};

use super::{PageQuery, parse_id};
use crate::api_error::ApiError;
use crate::app::AppState;
use crate::body::JsonBody;
use crate::store::{Page, ProfileRecord};

/// Body of `POST /performance/profiling/stop`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopProfile {
    /// The id `start` returned.
    id: String,
}

/// The running profile and the stored ones.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProfilingView {
    /// The profile being taken, if any.
    #[schema(value_type = Option<Object>)]
    running: Option<serde_json::Value>,
    /// Whether heap profiles can be taken (jemalloc started with `prof:true`).
    heap_available: bool,
    /// Finished profiles, newest first.
    profiles: Page<ProfileRecord>,
}

/// `?format=` of one profile.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FormatQuery {
    /// `json` (the record, default), `pprof` (protobuf for `go tool pprof`) or `svg` (flamegraph).
    format: Option<String>,
}

#[cfg(feature = "profiling")]
mod enabled {
    use perf_memory::{Error, Profile, ProfileRequest};

    use super::*;
    use crate::store::ProfileData;

    pub(super) fn api_error(e: Error) -> ApiError {
        match e {
            Error::Invalid { field, message } => ApiError::invalid_field(field, message),
            Error::ProfilerBusy { .. } => ApiError::conflict(e.to_string()),
            Error::Unsupported(message) => ApiError::not_implemented(message),
            Error::Profiling(message) if message.contains("not running") => {
                ApiError::not_found(message)
            }
            other => ApiError::internal(other),
        }
    }

    /// Keeps a finished profile.
    pub(super) async fn keep(
        state: &AppState,
        profile: Profile,
    ) -> Result<ProfileRecord, ApiError> {
        let record = ProfileRecord {
            id: profile.session.id,
            kind: profile.session.kind.to_string(),
            started_at_ms: profile.session.started_ms,
            duration_ms: profile.duration_ms,
            frequency_hz: profile.session.frequency_hz,
            pprof_bytes: profile.pprof.len() as u64,
            flamegraph_svg_bytes: profile.flamegraph_svg.len() as u64,
        };
        state
            .store
            .insert_profile(&ProfileData {
                record: record.clone(),
                pprof: profile.pprof,
                flamegraph_svg: profile.flamegraph_svg,
            })
            .await?;
        Ok(record)
    }

    pub(super) async fn start(
        state: web::Data<AppState>,
        request: ProfileRequest,
    ) -> Result<HttpResponse, ApiError> {
        let profiler = state.monitor.memory().profiler();
        let session = profiler.start(request).await.map_err(api_error)?;
        // Stop it after its duration, or at the ceiling when none was given.
        let limit = std::time::Duration::from_secs(
            session.duration_s.unwrap_or(perf_memory::MAX_PROFILE_S),
        );
        let id = session.id;
        let background = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            let profiler = background.monitor.memory().profiler();
            if profiler.running().is_some_and(|s| s.id == id) {
                match profiler.stop(&id).await {
                    Ok(profile) => {
                        if let Err(e) = keep(&background, profile).await {
                            tracing::error!(%id, error = ?e, "could not store the profile");
                        }
                    }
                    Err(e) => tracing::error!(%id, error = %e, "could not stop the profile"),
                }
            }
        });
        Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/performance/profiling/{id}")))
            .json(session))
    }

    pub(super) async fn stop(
        state: web::Data<AppState>,
        id: perf_core::Id,
    ) -> Result<HttpResponse, ApiError> {
        let profiler = state.monitor.memory().profiler();
        match profiler.stop(&id).await {
            Ok(profile) => Ok(HttpResponse::Ok().json(keep(&state, profile).await?)),
            Err(e) => {
                if let Some(done) = state.store.get_profile(id).await? {
                    return Err(ApiError::conflict(format!(
                        "profile {id} already finished ({} ms); read it at /performance/profiling/{id}",
                        done.record.duration_ms
                    )));
                }
                Err(api_error(e))
            }
        }
    }

    pub(super) fn running(state: &AppState) -> Option<serde_json::Value> {
        state
            .monitor
            .memory()
            .profiler()
            .running()
            .and_then(|s| serde_json::to_value(s).ok())
    }

    pub(super) fn heap_available() -> bool {
        perf_memory::Profiler::heap_available()
    }
}

#[cfg(feature = "profiling")]
type StartBody = perf_memory::ProfileRequest;
#[cfg(not(feature = "profiling"))]
type StartBody = serde_json::Value;
#[cfg(feature = "profiling")]
type StartReply = perf_memory::ProfileSession;
#[cfg(not(feature = "profiling"))]
type StartReply = serde_json::Value;

#[cfg(not(feature = "profiling"))]
const NOT_BUILT: &str = "this perf-server was built without the `profiling` feature";

/// Starts a CPU or heap profile (`{"kind": "cpu"|"heap", "duration_s"?, "frequency_hz"?}`);
/// it stops after `duration_s` (at most 600) or on `stop`.
#[utoipa::path(post, operation_id = "startProfile", path = "/performance/profiling/start", tag = "profiling",
    request_body(content = StartBody, description = "`{\"kind\": \"cpu\"|\"heap\", \"duration_s\"?: 1..600, \"frequency_hz\"?: 1..1000 (cpu)}`",
        example = json!({"kind": "cpu", "duration_s": 30, "frequency_hz": 99})),
    responses(
    (status = 201, body = StartReply, description = "started: the session (id, kind, started_ms, frequency_hz, duration_s)"),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 409, body = crate::api_error::ErrorBody, description = "a profile is already running; never two at once"),
    (status = 422, body = crate::api_error::ErrorBody, description = "a field is not allowed"),
    (status = 501, body = crate::api_error::ErrorBody, description = "this build or allocator cannot take that profile")
))]
#[post("/performance/profiling/start")]
pub(crate) async fn start(
    state: web::Data<AppState>,
    body: JsonBody<StartBody>,
) -> Result<HttpResponse, ApiError> {
    #[cfg(feature = "profiling")]
    {
        enabled::start(state, body.0).await
    }
    #[cfg(not(feature = "profiling"))]
    {
        let _ = (state, body);
        Err(ApiError::not_implemented(NOT_BUILT))
    }
}

/// Stops a running profile and keeps it.
#[utoipa::path(post, operation_id = "stopProfile", path = "/performance/profiling/stop", tag = "profiling", request_body = StopProfile, responses(
    (status = 200, body = ProfileRecord, description = "stopped and stored"),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 404, body = crate::api_error::ErrorBody, description = "no such profile is running"),
    (status = 409, body = crate::api_error::ErrorBody, description = "it already finished")
))]
#[post("/performance/profiling/stop")]
pub(crate) async fn stop(
    state: web::Data<AppState>,
    body: JsonBody<StopProfile>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&body.0.id, "id")?;
    #[cfg(feature = "profiling")]
    {
        enabled::stop(state, id).await
    }
    #[cfg(not(feature = "profiling"))]
    {
        let _ = (state, id);
        Err(ApiError::not_implemented(NOT_BUILT))
    }
}

/// The running profile and the stored ones, newest first.
#[utoipa::path(get, operation_id = "listProfiles", path = "/performance/profiling", tag = "profiling", params(PageQuery), responses(
    (status = 200, body = ProfilingView, description = "OK"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/profiling")]
pub(crate) async fn list(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let profiles = state.store.list_profiles(query.page()?).await?;
    #[cfg(feature = "profiling")]
    let (running, heap_available) = (enabled::running(&state), enabled::heap_available());
    #[cfg(not(feature = "profiling"))]
    let (running, heap_available) = (None, false);
    Ok(HttpResponse::Ok().json(ProfilingView {
        running,
        heap_available,
        profiles,
    }))
}

/// One stored profile: its record, or with `?format=pprof|svg` its data.
#[utoipa::path(get, operation_id = "getProfile", path = "/performance/profiling/{id}", tag = "profiling", params(FormatQuery), responses(
    (status = 200, body = ProfileRecord, description = "the record (json), the pprof protobuf (application/octet-stream) or the flamegraph (image/svg+xml)"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad id or format"),
    (status = 404, body = crate::api_error::ErrorBody, description = "not found")
))]
#[get("/performance/profiling/{id}")]
pub(crate) async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<FormatQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "id")?;
    let format = query.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "pprof" | "svg") {
        return Err(ApiError::bad_request(format!(
            "format {format:?} is not one of json, pprof, svg"
        ))
        .with_field("format"));
    }
    let Some(profile) = state.store.get_profile(id).await? else {
        return Err(ApiError::not_found(format!("no profile {id}")));
    };
    Ok(match format {
        "pprof" => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}-{id}.pb\"", profile.record.kind),
            ))
            .body(profile.pprof),
        "svg" => HttpResponse::Ok()
            .content_type("image/svg+xml")
            .body(profile.flamegraph_svg),
        _ => HttpResponse::Ok().json(profile.record),
    })
}

/// Deletes a stored profile (retention also deletes old ones).
#[utoipa::path(delete, operation_id = "deleteProfile", path = "/performance/profiling/{id}", tag = "profiling", responses(
    (status = 204, description = "deleted"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad id"),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 404, body = crate::api_error::ErrorBody, description = "not found")
))]
#[delete("/performance/profiling/{id}")]
pub(crate) async fn delete(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "id")?;
    if state.store.delete_profile(id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!("no profile {id}")))
    }
}
