use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, post, web};
use perf_core::Id;
use serde::Deserialize;

use super::{PageQuery, parse_id};
use crate::api_error::ApiError;
use crate::app::AppState;
use crate::body::JsonBody;
use crate::store::{MetricsSnapshot, Page};

/// Body of `POST /performance/metrics/snapshots`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSnapshot {
    /// What this moment is, 1 to 200 characters, e.g. `before deploy 1.4.2`.
    label: String,
    /// Free text, at most 4000 characters.
    note: Option<String>,
}

impl CreateSnapshot {
    fn validate(&self) -> Result<(), ApiError> {
        let label_chars = self.label.trim().chars().count();
        if !(1..=200).contains(&label_chars) {
            return Err(ApiError::invalid_field(
                "label",
                format!("label has {label_chars} characters; allowed: 1 to 200 (not only spaces)"),
            ));
        }
        if let Some(note) = &self.note {
            let n = note.chars().count();
            if n > 4000 {
                return Err(ApiError::invalid_field(
                    "note",
                    format!("note has {n} characters; allowed: at most 4000"),
                ));
            }
        }
        Ok(())
    }
}

/// Saves the newest host sample under a label (durable before 201).
#[utoipa::path(post, operation_id = "createSnapshot", path = "/performance/metrics/snapshots", tag = "metrics", request_body = CreateSnapshot, responses(
    (status = 201, body = MetricsSnapshot, description = "created and durable", headers(("Location" = String, description = "URL of the snapshot"))),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 413, body = crate::api_error::ErrorBody, description = "body too large"),
    (status = 415, body = crate::api_error::ErrorBody, description = "not JSON"),
    (status = 422, body = crate::api_error::ErrorBody, description = "a field is not allowed")
))]
#[post("/performance/metrics/snapshots")]
pub(crate) async fn create(
    state: web::Data<AppState>,
    body: JsonBody<CreateSnapshot>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    body.validate()?;
    let sample = state.monitor.latest().await.ok_or_else(|| {
        ApiError::unavailable("the host sampler has not produced a sample yet", 1)
    })?;
    let snapshot = MetricsSnapshot {
        id: Id::new(),
        label: body.label.trim().to_owned(),
        note: body.note,
        created_at_ms: perf_core::unix_millis(),
        sample: (*sample).clone(),
    };
    state.store.insert_snapshot(&snapshot).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/performance/metrics/snapshots/{}", snapshot.id),
        ))
        .json(snapshot))
}

/// Snapshots, newest first.
#[utoipa::path(get, operation_id = "listSnapshots", path = "/performance/metrics/snapshots", tag = "metrics", params(PageQuery), responses(
    (status = 200, body = Page<MetricsSnapshot>, description = "OK"),
    (status = 400, body = crate::api_error::ErrorBody, description = "bad request")
))]
#[get("/performance/metrics/snapshots")]
pub(crate) async fn list(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state.store.list_snapshots(query.page()?).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// One snapshot.
#[utoipa::path(get, operation_id = "getSnapshot", path = "/performance/metrics/snapshots/{id}", tag = "metrics", responses(
    (status = 200, body = MetricsSnapshot, description = "OK"),
    (status = 404, body = crate::api_error::ErrorBody, description = "not found")
))]
#[get("/performance/metrics/snapshots/{id}")]
pub(crate) async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "id")?;
    match state.store.get_snapshot(id).await? {
        Some(snapshot) => Ok(HttpResponse::Ok().json(snapshot)),
        None => Err(ApiError::not_found(format!("no snapshot {id}"))),
    }
}

/// Deletes one snapshot.
#[utoipa::path(delete, operation_id = "deleteSnapshot", path = "/performance/metrics/snapshots/{id}", tag = "metrics", responses(
    (status = 204, description = "deleted"),
    (status = 401, body = crate::api_error::ErrorBody, description = "missing or wrong bearer token"),
    (status = 404, body = crate::api_error::ErrorBody, description = "not found")
))]
#[delete("/performance/metrics/snapshots/{id}")]
pub(crate) async fn delete(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "id")?;
    if state.store.delete_snapshot(id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!("no snapshot {id}")))
    }
}
