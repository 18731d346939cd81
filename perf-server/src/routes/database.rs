//! `/performance/metrics/database`: the analyzed database's figures.

use actix_web::{HttpResponse, get, web};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::database::DatabaseReport;

/// Pool stats, query latency through the pool, connections by state, buffer
/// and query cache hit ratios and the slowest statements of the database
/// named by `--analyze-database-url` (or `--database-url`); with none
/// configured, `configured: false` and a message saying so.
#[utoipa::path(get, operation_id = "getDatabaseReport", path = "/performance/metrics/database", tag = "metrics", responses(
    (status = 200, body = crate::database::DatabaseReport, description = "the report; `errors` lists what could not be read"),
))]
#[get("/performance/metrics/database")]
pub(crate) async fn database(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let report = match &state.database {
        Some(monitor) => monitor.report().await,
        None => DatabaseReport::unconfigured(),
    };
    Ok(HttpResponse::Ok().json(report))
}
