//! The application state a server builds from its configuration, in the
//! test's process: for tests that call the app without a socket.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use actix_web::web;
use perf_server::app::AppState;
use perf_server::config::ServerConfig;
use perf_server::monitor::Monitor;
use perf_server::store::Store;
use perf_server::test_runner::{RunnerSettings, TestRunner};

/// The state over `store` as `config` says, with load tests run on the
/// test's runtime as `settings` says. The monitor samples for the test's
/// lifetime.
pub(crate) fn app_state(
    config: &ServerConfig,
    store: Arc<dyn Store>,
    settings: RunnerSettings,
) -> web::Data<AppState> {
    config.validate().unwrap();
    let memory =
        perf_server::memory::MemoryWatch::new(config.memory_budget, config.leak_detection).unwrap();
    let (monitor, sampler) = Monitor::start_with_memory(
        config.sample_interval.as_duration(),
        config.sample_capacity(),
        Arc::new(memory),
    )
    .unwrap();
    std::mem::forget(sampler);
    let tests = TestRunner::new(
        Arc::clone(&store),
        tokio::runtime::Handle::current(),
        settings,
    );
    monitor.memory().watch_cache(tests.finished_cache());
    let database = config
        .analyzed_database()
        .map(|url| Arc::new(perf_server::database::DatabaseMonitor::new(url).unwrap()));
    web::Data::new(
        AppState::builder(store, monitor, tests)
            .database(database)
            .build(),
    )
}
