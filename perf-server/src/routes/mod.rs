//! Route handlers: each parses the request, calls one API, maps the result to JSON.

pub(crate) mod console;
pub(crate) mod database;
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod host;
pub(crate) mod openapi;
pub(crate) mod profiling;
pub(crate) mod prometheus;
pub(crate) mod recommendations;
pub(crate) mod scaling;
pub(crate) mod snapshots;
pub(crate) mod tests;

use actix_web::web;
use perf_core::Id;
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::store::PageRequest;

/// Registers every route.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(console::root)
        .service(console::page)
        .service(console::file)
        .service(health::health)
        .service(health::ready)
        .service(prometheus::metrics)
        .service(openapi::openapi_json)
        .service(host::summary)
        .service(host::cpu)
        .service(host::memory)
        .service(host::network)
        .service(events::host_events)
        .service(database::database)
        .service(profiling::start)
        .service(profiling::stop)
        .service(profiling::list)
        .service(profiling::get)
        .service(profiling::delete)
        .service(scaling::status)
        .service(scaling::config)
        .service(scaling::manual)
        .service(scaling::history)
        .service(scaling::simulate)
        .service(recommendations::recommendations)
        .service(snapshots::create)
        .service(snapshots::list)
        .service(snapshots::get)
        .service(snapshots::delete)
        // `history` before `{id}`, so it is not read as an id.
        .service(tests::history)
        .service(tests::list)
        .service(tests::start)
        .service(tests::show)
        .service(tests::results)
        .service(events::test_events)
        .service(tests::trend)
        .service(tests::compare)
        .service(tests::cancel);
}

/// A JSON body kept by one worker while its key holds (a read endpoint whose
/// answer changes once a second or once a sample): a probe or dashboard
/// polling it at 100k requests/s serializes it once per change, and each
/// answer shares the bytes. Use it from a `thread_local!`.
pub(crate) struct CachedJson<K> {
    kept: std::cell::RefCell<Option<(K, actix_web::web::Bytes)>>,
}

impl<K: PartialEq> CachedJson<K> {
    pub(crate) const fn new() -> Self {
        Self {
            kept: std::cell::RefCell::new(None),
        }
    }

    /// The body for `key`, serialized from `make()` when the key changed.
    pub(crate) fn answer<T: serde::Serialize>(
        &self,
        key: K,
        make: impl FnOnce() -> T,
    ) -> actix_web::HttpResponse {
        let body = {
            let mut kept = self.kept.borrow_mut();
            match kept.as_ref() {
                Some((k, body)) if *k == key => body.clone(),
                _ => {
                    let body = actix_web::web::Bytes::from(
                        serde_json::to_vec(&make()).unwrap_or_default(),
                    );
                    *kept = Some((key, body.clone()));
                    body
                }
            }
        };
        actix_web::HttpResponse::Ok()
            .content_type(actix_web::http::header::ContentType::json())
            .body(body)
    }
}

/// `?limit=&cursor=` for listings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Items per page, 1 to 500 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageQuery {
    /// A page of `limit` items after `cursor` (a listing with filters of its own).
    pub(crate) fn new(limit: Option<u32>, cursor: Option<String>) -> Self {
        Self { limit, cursor }
    }

    /// The page asked for, checked.
    pub(crate) fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(
                ApiError::bad_request(format!("limit {limit} is outside 1 to 500"))
                    .with_field("limit"),
            );
        }
        let before = self
            .cursor
            .as_deref()
            .map(|c| parse_id(c, "cursor"))
            .transpose()?;
        Ok(PageRequest { limit, before })
    }
}

/// An id from a path or a body; the error names `field`.
pub(crate) fn parse_id(text: &str, field: &str) -> Result<Id, ApiError> {
    text.parse()
        .map_err(|e: perf_core::Error| ApiError::bad_request(e.to_string()).with_field(field))
}
