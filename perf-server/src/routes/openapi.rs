use actix_web::{HttpResponse, get};
use utoipa::OpenApi;

use super::{
    database, health, host, profiling, prometheus, recommendations, scaling, snapshots, tests,
};
use crate::api_error::{ApiError, ErrorBody};

/// The OpenAPI document, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "perf-server",
        description = "The perf toolkit over HTTP. State-changing requests need `Authorization: Bearer <token>` when the server has an API token. Every error is `{\"error\": {\"code\", \"message\", \"field\"?}}`."
    ),
    paths(
        health::health,
        health::ready,
        prometheus::metrics,
        openapi_json,
        host::summary,
        host::cpu,
        host::memory,
        host::network,
        database::database,
        profiling::start,
        profiling::stop,
        profiling::list,
        profiling::get,
        profiling::delete,
        scaling::status,
        scaling::config,
        scaling::manual,
        scaling::history,
        recommendations::recommendations,
        snapshots::create,
        snapshots::list,
        snapshots::get,
        snapshots::delete,
        tests::start,
        tests::show,
        tests::results,
        tests::history,
        tests::cancel,
    ),
    components(schemas(ApiError, ErrorBody))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200, description = "OpenAPI 3.1 document")))]
#[get("/openapi.json")]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
