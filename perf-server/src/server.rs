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
    let scaling = match &config.scaling {
        Some(setup) => Some(Arc::new(
            crate::scaling::Scaling::start(setup, Arc::clone(&store), Arc::clone(&tests)).await?,
        )),
        None => None,
    };
    monitor.memory().watch_cache(tests.finished_cache());
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = web::Data::new(AppState {
        store: Arc::clone(&store),
        monitor,
        started: Instant::now(),
        tests: Arc::clone(&tests),
        database,
        scaling: scaling.clone(),
        draining: Arc::clone(&draining),
    });
    let app_config = Arc::new(config.clone());
    let mut server = HttpServer::new(move || app(state.clone(), Arc::clone(&app_config)))
        .shutdown_timeout(config.shutdown_timeout.as_duration().as_secs())
        .disable_signals()
        .bind(config.listen)?;
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    for addr in server.addrs() {
        tracing::info!(store = store.backend(), "listening on http://{addr}");
    }
    let running = server.run();
    let handle = running.handle();
    let drain_delay = config.drain_delay.as_duration();
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        // Report not-ready first, keep serving while load balancers and
        // mesh sidecars notice, then stop and let in-flight requests finish.
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            drain_delay_s = drain_delay.as_secs_f64(),
            "{signal} received: /ready now answers 503; draining, then graceful shutdown"
        );
        tokio::time::sleep(drain_delay).await;
        handle.stop(true).await;
    });
    running.await?;
    if let Some(scaling) = &scaling {
        scaling.shutdown().await;
    }
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

/// Waits for SIGINT or SIGTERM; says which.
async fn shutdown_signal() -> &'static str {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return "SIGINT";
                }
            };
        tokio::select! {
            _ = interrupt => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        "SIGINT"
    }
}
