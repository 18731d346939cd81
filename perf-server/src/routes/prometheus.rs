use actix_web::{HttpResponse, get};

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, content_type = "text/plain", body = String, description = "OK")))]
#[get("/metrics")]
pub(crate) async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::prometheus().render())
}
