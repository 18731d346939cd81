//! Running perf-server: open the store, start the sampler, serve until SIGINT
//! or SIGTERM, let in-flight requests finish, then flush and close.

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpServer, web};

use crate::Result;
use crate::app::{AppState, app};
use crate::config::ServerConfig;
use crate::database::DatabaseMonitor;
use crate::memory::MemoryWatch;
use crate::monitor::Monitor;
use crate::store::{PostgresStore, SqliteStore, Store};
use crate::test_runner::{TestRunner, Workers};

/// Opens the store the configuration names: PostgreSQL when `database_url` is
/// set, otherwise the SQLite file under `data_dir`.
pub async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>> {
    Ok(match &config.database_url {
        Some(url) => Arc::new(PostgresStore::open(url, config.database_pool_size).await?),
        None => Arc::new(SqliteStore::open(&config.sqlite_path()).await?),
    })
}

/// Serves until a shutdown signal, then stops cleanly.
pub async fn run(config: ServerConfig) -> Result<()> {
    config.validate()?;
    let store = open_store(&config).await?;
    let interrupted = store.interrupt_unfinished().await?;
    if interrupted > 0 {
        tracing::warn!(
            count = interrupted,
            "load tests left queued or running by the previous process are now `interrupted`"
        );
    }
    // Load tests run on their own runtime, away from the HTTP workers.
    let load_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("perf-load")
        .enable_all()
        .build()?;
    let policy = config
        .target_policy()
        .map_err(|message| crate::Error::Config {
            field: "target_allowlist".to_owned(),
            message,
        })?;
    let tests = TestRunner::with_workers(
        Arc::clone(&store),
        load_runtime.handle().clone(),
        config.test_limits,
        policy,
        config.max_concurrent_tests,
        Workers {
            urls: config.load_workers.clone(),
            service: config.load_worker_service.clone(),
            token: config
                .worker_token
                .clone()
                .or_else(|| config.api_token.clone()),
        },
    );
    if config.memory_tuning != perf_memory::MemoryTuning::default() {
        config
            .memory_tuning
            .apply()
            .map_err(|e| crate::Error::Config {
                field: "memory_tuning".to_owned(),
                message: e.to_string(),
            })?;
    }
    let memory = Arc::new(
        MemoryWatch::new(config.memory_budget, config.leak_detection).map_err(|e| {
            crate::Error::Config {
                field: "memory_budget".to_owned(),
                message: e.to_string(),
            }
        })?,
    );
    let (monitor, sampler) = Monitor::start_with_memory(
        config.sample_interval.as_duration(),
        config.sample_capacity(),
        memory,
    )?;
    let database = match config.analyzed_database() {
        Some(url) => Some(Arc::new(DatabaseMonitor::new(url).map_err(|e| {
            crate::Error::Config {
                field: "analyze_database_url".to_owned(),
                message: e.to_string(),
            }
        })?)),
        None => None,
    };
    let finished = tests.finished_cache().clone();
    monitor
        .memory()
        .guard()
        .add_reliever("finished_tests", Box::new(move || finished.shrink_to(0.5)));
    let state = web::Data::new(AppState {
        store: Arc::clone(&store),
        monitor,
        started: Instant::now(),
        tests: Arc::clone(&tests),
        database,
    });
    let app_config = Arc::new(config.clone());
    let mut server = HttpServer::new(move || app(state.clone(), Arc::clone(&app_config)))
        .shutdown_timeout(config.shutdown_timeout.as_duration().as_secs())
        .bind(config.listen)?;
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    for addr in server.addrs() {
        tracing::info!(store = store.backend(), "listening on http://{addr}");
    }
    server.run().await?;
    tracing::info!(
        "shutting down: in-flight requests finished, stopping load tests and flushing state"
    );
    tests.shutdown().await;
    load_runtime.shutdown_background();
    sampler.stop().await;
    store.close().await?;
    tracing::info!("stopped");
    Ok(())
}
