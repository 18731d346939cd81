//! Command line: `perf-server [serve]` (the default), `perf-server run` (a
//! load test from a scenario file) and `perf-server openapi`.
//! Every `serve` flag can also come from a `PERF_*` environment variable;
//! flags and variables override the configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};
use perf_core::{ByteSize, HumanDuration};

use crate::Result;
use crate::config::{LogFormat, ServerConfig};

/// perf-server: the perf toolkit over HTTP.
#[derive(Debug, Parser)]
#[command(
    name = "perf-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, also accepted without the subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the API (the default).
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document and exit.
    Openapi,
    /// Run a load test from a scenario file and print its report.
    Run(crate::load_test::RunArgs),
    /// Merge the JSON reports of the shards of one run into one report.
    Merge(crate::load_test::MergeArgs),
    /// Judge a run's JSON report against a baseline report or a history of them.
    Compare(crate::load_test::CompareArgs),
    /// Scaling tools: `simulate` a policy on a recorded load.
    #[command(subcommand)]
    Scaling(crate::scaling::ScalingCommand),
    /// Database tools: `advise` indexes for a workload (a CI gate with `--fail-when-found`).
    #[command(subcommand)]
    Db(crate::db_advise::DbCommand),
}

/// Options of `perf-server serve`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ServeArgs {
    /// YAML configuration file.
    #[arg(long, short = 'c', env = "PERF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "PERF_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded SQLite store [default: ./perf-data].
    #[arg(long, env = "PERF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL of a shared store (instead of SQLite).
    #[arg(long, env = "PERF_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL to report on at /performance/metrics/database [default: --database-url].
    #[arg(long, env = "PERF_ANALYZE_DATABASE_URL", hide_env_values = true)]
    pub analyze_database_url: Option<String>,
    /// Connections of the PostgreSQL store's pool [default: 8].
    #[arg(long, env = "PERF_DATABASE_POOL_SIZE")]
    pub database_pool_size: Option<usize>,
    /// Bearer token required by POST, PUT, PATCH and DELETE.
    #[arg(long, env = "PERF_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Allow a non-loopback address without an API token.
    #[arg(long, env = "PERF_INSECURE_NO_AUTH", action = ArgAction::SetTrue)]
    pub insecure_no_auth: bool,
    /// Log format.
    #[arg(long, env = "PERF_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `perf_server=debug,info`.
    #[arg(long, env = "PERF_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Largest request body, e.g. `1MiB`.
    #[arg(long, env = "PERF_BODY_LIMIT")]
    pub body_limit: Option<ByteSize>,
    /// Host sampling interval, e.g. `1s`.
    #[arg(long, env = "PERF_SAMPLE_INTERVAL")]
    pub sample_interval: Option<HumanDuration>,
    /// Sample history kept for `?window=`, e.g. `1h`.
    #[arg(long, env = "PERF_SAMPLE_HISTORY")]
    pub sample_history: Option<HumanDuration>,
    /// Time in-flight requests get to finish on shutdown, e.g. `30s`.
    #[arg(long, env = "PERF_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<HumanDuration>,
    /// On SIGTERM, answer 503 on /ready this long before stopping [default: 0s].
    #[arg(long, env = "PERF_DRAIN_DELAY")]
    pub drain_delay: Option<HumanDuration>,
    /// HTTP worker threads [default: one per usable core, at most the CPU quota].
    #[arg(long, env = "PERF_WORKERS")]
    pub workers: Option<usize>,
    /// Check the configuration and exit (0 valid, 2 invalid) without serving.
    #[arg(long)]
    pub check: bool,
}

impl ServeArgs {
    /// The effective configuration: defaults, then the file, then these
    /// options; validated.
    pub(crate) fn resolve(&self) -> Result<ServerConfig> {
        let mut c = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        macro_rules! take {
            ($($field:ident),*) => {
                $(if let Some(v) = &self.$field { c.$field = v.clone().into(); })*
            };
        }
        take!(
            listen,
            data_dir,
            database_pool_size,
            log_format,
            log_level,
            body_limit,
            sample_interval,
            sample_history,
            shutdown_timeout,
            drain_delay
        );
        if self.database_url.is_some() {
            c.database_url.clone_from(&self.database_url);
        }
        if self.analyze_database_url.is_some() {
            c.analyze_database_url
                .clone_from(&self.analyze_database_url);
        }
        if self.api_token.is_some() {
            c.api_token.clone_from(&self.api_token);
        }
        if self.workers.is_some() {
            c.workers = self.workers;
        }
        c.insecure_no_auth |= self.insecure_no_auth;
        c.validate()?;
        Ok(c)
    }
}

/// Writes `text` to standard output, ignoring a closed pipe (`| head`):
/// `println!` panics on one.
pub(crate) fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The `perf-server` binary's work: parse the command line, run the
/// command, and say how it ended (0 success, 1 failure, 2 invalid input,
/// the load commands' own codes).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, None | Some(Command::Serve(_))) {
        // The one-shot commands log warnings (PERF_LOG_LEVEL to change) to
        // stderr. Without a subscriber the libraries' warnings were lost,
        // and every span they open fell back to the `log` crate's path:
        // about 2 % of the HTTP/2 engine's CPU in h2's per-frame spans.
        let level = std::env::var("PERF_LOG_LEVEL").unwrap_or_else(|_| "warn".to_owned());
        crate::telemetry::init_logging(LogFormat::Text, &level);
    }
    let args = match cli.command {
        Some(Command::Openapi) => {
            let doc = <crate::ApiDoc as utoipa::OpenApi>::openapi();
            return match doc.to_pretty_json() {
                Ok(json) => {
                    // `perf-server openapi | head` closes the pipe early: not an error.
                    print_out(&format!("{json}\n"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string(), 1),
            };
        }
        Some(Command::Run(args)) => return ExitCode::from(crate::load_test::run(&args)),
        Some(Command::Merge(args)) => return ExitCode::from(crate::load_test::merge(&args)),
        Some(Command::Scaling(crate::scaling::ScalingCommand::Simulate(args))) => {
            return ExitCode::from(crate::scaling::simulate(&args));
        }
        Some(Command::Db(crate::db_advise::DbCommand::Advise(args))) => {
            return ExitCode::from(crate::db_advise::run(&args));
        }
        Some(Command::Compare(args)) => {
            return ExitCode::from(crate::load_test::compare_reports(&args));
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
        print_out(&format!(
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
    crate::telemetry::init_logging(config.log_format, &config.log_level);
    crate::guard::log_panics();
    let result = actix_web::rt::System::new().block_on(crate::server::run(config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ crate::Error::Config { .. }) => fail(&e.to_string(), 2),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_serve_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("perf.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:9001\nbody_limit: 2MiB\nlog_format: json\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "perf-server",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9002",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.listen.port(), 9002);
        assert_eq!(c.body_limit.bytes(), 2 << 20);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_flag_values_quote_the_text() {
        let err = Cli::try_parse_from(["perf-server", "serve", "--body-limit", "12 parsecs"])
            .unwrap_err();
        assert!(err.to_string().contains("12 parsecs"), "{err}");
    }

    #[test]
    fn non_loopback_without_token_is_refused() {
        let cli =
            Cli::try_parse_from(["perf-server", "serve", "--listen", "0.0.0.0:8080"]).unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve expected")
        };
        let err = args.resolve().unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }
}
