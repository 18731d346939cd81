//! `GET /performance/recommendations`.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::app::AppState;

/// `?target_rps=&headroom=` for the capacity advice.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CapacityQuery {
    /// The rate to plan for (default 10000 req/s).
    target_rps: Option<f64>,
    /// Share of each instance kept free (0 to 0.9, default 0.3).
    headroom: Option<f64>,
}

/// Advice gathered from every crate: indexes to add or drop, pool size,
/// caches, allocator tuning, leaks, memory budget, scaling policy and
/// capacity, most urgent first, each with its evidence and action.
#[utoipa::path(get, operation_id = "listRecommendations", path = "/performance/recommendations", tag = "recommendations", params(CapacityQuery), responses(
    (status = 200, body = crate::recommendations::RecommendationList, description = "`recommendations` (kind, severity, title, evidence, action) and `sources`"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad parameter")
))]
#[get("/performance/recommendations")]
pub(crate) async fn recommendations(
    state: web::Data<AppState>,
    query: web::Query<CapacityQuery>,
) -> Result<HttpResponse, ApiError> {
    let target = query.target_rps.unwrap_or(10_000.0);
    if !(target.is_finite() && target > 0.0) {
        return Err(
            ApiError::bad_request("target_rps must be a number above 0").with_field("target_rps")
        );
    }
    let headroom = query.headroom.unwrap_or(0.3);
    if !(0.0..=0.9).contains(&headroom) {
        return Err(
            ApiError::bad_request("headroom must be between 0 and 0.9").with_field("headroom")
        );
    }
    Ok(HttpResponse::Ok().json(crate::recommendations::gather(&state, target, headroom).await))
}
