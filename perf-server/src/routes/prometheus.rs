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
    if let Some(pool) = state.store.connection_pool() {
        pool.observation.publish_metrics("store");
    }
    if let Some(db) = &state.database {
        db.pool_observation().publish_metrics("analyzed");
    }
    if let Some(scaling) = &state.scaling
        && let Ok(status) = scaling.controller.status().await
    {
        crate::telemetry::publish_replicas(&status);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::prometheus().render() + &crate::telemetry::render_requests())
}
