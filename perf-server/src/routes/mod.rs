//! Route handlers: each parses the request, calls one API, maps the result to JSON.

pub(crate) mod database;
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

/// Registers every route.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::health)
        .service(health::ready)
        .service(prometheus::metrics)
        .service(openapi::openapi_json)
        .service(host::summary)
        .service(host::cpu)
        .service(host::memory)
        .service(host::network)
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
        .service(recommendations::recommendations)
        .service(snapshots::create)
        .service(snapshots::list)
        .service(snapshots::get)
        .service(snapshots::delete)
        // `history` before `{id}`, so it is not read as an id.
        .service(tests::history)
        .service(tests::start)
        .service(tests::show)
        .service(tests::results)
        .service(tests::cancel);
}
