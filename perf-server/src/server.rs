//! Running perf-server: open the store, start the sampler, serve until SIGINT
//! or SIGTERM, let in-flight requests finish, then flush and close.

use std::sync::Arc;

use actix_web::{HttpServer, web};

use crate::Result;
use crate::app::{AppState, app};
use crate::config::ServerConfig;
use crate::database::DatabaseMonitor;
use crate::memory::MemoryWatch;
use crate::monitor::Monitor;
use crate::store::{PostgresStore, SqliteStore, Store};
use crate::test_runner::TestRunner;

/// Opens the store the configuration names: PostgreSQL when `database_url` is
/// set, otherwise the SQLite file under `data_dir`.
pub(crate) async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>> {
    Ok(match &config.database_url {
        Some(url) => Arc::new(PostgresStore::open(url, config.database_pool_size).await?),
        None => Arc::new(SqliteStore::open(&config.sqlite_path()).await?),
    })
}

/// The load runtime, shut down in the background when dropped: dropping a
/// runtime inside async code panics ("Cannot drop a runtime in a context where
/// blocking is not allowed"), which an early error return once did.
struct LoadRuntime(Option<tokio::runtime::Runtime>);

impl LoadRuntime {
    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|r| r.handle().clone())
    }
}

impl Drop for LoadRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Binds `addr`, saying plainly when it is taken (a configuration error: exit 2).
pub(crate) fn bind(addr: std::net::SocketAddr) -> Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!("address {addr} is already in use"),
            std::io::ErrorKind::PermissionDenied => {
                format!("not allowed to listen on {addr} (a port below 1024 needs privileges)")
            }
            std::io::ErrorKind::AddrNotAvailable => {
                format!("address {addr} is not an address of this host")
            }
            _ => format!("cannot listen on {addr}: {e}"),
        };
        crate::Error::Config {
            field: "listen".to_owned(),
            message,
        }
    })
}

/// Serves until a shutdown signal, then stops cleanly.
pub(crate) async fn run(config: ServerConfig) -> Result<()> {
    config.validate()?;
    // Bind first: a busy port is the commonest first-hour error, and nothing
    // should be started (or need stopping) before it is known.
    let listener = bind(config.listen)?;
    if let Some(size) = config.socket_send_buffer {
        // Accepted connections inherit the listener's buffer sizes.
        socket2::SockRef::from(&listener)
            .set_send_buffer_size(usize::try_from(size.bytes()).unwrap_or(usize::MAX))
            .map_err(|e| crate::Error::Config {
                field: "socket_send_buffer".to_owned(),
                message: format!("the kernel refused it: {e}"),
            })?;
    }
    let store = open_store(&config).await?;
    // Load tests run on their own runtime, away from the HTTP workers.
    let load_runtime = LoadRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("perf-load")
            .enable_all()
            .build()?,
    ));
    let load_handle = load_runtime
        .handle()
        .ok_or_else(|| crate::Error::Io(std::io::Error::other("load runtime missing")))?;
    let tests = TestRunner::new(Arc::clone(&store), load_handle, config.runner_settings()?);
    let interrupted = tests.interrupt_abandoned().await?;
    if interrupted > 0 {
        tracing::warn!(
            count = interrupted,
            "load tests left queued or running by this instance's previous process, or by an instance that stopped, are now `interrupted`"
        );
    }
    if config.memory_tuning != perf_memory::MemoryTuning::default() {
        config
            .memory_tuning
            .apply()
            .map_err(|e| crate::Error::Config {
                field: "memory_tuning".to_owned(),
                message: e.to_string(),
            })?;
    }
    // In a container the cgroup's limits bound the budget and the workers.
    let cgroup = perf_core::cgroup::Cgroup::of_self().map(|c| c.sample());
    let budget = config.effective_memory_budget(cgroup.as_ref());
    if budget.limit_source == perf_memory::LimitSource::Cgroup {
        tracing::info!(
            limit = %budget.limit,
            configured = %config.memory_budget.limit,
            "the memory budget's limit is the cgroup's memory limit, lower than the configured one"
        );
    }
    let memory = Arc::new(
        MemoryWatch::new(budget, config.leak_detection).map_err(|e| crate::Error::Config {
            field: "memory_budget".to_owned(),
            message: e.to_string(),
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
    let streams = crate::events::StreamSlots::new(config.max_event_streams);
    let state = web::Data::new(
        AppState::builder(Arc::clone(&store), monitor, Arc::clone(&tests))
            .database(database)
            .scaling(scaling.clone())
            .draining(Arc::clone(&draining))
            .streams(Arc::clone(&streams))
            .build(),
    );
    let app_config = Arc::new(config.clone());
    let workers = config.workers.unwrap_or_else(|| {
        default_workers(
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            cgroup.as_ref().and_then(|c| c.cpu_quota_cores),
        )
    });
    tracing::info!(
        workers,
        cpu_quota_cores = cgroup.as_ref().and_then(|c| c.cpu_quota_cores),
        "HTTP workers"
    );
    let server = HttpServer::new(move || app(state.clone(), Arc::clone(&app_config)))
        .shutdown_timeout(config.shutdown_timeout.as_duration().as_secs())
        .disable_signals()
        .workers(workers)
        // Connections are capped well under the open-file limit: beyond the
        // cap new ones wait in the kernel's backlog instead of taking a file
        // each (at 20,000 the sampler once failed with EMFILE).
        .max_connections((config.max_connections / workers).max(1))
        .backlog(1024)
        .client_request_timeout(std::time::Duration::from_secs(5))
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        .listen(listener)?;
    for addr in server.addrs() {
        tracing::info!(store = store.backend(), "listening on http://{addr}");
    }
    let retention_stop = tokio_util::sync::CancellationToken::new();
    let retention = crate::retention::spawn(
        Arc::clone(&store),
        config.retention,
        std::time::Duration::from_secs(60),
        retention_stop.clone(),
    );
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
        // Event streams never end by themselves: end them, or the graceful
        // stop waits its whole timeout for them.
        streams.shut_down();
        handle.stop(true).await;
    });
    running.await?;
    retention_stop.cancel();
    let _ = retention.await;
    if let Some(scaling) = &scaling {
        scaling.shutdown().await;
    }
    tracing::info!(
        "shutting down: in-flight requests finished, stopping load tests and flushing state"
    );
    tests.shutdown().await;
    drop(load_runtime);
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

/// HTTP workers when none are configured: one per core the process may use,
/// and no more than its cgroup's CPU quota, rounded down (at least 1): a
/// quota of 1.5 cores gets 1 worker, as `available_parallelism` counts it
/// (`cores`); the quota read here holds even where that count does not.
fn default_workers(cores: usize, cpu_quota_cores: Option<f64>) -> usize {
    let by_quota = cpu_quota_cores
        .filter(|q| q.is_finite() && *q > 0.0)
        .map_or(usize::MAX, |q| {
            perf_core::num::saturating_usize(q.floor().clamp(1.0, 256.0))
        });
    cores.min(by_quota).clamp(1, 256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_follow_the_cpu_quota() {
        assert_eq!(default_workers(8, None), 8);
        assert_eq!(default_workers(8, Some(1.5)), 1);
        assert_eq!(default_workers(8, Some(2.5)), 2);
        assert_eq!(default_workers(8, Some(0.25)), 1);
        assert_eq!(default_workers(2, Some(16.0)), 2);
        assert_eq!(default_workers(4, Some(f64::NAN)), 4);
    }
}
