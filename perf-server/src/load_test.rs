//! `perf-server run`: a load test from a scenario file on the command line,
//! with a live progress line, a summary table, the JSON report and the CSV
//! timeline. Exit code 0 when every threshold passes, 1 when one fails (or a
//! regression against the baseline), 2 on invalid input or nothing to judge,
//! 3 when interrupted, 4 when the comparison with the baseline cannot tell.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use perf_loadgen::{
    CompareOptions, Comparison, RunReport, ScenarioFile, Targets, compare, compare_to_history,
};

/// Options of `perf-server run`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Scenario file (YAML with `load_tests:`).
    pub file: PathBuf,
    /// Which scenario of the file (needed when it has several).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Base URL(s) replacing the scenario's target (repeat for several).
    #[arg(long)]
    pub target: Vec<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the timeline as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Worker threads of the load generator [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Spin this long (e.g. `20us`, at most `200us`) before a worker thread
    /// sleeps, so answers find it awake: more requests per second from a
    /// target on other cores, at the price of the generator's idle CPU.
    /// Off by default; do not use it when the target shares the generator's cores.
    #[arg(long, value_name = "DURATION")]
    pub busy_poll: Option<String>,
    /// Run only shard I of N (e.g. `2/7`): users and rates divided so the N
    /// shards add up to the scenario; join their reports with `perf-server merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// JSON report(s) of earlier runs to compare with: one is a pinned
    /// baseline, several a history. A regression makes the exit code 1.
    #[arg(long)]
    pub baseline: Vec<PathBuf>,
    /// Write a JUnit XML file: one test case per threshold and per regression check.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the self-contained HTML report (charts, thresholds, regression verdicts) here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Check the file (every scenario, or the one `--scenario` names) and
    /// exit without sending anything: 0 valid, 2 invalid.
    #[arg(long)]
    pub check: bool,
}

/// Options of `perf-server merge`.
#[derive(Debug, Clone, Args)]
pub(crate) struct MergeArgs {
    /// JSON reports of the shards of one run.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Write the merged JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Options of `perf-server compare`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CompareArgs {
    /// JSON report of the run to judge.
    pub current: PathBuf,
    /// JSON report(s) to judge it against: one pinned run, or several (a history).
    #[arg(long, required = true)]
    pub baseline: Vec<PathBuf>,
    /// Write a JUnit XML file of the checks.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

/// Judges a stored report against baseline reports: 0 unchanged or better,
/// 1 regressed, 2 invalid input, 4 inconclusive.
pub(crate) fn compare_reports(args: &CompareArgs) -> u8 {
    let loaded = read_report(&args.current).and_then(|current| {
        let baselines = args
            .baseline
            .iter()
            .map(|p| read_report(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((current, baselines))
    });
    let (current, baselines) = match loaded {
        Ok(x) => x,
        Err(message) => {
            eprintln!("perf-server compare: {message}");
            return INVALID;
        }
    };
    let comparison = if baselines.len() == 1 {
        Some(compare(&baselines[0], &current, &CompareOptions::default()))
    } else {
        compare_to_history(&baselines, &current, &CompareOptions::default())
    };
    let Some(comparison) = comparison else {
        eprintln!("perf-server compare: no baseline given");
        return INVALID;
    };
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, current.to_junit(Some(&comparison)))
    {
        eprintln!("perf-server compare: {}: {e}", path.display());
        return FAILED;
    }
    let _ = std::io::stdout()
        .lock()
        .write_all(comparison.table().as_bytes());
    if comparison.regressed {
        FAILED
    } else if comparison.inconclusive {
        INCONCLUSIVE
    } else {
        PASSED
    }
}

/// Merges shard reports; prints the summary; exit code as for `run`.
pub(crate) fn merge(args: &MergeArgs) -> u8 {
    let merged = args
        .reports
        .iter()
        .map(|path| read_report(path))
        .collect::<Result<Vec<_>, String>>()
        .and_then(|reports| RunReport::merge(&reports).map_err(|e| e.to_string()));
    let report = match merged {
        Ok(r) => r,
        Err(message) => {
            eprintln!("perf-server merge: {message}");
            return INVALID;
        }
    };
    if let Some(path) = &args.out {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))
            });
        if let Err(message) = written {
            eprintln!("perf-server merge: {message}");
            return FAILED;
        }
    }
    let _ = std::io::stdout()
        .lock()
        .write_all(report.summary().as_bytes());
    if report.passed { PASSED } else { FAILED }
}

