//! Live events as Server-Sent Events: a load test's snapshots and end,
//! and the host sampler's figures.

use actix_web::{HttpResponse, get, http::header, web};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::events::{EventFeed, EventStream, StreamsFull};

/// The response around an event stream.
fn sse(stream: Result<EventStream, StreamsFull>) -> Result<HttpResponse, ApiError> {
    let stream = stream.map_err(|StreamsFull(max)| {
        ApiError::unavailable(
            format!("{max} event streams are open, the most allowed (max_event_streams); try again later"),
            5,
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies such as nginx must not hold events back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// A load test's live events: `status` (`queued`, `running`), a
/// `snapshot` a second while it runs (users, rps, errors by kind,
/// percentiles, checks, dropped, whether the generator is the bottleneck),
/// then one event named after how it ended (`completed`, `failed`,
/// `cancelled`, `interrupted`) with the summary, and the end of the stream.
/// A late subscriber gets the last five minutes of events first; a test
/// that already ended gets its last event at once. A test running on
/// another instance of a shared store gets its newest figures and the end
/// (an `EventSource` reconnects by itself).
#[utoipa::path(get, operation_id = "streamLoadTestEvents", path = "/performance/tests/{id}/events", tag = "tests", responses(
    (status = 200, content_type = "text/event-stream", body = String, description = "Server-Sent Events: `status`, `snapshot` (a LiveSnapshot) each second, then `completed`/`failed`/`cancelled`/`interrupted`"),
    (status = 404, body = crate::api_error::ErrorBody, description = "no such test"),
    (status = 503, body = crate::api_error::ErrorBody, description = "too many event streams open")
))]
#[get("/performance/tests/{id}/events")]
pub(crate) async fn test_events(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::tests::parse_id(&id)?;
    if let Some(feed) = state.tests.feed(id) {
        return sse(feed.subscribe(&state.streams));
    }
    let record = super::tests::record_of(&state, id).await?;
    if record.status.is_finished() {
        let (event, data) = crate::test_runner::final_event(&record);
        return sse(EventFeed::replay(&state.streams, &[(event, data)]));
    }
    let mut events = vec![(
        "status",
        serde_json::json!({"status": record.status.as_str()}),
    )];
    if let Some(progress) = &record.progress {
        events.push((
            "snapshot",
            serde_json::to_value(progress).unwrap_or_default(),
        ));
    }
    sse(EventFeed::replay(&state.streams, &events))
}

/// The host and process figures of every sample as it is taken (event
/// `sample`, the body of `/performance/metrics/host?window=`'s samples),
/// the last 60 first.
#[utoipa::path(get, operation_id = "streamHostEvents", path = "/performance/metrics/events", tag = "metrics", responses(
    (status = 200, content_type = "text/event-stream", body = String, description = "Server-Sent Events: `sample` (a HostSample) at every sample interval"),
    (status = 503, body = crate::api_error::ErrorBody, description = "too many event streams open")
))]
#[get("/performance/metrics/events")]
pub(crate) async fn host_events(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    sse(state.monitor.events().subscribe(&state.streams))
}
