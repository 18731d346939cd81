//! Every request's way through perf-server, in one middleware: the request
//! id and trace context, the Host and Origin checks, the bearer token on
//! state-changing requests, the memory budget's admission, the handler with
//! its panics caught, then the per-route metrics and the log line.
//!
//! One middleware, not five: each `from_fn` layer boxed the future of the
//! next on every request, and each looked the same headers up again.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;

use crate::api_error::ApiError;
use crate::guard::CatchUnwind;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request id for a request that came without one: a UUIDv7 (time-ordered
/// like every id here) whose random part comes from a per-thread generator,
/// not the operating system (`Uuid::now_v7` asks it on every call: a system
/// call per request). Unique in practice, not a secret.
fn new_request_id(started: Instant) -> Option<HeaderValue> {
    let mut random = [0u8; 10];
    fastrand::fill(&mut random);
    let id = uuid::Builder::from_unix_timestamp_millis(unix_millis(started), &random).into_uuid();
    // Written into a stack buffer, copied once into the header.
    let mut text = [0u8; 36];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)).ok()
}

/// Wall-clock milliseconds at `now`, from a per-thread anchor (an instant
/// and the system clock read together) renewed once a second: the request's
/// start instant is already at hand, so no second clock read per request.
fn unix_millis(now: Instant) -> u64 {
    use std::cell::Cell;
    use std::time::Duration;
    thread_local! {
        static ANCHOR: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
    }
    let since_anchor = |at: Instant, millis: u64| {
        // `now` may be before the anchor (a request that started before
        // the one that renewed it): counted back, not forward.
        match now.checked_duration_since(at) {
            Some(after) => millis.saturating_add(u64::try_from(after.as_millis()).unwrap_or(0)),
            None => millis
                .saturating_sub(u64::try_from(at.duration_since(now).as_millis()).unwrap_or(0)),
        }
    };
    ANCHOR.with(|anchor| {
        if let Some((at, millis)) = anchor.get()
            && now.saturating_duration_since(at) < Duration::from_secs(1)
        {
            return since_anchor(at, millis);
        }
        let at = Instant::now();
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        anchor.set(Some((at, millis)));
        since_anchor(at, millis)
    })
}

/// What the checks need, built once per worker (not looked up in the
/// request's app data on every request).
pub(crate) struct Gates {
    pub(crate) guard: crate::guard::RequestGuard,
    pub(crate) token: Option<String>,
    pub(crate) state: actix_web::web::Data<crate::app::AppState>,
}

/// Middleware: see the module's documentation.
pub(crate) async fn handle(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
    gates: std::rc::Rc<Gates>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    // Correlation: keep the caller's W3C traceparent and x-request-id (or
    // make a request id), log them, and send them back (the caller's header
    // values are shared, not copied).
    let header = |name: &HeaderName| {
        req.headers()
            .get(name)
            .filter(|v| v.len() <= 256 && v.to_str().is_ok())
            .cloned()
    };
    let traceparent = header(&TRACEPARENT);
    let request_id = header(&X_REQUEST_ID);
    // The checks are caught too: a panic in one costs its request a 500,
    // as a panic in a handler does (catching costs nothing when none comes).
    let refusal = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::guard::refusal(&req, &gates.guard)
            .or_else(|| crate::auth::refusal(&req, gates.token.as_deref()))
            .or_else(|| crate::memory::refusal(&req, gates.state.monitor.memory()))
    }))
    .unwrap_or_else(|_| {
        metrics::counter!("http_handler_panics_total").increment(1);
        Some(ApiError::panicked())
    });
    drop(gates);
    let outcome = match refusal {
        Some(error) => {
            // Refused before routing: the route is found from the path.
            let route = req.match_pattern();
            let (http_req, _) = req.into_parts();
            let response = actix_web::ResponseError::error_response(&error);
            Ok((
                ServiceResponse::new(http_req, response).map_into_right_body(),
                route,
            ))
        }
        None => {
            if req.method() == Method::HEAD {
                // The connection knows the request was HEAD and sends no body.
                req.head_mut().method = Method::GET;
            }
            // A handler that panics costs its request a 500, not the worker.
            let call = std::pin::pin!(next.call(req));
            match CatchUnwind(call).await {
                Ok(Ok(response)) => {
                    // Routed: the pattern comes from the matched resource.
                    let route = response.request().match_pattern();
                    Ok((response.map_into_left_body(), route))
                }
                Ok(Err(e)) => Err(e),
                Err(()) => {
                    metrics::counter!("http_handler_panics_total").increment(1);
                    Err(ApiError::panicked().into())
                }
            }
        }
    };
    let elapsed = started.elapsed();
    let (mut response, route) = match outcome {
        Ok(answered) => answered,
        Err(e) => {
            // The request went into the failed call (routing needs it
            // unshared, so it is not cloned): actix turns the error into
            // the response; the status is counted here.
            let status = e.as_response_error().status_code().as_u16();
            crate::telemetry::record("unknown", &method, status, elapsed);
            log(
                status,
                &method,
                "unknown",
                &request_id,
                &traceparent,
                elapsed,
            );
            return Err(e);
        }
    };
    let status = response.status().as_u16();
    let route = route.as_deref().unwrap_or("unmatched");
    let request_id = request_id.or_else(|| new_request_id(started));
    log(status, &method, route, &request_id, &traceparent, elapsed);
    let headers = response.headers_mut();
    if let Some(v) = request_id {
        headers.insert(X_REQUEST_ID, v);
    }
    if let Some(v) = traceparent {
        headers.insert(TRACEPARENT, v);
    }
    crate::telemetry::record(route, &method, status, elapsed);
    Ok(response)
}

/// The log line of a request: a warning for a server error, else at debug.
fn log(
    status: u16,
    method: &Method,
    route: &str,
    request_id: &Option<HeaderValue>,
    traceparent: &Option<HeaderValue>,
    elapsed: std::time::Duration,
) {
    let text = |v: &Option<HeaderValue>| {
        v.as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if status >= 500 {
        tracing::warn!(request_id = %text(request_id), traceparent = %text(traceparent), method = %method, %route, status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request failed");
    } else if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(request_id = %text(request_id), traceparent = %text(traceparent), method = %method, %route, status, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn request_id_milliseconds_follow_the_wall_clock_both_ways() {
        let wall = || {
            u64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis(),
            )
            .unwrap()
        };
        let now = Instant::now();
        let at_now = unix_millis(now);
        assert!(at_now.abs_diff(wall()) <= 5, "{at_now} vs {}", wall());
        // A request that started before the anchor counts back from it.
        let earlier = now.checked_sub(Duration::from_millis(300)).unwrap();
        let back = unix_millis(earlier);
        assert!((at_now - back).abs_diff(300) <= 2, "{at_now} - {back}");
        let later = now + Duration::from_millis(200);
        let ahead = unix_millis(later);
        assert!((ahead - at_now).abs_diff(200) <= 2, "{ahead} - {at_now}");
    }
}