/// Reads `I/N` (1-based).
fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("--shard {text:?}: write I/N with 1 <= I <= N, e.g. 2/7");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Exit codes of `perf-server run`.
pub(crate) const PASSED: u8 = 0;
/// A threshold failed, or a regression against the baseline.
pub(crate) const FAILED: u8 = 1;
/// The input was invalid, or the run has nothing to judge (no response came
/// back: the target is unreachable).
pub(crate) const INVALID: u8 = 2;
/// Stopped by Ctrl-C or SIGTERM: the reports written say `interrupted: true`.
pub(crate) const INTERRUPTED: u8 = 3;
/// Exit code: the comparison with the baseline cannot tell (a change within
/// what runs of this build vary by, or too few samples for a figure), and
/// nothing else failed.
pub(crate) const INCONCLUSIVE: u8 = 4;

/// Runs the load test; returns the exit code and prints errors to stderr.
pub(crate) fn run(args: &RunArgs) -> u8 {
    if args.check {
        return match check(args) {
            Ok(plans) => {
                for plan in plans {
                    crate::cli::print_out(&format!("{plan}\n"));
                }
                PASSED
            }
            Err(message) => {
                eprintln!("perf-server run: {message}");
                INVALID
            }
        };
    }
    match execute(args) {
        Ok((report, comparison)) => {
            let regressed = comparison.as_ref().is_some_and(|c| c.regressed);
            let inconclusive = comparison.as_ref().is_some_and(|c| c.inconclusive);
            if report.interrupted {
                eprintln!("perf-server run: interrupted; the reports cover what was measured");
                INTERRUPTED
            } else if let Some(reason) = &report.no_success {
                eprintln!("perf-server run: {reason}");
                INVALID
            } else if report.passed && !regressed && inconclusive {
                eprintln!(
                    "perf-server run: the comparison with the baseline is inconclusive (exit 4)"
                );
                INCONCLUSIVE
            } else if report.passed && !regressed {
                PASSED
            } else {
                FAILED
            }
        }
        Err((code, message)) => {
            eprintln!("perf-server run: {message}");
            code
        }
    }
}

/// Waits for Ctrl-C or SIGTERM; says which.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return "interrupted (Ctrl-C)",
                _ = term.recv() => return "interrupted (SIGTERM)",
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "interrupted (Ctrl-C)"
}

/// What `--check` prints: each scenario's plan, as the run would read it.
fn check(args: &RunArgs) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let mut file = ScenarioFile::from_yaml(&text).map_err(|e| e.to_string())?;
    file.resolve_paths(scenario_dir(&args.file));
    let names: Vec<String> = match &args.scenario {
        Some(name) => vec![name.clone()],
        None => file.load_tests.keys().cloned().collect(),
    };
    names
        .iter()
        .map(|name| {
            let mut scenario = file.get(name).map_err(|e| e.to_string())?.clone();
            if !args.target.is_empty() {
                scenario.target = Some(Targets::Many(args.target.clone()));
            }
            perf_loadgen::check(name, &scenario).map_err(|e| e.to_string())
        })
        .collect()
}

/// The directory a scenario file's relative paths start from: its own.
fn scenario_dir(file: &std::path::Path) -> &std::path::Path {
    file.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
}

