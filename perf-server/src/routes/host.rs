use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use perf_core::parse_duration;
use perf_core::system::{CpuSample, MemorySample, NetworkSample};
use perf_memory::AllocatorStats;
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::monitor::HostSample;

/// `?window=60s`: return the samples of that span instead of the newest one.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowQuery {
    /// A duration such as `60s` or `15m`, at most the configured `sample_history`.
    window: Option<String>,
}

/// Samples over a window, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Series<T> {
    /// The span asked for, in milliseconds.
    window_ms: u64,
    /// Sampling interval, in milliseconds.
    interval_ms: u64,
    /// The samples.
    samples: Vec<T>,
}

/// The headline figures.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SummaryView {
    timestamp_ms: u64,
    interval_ms: u64,
    uptime_seconds: u64,
    cpu_utilization_percent: f64,
    process_cpu_percent: f64,
    load_average_1m: f64,
    host_memory_available_bytes: u64,
    process_rss_bytes: u64,
    allocator_allocated_bytes: Option<u64>,
    external_rx_bytes_per_sec: f64,
    external_tx_bytes_per_sec: f64,
    tcp_established: u64,
    /// The process's control group: memory limit and usage, CPU quota,
    /// throttling, pressure (absent without cgroups).
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<perf_core::cgroup::CgroupSample>,
}

/// Processor figures at one time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CpuView {
    timestamp_ms: u64,
    interval_ms: u64,
    #[serde(flatten)]
    cpu: CpuSample,
    /// The cgroup's CPU quota, throttling and CPU pressure, beside the host's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<perf_core::cgroup::CgroupSample>,
}

/// Memory figures at one time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MemoryView {
    timestamp_ms: u64,
    interval_ms: u64,
    #[serde(flatten)]
    memory: MemorySample,
    /// The cgroup's memory limit, usage, OOM counts and memory pressure,
    /// beside the host's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<perf_core::cgroup::CgroupSample>,
    allocator: Option<AllocatorStats>,
    /// The memory budget and what it did (newest sample only).
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<perf_memory::BudgetStatus>,
    /// The leak detector's verdict (newest sample only).
    #[serde(skip_serializing_if = "Option::is_none")]
    leak: Option<perf_memory::LeakVerdict>,
    /// jemalloc's settings in force (newest sample only).
    #[serde(skip_serializing_if = "Option::is_none")]
    tuning: Option<perf_memory::MemoryTuning>,
}

/// Network figures at one time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct NetworkView {
    timestamp_ms: u64,
    interval_ms: u64,
    #[serde(flatten)]
    network: NetworkSample,
}

/// Answers the newest sample, or with `?window=` the series, through `view`.
async fn respond<V: Serialize>(
    state: &AppState,
    query: &WindowQuery,
    view: impl Fn(&HostSample) -> V,
) -> Result<HttpResponse, ApiError> {
    let Some(window_text) = &query.window else {
        let sample = latest(state).await?;
        return Ok(HttpResponse::Ok().json(view(&sample)));
    };
    let window = parse_duration(window_text)
        .map_err(|e| ApiError::bad_request(e.to_string()).with_field("window"))?;
    let span = state.monitor.history_span();
    if window.is_zero() || window > span {
        return Err(ApiError::bad_request(format!(
            "window {window_text:?} must be above 0 and at most the sample history of {}s",
            span.as_secs()
        ))
        .with_field("window"));
    }
    let samples = state.monitor.window(window).await;
    Ok(HttpResponse::Ok().json(Series {
        window_ms: millis(window),
        interval_ms: millis(state.monitor.interval()),
        samples: samples.iter().map(|s| view(s)).collect(),
    }))
}

