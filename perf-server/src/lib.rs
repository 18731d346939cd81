//! # perf-server
//!
//! The perf toolkit over HTTP and the `perf-server` binary. This crate owns
//! what only a server has: HTTP, auth, configuration, persistence and the
//! lifetime of background tasks. Algorithms live in the library crates.
//!
//! Endpoints: `/health`, `/ready`, `/metrics` (Prometheus), `/openapi.json`,
//! and under `/performance`: `metrics` (+ `/cpu`, `/memory`, `/network`, each
//! with `?window=60s` for a series) and `metrics/snapshots` (labelled copies
//! of the figures, persisted) and `tests` (load tests run for the caller:
//! start, status with live progress, results as JSON or CSV, history, cancel).
//!
//! Embedding the app in a test or another actix-web server:
//!
//! ```no_run
//! use std::{sync::Arc, time::Instant};
//! use perf_server::{app::{app, AppState}, config::ServerConfig, monitor::Monitor, store::SqliteStore};
//!
//! # async fn demo() -> Result<(), perf_server::Error> {
//! let config = Arc::new(ServerConfig::default());
//! let store: Arc<dyn perf_server::store::Store> = Arc::new(SqliteStore::open(&config.sqlite_path()).await?);
//! let (monitor, _sampler) = Monitor::start(config.sample_interval.as_duration(), config.sample_capacity())?;
//! let tests = perf_server::test_runner::TestRunner::new(store.clone(), tokio::runtime::Handle::current(), Default::default());
//! let state = actix_web::web::Data::new(AppState::builder(store, monitor, tests).build());
//! let server = actix_web::HttpServer::new(move || app(state.clone(), Arc::clone(&config))).bind("127.0.0.1:0")?;
//! # Ok(())
//! # }
//! ```

mod api_error;
pub mod app;
mod auth;
mod body;
mod cli;
pub mod config;
pub mod database;
mod db_advise;
mod error;
mod events;
mod guard;
mod load_test;
pub mod memory;
pub mod monitor;
mod pipeline;
mod recommendations;
mod retention;
mod routes;
mod scaling;
mod server;
pub mod store;
mod telemetry;
pub mod test_runner;
mod worker_client;

pub use api_error::ApiError;
pub use cli::main;
pub use error::{Error, Result};
pub use routes::openapi::ApiDoc;
