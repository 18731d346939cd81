use actix_web::{HttpResponse, get, web};

use crate::app::AppState;

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, operation_id = "getPrometheusMetrics", path = "/metrics", tag = "service", responses((status = 200, content_type = "text/plain", body = String, description = "OK")))]
#[get("/metrics")]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    for cache in state.monitor.memory().caches() {
        cache.publish_metrics();
    }
    crate::telemetry::publish_memory_watch(state.monitor.memory());
    crate::telemetry::publish_event_streams(&state.streams);
    let mut pools = Vec::new();
    if let Some(pool) = state.store.connection_pool() {
        pool.observation.publish_metrics("store");
        pools.push(("store", pool.latencies));
    }
    if let Some(db) = &state.database {
        db.pool_observation().publish_metrics("analyzed");
        pools.push(("analyzed", db.pool_latencies()));
    }
    if let Some(scaling) = &state.scaling
        && let Ok(status) = scaling.controller.status().await
    {
        crate::telemetry::publish_replicas(&status);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::render(
            state
                .monitor
                .latest_now()
                .as_ref()
                .and_then(|s| s.system.cgroup.as_ref()),
            &pools,
            &state.tests,
        ))
}
