//! The `perf-server` binary: `perf-server [serve]` runs the API,
//! `perf-server openapi` prints its OpenAPI document.

use std::process::ExitCode;

use clap::Parser;
use perf_server::cli::{Cli, Command};
use perf_server::{Error, telemetry};
use utoipa::OpenApi;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options: heap profiling compiled in and enabled,
/// sampling (one sample per 512 KiB allocated on average) off until
/// `POST /performance/profiling/start {"kind": "heap"}` turns it on.
#[cfg(feature = "profiling")]
#[allow(unsafe_code)] // jemalloc reads its options from this exported symbol
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:false,lg_prof_sample:19\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, None | Some(Command::Serve(_))) {
        // The one-shot commands log warnings (PERF_LOG_LEVEL to change) to
        // stderr. Without a subscriber the libraries' warnings were lost,
        // and every span they open fell back to the `log` crate's path:
        // about 2 % of the HTTP/2 engine's CPU in h2's per-frame spans.
        let level = std::env::var("PERF_LOG_LEVEL").unwrap_or_else(|_| "warn".to_owned());
        telemetry::init_logging(perf_server::config::LogFormat::Text, &level);
    }
    let args = match cli.command {
        Some(Command::Openapi) => {
            let doc = perf_server::ApiDoc::openapi();
            return match doc.to_pretty_json() {
                Ok(json) => {
                    // `perf-server openapi | head` closes the pipe early: not an error.
                    perf_server::cli::print_out(&format!("{json}\n"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string(), 1),
            };
        }
        Some(Command::Run(args)) => return ExitCode::from(perf_server::load_test::run(&args)),
        Some(Command::Merge(args)) => return ExitCode::from(perf_server::load_test::merge(&args)),
        Some(Command::Scaling(perf_server::scaling::ScalingCommand::Simulate(args))) => {
            return ExitCode::from(perf_server::scaling::simulate(&args));
        }
        Some(Command::Db(perf_server::db_advise::DbCommand::Advise(args))) => {
            return ExitCode::from(perf_server::db_advise::run(&args));
        }
        Some(Command::Compare(args)) => {
            return ExitCode::from(perf_server::load_test::compare_reports(&args));
        }
        Some(Command::Serve(args)) => *args,
        None => cli.serve,
    };
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => return fail(&e.to_string(), 2),
    };
    if args.check {
        let cgroup = perf_core::cgroup::Cgroup::of_self().map(|c| c.sample());
        let budget = config.effective_memory_budget(cgroup.as_ref());
        perf_server::cli::print_out(&format!(
            "configuration is valid: listen {}, store {}, memory budget {}{}\n",
            config.listen,
            if config.database_url.is_some() {
                "postgres"
            } else {
                "sqlite"
            },
            budget.limit,
            if budget.limit_source == perf_memory::LimitSource::Cgroup {
                format!(
                    " (the cgroup's memory limit, under the configured {})",
                    config.memory_budget.limit
                )
            } else {
                String::new()
            }
        ));
        return ExitCode::SUCCESS;
    }
    telemetry::init_logging(config.log_format, &config.log_level);
    perf_server::guard::log_panics();
    let result = actix_web::rt::System::new().block_on(perf_server::server::run(config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Error::Config { .. }) => fail(&e.to_string(), 2),
        Err(e) => {
            tracing::error!(error = %e, "perf-server failed");
            fail(&e.to_string(), 1)
        }
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("perf-server: {message}");
    ExitCode::from(code)
}