async fn latest(state: &AppState) -> Result<Arc<HostSample>, ApiError> {
    state
        .monitor
        .latest()
        .await
        .ok_or_else(|| ApiError::unavailable("the host sampler has not produced a sample yet", 1))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Headline figures of this host and process.
#[utoipa::path(get, operation_id = "getHostSummary", path = "/performance/metrics", tag = "metrics", params(WindowQuery), responses(
    (status = 200, body = SummaryView, description = "newest sample; with `window`, a Series of them"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/metrics")]
pub(crate) async fn summary(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    // The query parsed only when there is one (the common read has none).
    let query = if req.query_string().is_empty() {
        WindowQuery::default()
    } else {
        web::Query::<WindowQuery>::from_query(req.query_string())
            .map_err(|e| crate::api_error::query_refused(&e))?
            .into_inner()
    };
    // The state by reference: extracting `web::Data` clones an `Arc` whose
    // count every worker touches on every request.
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("the application state is missing"))?;
    let uptime_seconds = state.started.elapsed().as_secs();
    let view = |s: &HostSample| SummaryView {
        timestamp_ms: s.system.timestamp_ms,
        interval_ms: s.system.interval_ms,
        uptime_seconds,
        cpu_utilization_percent: s.system.cpu.utilization_percent,
        process_cpu_percent: s.system.cpu.process_cpu_percent,
        load_average_1m: s.system.cpu.load_average_1m,
        host_memory_available_bytes: s.system.memory.host_available_bytes,
        process_rss_bytes: s.system.memory.process_rss_bytes,
        allocator_allocated_bytes: s.allocator.map(|a| a.allocated_bytes),
        external_rx_bytes_per_sec: s.system.network.external_rx_bytes_per_sec(),
        external_tx_bytes_per_sec: s.system.network.external_tx_bytes_per_sec(),
        tcp_established: s.system.network.tcp.established,
        cgroup: s.system.cgroup.clone(),
    };
    if query.window.is_none() {
        // The newest sample's view changes once a sample and once a second.
        thread_local! {
            static BODY: super::CachedJson<(usize, u64, u64)> = const { super::CachedJson::new() };
        }
        // Keyed by the newest sample's stamp (one atomic); the sample itself
        // is read only when the body is made again.
        let stamp = match state.monitor.latest_timestamp_ms() {
            Some(at) => at,
            None => latest(state).await?.system.timestamp_ms,
        };
        // The state's address too: two apps on one thread (tests) are two keys.
        let app = std::ptr::from_ref::<AppState>(state) as usize;
        let key = (app, stamp, uptime_seconds);
        let made =
            BODY.with(|body| body.answer(key, || state.monitor.latest_now().map(|s| view(&s))));
        return Ok(made);
    }
    respond(state, &query, view).await
}

/// CPU utilization (total and per core), load averages, process CPU.
#[utoipa::path(get, operation_id = "getHostCpu", path = "/performance/metrics/cpu", tag = "metrics", params(WindowQuery), responses(
    (status = 200, body = CpuView, description = "newest sample; with `window`, a Series of them"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/metrics/cpu")]
pub(crate) async fn cpu(
    state: web::Data<AppState>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    respond(&state, &query, |s| CpuView {
        timestamp_ms: s.system.timestamp_ms,
        interval_ms: s.system.interval_ms,
        cpu: s.system.cpu.clone(),
        cgroup: s.system.cgroup.clone(),
    })
    .await
}

/// Host memory, process RSS and allocator statistics.
#[utoipa::path(get, operation_id = "getHostMemory", path = "/performance/metrics/memory", tag = "metrics", params(WindowQuery), responses(
    (status = 200, body = MemoryView, description = "newest sample; with `window`, a Series of them"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/metrics/memory")]
pub(crate) async fn memory(
    state: web::Data<AppState>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let newest = query.window.is_none();
    let watch = state.monitor.memory();
    respond(&state, &query, |s| MemoryView {
        timestamp_ms: s.system.timestamp_ms,
        interval_ms: s.system.interval_ms,
        memory: s.system.memory.clone(),
        cgroup: s.system.cgroup.clone(),
        allocator: s.allocator,
        budget: newest.then(|| watch.budget()),
        leak: newest.then(|| watch.leak()),
        tuning: if newest { watch.tuning() } else { None },
    })
    .await
}

/// Per-interface rates, errors and drops; TCP connections by state.
#[utoipa::path(get, operation_id = "getHostNetwork", path = "/performance/metrics/network", tag = "metrics", params(WindowQuery), responses(
    (status = 200, body = NetworkView, description = "newest sample; with `window`, a Series of them"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/metrics/network")]
pub(crate) async fn network(
    state: web::Data<AppState>,
    query: web::Query<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    respond(&state, &query, |s| NetworkView {
        timestamp_ms: s.system.timestamp_ms,
        interval_ms: s.system.interval_ms,
        network: s.system.network.clone(),
    })
    .await
}