fn execute(args: &RunArgs) -> Result<(RunReport, Option<Comparison>), (u8, String)> {
    let invalid = |m: String| (INVALID, m);
    let baselines = args
        .baseline
        .iter()
        .map(|p| read_report(p).map_err(invalid))
        .collect::<Result<Vec<_>, _>>()?;
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| invalid(format!("{}: {e}", args.file.display())))?;
    let mut file = ScenarioFile::from_yaml(&text).map_err(|e| invalid(e.to_string()))?;
    file.resolve_paths(scenario_dir(&args.file));
    let (name, scenario) = file.pick(args.scenario.as_deref()).map_err(|e| match e {
        perf_loadgen::Error::ScenarioNotNamed { available } => invalid(format!(
            "the file has several scenarios; pick one with --scenario ({available})"
        )),
        other => invalid(other.to_string()),
    })?;
    let (name, mut scenario) = (name.to_owned(), scenario.clone());
    if !args.target.is_empty() {
        scenario.target = Some(Targets::Many(args.target.clone()));
    }
    if let Some(shard) = &args.shard {
        let (i, n) = parse_shard(shard).map_err(invalid)?;
        let mut parts =
            perf_loadgen::split(&name, &scenario, n).map_err(|e| invalid(e.to_string()))?;
        scenario = parts.swap_remove(i as usize - 1);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        if threads == 0 {
            return Err(invalid("--threads must be at least 1".to_owned()));
        }
        runtime.worker_threads(threads);
    }
    if let Some(text) = &args.busy_poll {
        let budget =
            perf_core::parse_duration(text).map_err(|e| invalid(format!("--busy-poll: {e}")))?;
        let hook =
            perf_loadgen::busy_poll(budget).map_err(|e| invalid(format!("--busy-poll: {e}")))?;
        runtime.on_thread_park(hook);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| (FAILED, format!("runtime: {e}")))?;
    let report = runtime.block_on(async {
        let handle = perf_loadgen::start(&name, &scenario)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let cancel = handle.cancel_token();
        let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&interrupted);
        tokio::spawn(async move {
            let signal = stop_signal().await;
            eprintln!("\n{signal}: stopping and reporting what was measured");
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            cancel.cancel();
        });
        let mut live = handle.progress();
        let terminal = std::io::stderr().is_terminal();
        let printer = tokio::spawn(async move {
            while live.changed().await.is_ok() {
                let s = live.borrow().clone();
                let line = s.progress_line();
                if terminal {
                    // Cleared to the end: a shorter line leaves no tail of the last.
                    eprint!("\r{line}\x1b[K");
                } else if perf_core::num::saturating_u64(s.elapsed_s.round()).is_multiple_of(10)
                    || s.finished
                {
                    eprintln!("{line}");
                }
            }
            if terminal {
                eprintln!();
            }
        });
        let mut report = handle.report().await.map_err(|e| (FAILED, e.to_string()))?;
        let _ = printer.await;
        report.interrupted = interrupted.load(std::sync::atomic::Ordering::SeqCst);
        Ok::<_, (u8, String)>(report)
    })?;
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&report).map_err(|e| (FAILED, e.to_string()))?;
        std::fs::write(path, json).map_err(|e| (FAILED, format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, report.timeline_csv())
            .map_err(|e| (FAILED, format!("{}: {e}", path.display())))?;
    }
    let comparison = match baselines.len() {
        0 => None,
        1 => Some(compare(&baselines[0], &report, &CompareOptions::default())),
        _ => compare_to_history(&baselines, &report, &CompareOptions::default()),
    };
    if let Some(path) = &args.html {
        std::fs::write(path, report.to_html(comparison.as_ref()))
            .map_err(|e| (FAILED, format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report.to_junit(comparison.as_ref()))
            .map_err(|e| (FAILED, format!("{}: {e}", path.display())))?;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.summary().as_bytes());
    if let Some(c) = &comparison {
        let _ = out.write_all(c.table().as_bytes());
    }
    Ok((report, comparison))
}

fn read_report(path: &std::path::Path) -> Result<RunReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a run report: {e}", path.display()))
}
