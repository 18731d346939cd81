//! `perf-server db advise`: index advice for a database from the command
//! line, as a CI gate. The workload comes from pg_stat_statements (or a
//! file of statements); the advice is one index set for the whole workload,
//! or per statement with `--per-statement`. Exit codes: 0 nothing to add,
//! 1 an index is advised and `--fail-when-found` was given, 2 invalid input
//! or the database could not be read.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use perf_db::{AdviceOptions, SlowQueryFilter, WorkloadAdvice, WorkloadOptions, WorkloadStatement};

/// `perf-server db` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum DbCommand {
    /// Advise indexes for a database's workload and print the advice.
    Advise(AdviseArgs),
}

/// Options of `perf-server db advise`.
#[derive(Debug, Clone, Args)]
pub(crate) struct AdviseArgs {
    /// PostgreSQL to advise on (hypopg must be installable there).
    #[arg(long, env = "PERF_ANALYZE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The statements: a JSON array of `{"query", "calls", "total_time_ms"}`
    /// [default: the top statements of pg_stat_statements].
    #[arg(long)]
    pub statements: Option<PathBuf>,
    /// Hours the statements file's calls and time cover [default: 1].
    #[arg(long)]
    pub window_hours: Option<f64>,
    /// How many of pg_stat_statements' top statements (by total time).
    #[arg(long, default_value_t = 200)]
    pub limit: i64,
    /// Advise statement by statement instead of one set for the workload.
    #[arg(long)]
    pub per_statement: bool,
    /// Keep an index only when it cuts a statement's planned cost by this fraction.
    #[arg(long, default_value_t = 0.5)]
    pub min_saving: f64,
    /// Leave out statements whose planned cost is below this.
    #[arg(long, default_value_t = 0.0)]
    pub min_cost: f64,
    /// An index must save this many ms per hour beyond its write cost.
    #[arg(long, default_value_t = 1000.0)]
    pub min_gain_ms_per_hour: f64,
    /// At most this many new indexes.
    #[arg(long)]
    pub max_indexes: Option<usize>,
    /// At most this many bytes of new indexes.
    #[arg(long)]
    pub max_total_bytes: Option<u64>,
    /// At most this many plans for the selection (bounds its time on a
    /// large workload; the answer then says it stopped early).
    #[arg(long)]
    pub max_plans: Option<u64>,
    /// Milliseconds one index entry costs a write.
    #[arg(long, default_value_t = 0.02)]
    pub write_cost_ms: f64,
    /// Only these tables (repeat the flag).
    #[arg(long = "include-table")]
    pub include_tables: Vec<String>,
    /// Never these tables (repeat the flag).
    #[arg(long = "exclude-table")]
    pub exclude_tables: Vec<String>,
    /// Print plain `CREATE INDEX` (blocks writes while it builds) instead of `CONCURRENTLY`.
    #[arg(long)]
    pub not_concurrently: bool,
    /// ANALYZE tables whose statistics are stale first.
    #[arg(long)]
    pub analyze: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when an index is advised.
    #[arg(long)]
    pub fail_when_found: bool,
}

/// The most a statements file may hold.
const MAX_STATEMENTS_FILE: u64 = 64 << 20;

fn read_statements(path: &std::path::Path) -> Result<Vec<WorkloadStatement>, String> {
    use std::io::Read;
    // Read at most one byte past the limit: a file's size can lie (a device,
    // a pipe, a file that grows), the count of bytes read cannot.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_STATEMENTS_FILE + 1).read_to_string(&mut text))
        .map_err(|e| format!("--statements {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_STATEMENTS_FILE {
        return Err(format!(
            "--statements {}: larger than the {MAX_STATEMENTS_FILE} bytes allowed",
            path.display()
        ));
    }
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "--statements {}: not a JSON array of {{\"query\", \"calls\", \"total_time_ms\"}} (line {}, column {}: {})",
            path.display(),
            e.line(),
            e.column(),
            json_problem(&e)
        )
    })
}

/// What went wrong in a JSON file, without echoing its contents.
fn json_problem(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "cannot be read",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "wrong field or type",
        serde_json::error::Category::Eof => "ends early",
    }
}

fn options(args: &AdviseArgs) -> perf_db::Result<WorkloadOptions> {
    let advice = AdviceOptions::builder()
        .min_saving(args.min_saving)
        .min_cost(args.min_cost)
        .include_tables(args.include_tables.clone())
        .exclude_tables(args.exclude_tables.clone())
        .concurrently(!args.not_concurrently)
        .analyze_stale(args.analyze)
        .build()?;
    WorkloadOptions::builder()
        .advice(advice)
        .window_hours(args.window_hours.unwrap_or(1.0))
        .max_indexes(args.max_indexes)
        .max_plans(args.max_plans)
        .max_total_bytes(args.max_total_bytes)
        .write_cost_ms(args.write_cost_ms)
        .min_gain_ms_per_hour(args.min_gain_ms_per_hour)
        .build()
}

/// The advice as text.
fn render(advice: &WorkloadAdvice) -> String {
    let mut out = String::new();
    if advice.indexes.is_empty() {
        out.push_str("no index to add\n");
    }
    for w in &advice.indexes {
        out.push_str(&format!(
            "{};\n  saves {:.1} s/h over {} statement(s), writes cost {:.1} s/h, about {} KiB{}\n",
            w.index.create_statement,
            w.saved_ms_per_hour / 1e3,
            w.index.helps.len(),
            w.write_penalty_ms_per_hour / 1e3,
            w.estimated_bytes / 1024,
            if w.breaks_hot_updates {
                ", indexes an updated column (HOT updates stop)"
            } else {
                ""
            }
        ));
        for g in w.index.helps.iter().take(5) {
            out.push_str(&format!(
                "    {:.1} -> {:.1}  {}\n",
                g.cost_before.unwrap_or(f64::NAN),
                g.cost_after.unwrap_or(f64::NAN),
                g.query.chars().take(100).collect::<String>()
            ));
        }
    }
    render_skipped(&mut out, &advice.skipped);
    if let Some(why) = &advice.stopped_early {
        out.push_str(&format!("stopped early: {why}\n"));
    }
    out.push_str(&format!(
        "{} statement(s), {} helpable, {} served; {} index(es), {} KiB, {:.1} s/h saved, {} candidate(s) rejected; {} plans in {:.0} ms\n",
        advice.statements,
        advice.statements_helpable,
        advice.statements_served,
        advice.indexes.len(),
        advice.total_bytes / 1024,
        advice.saved_ms_per_hour / 1e3,
        advice.rejected.len(),
        advice.plans,
        advice.elapsed_ms
    ));
    out
}

/// Per-statement advice as text.
fn render_per_statement(advice: &perf_db::Advice) -> String {
    let mut out = String::new();
    for a in &advice.indexes {
        out.push_str(&format!(
            "{};  -- helps {} statement(s)\n",
            a.create_statement,
            a.helps.len()
        ));
    }
    render_skipped(&mut out, &advice.skipped);
    out.push_str(&format!(
        "{} index(es) advised statement by statement\n",
        advice.indexes.len()
    ));
    out
}

/// The statements that could not be advised on, one line each.
fn render_skipped(out: &mut String, skipped: &[perf_db::SkippedStatement]) {
    for s in skipped {
        out.push_str(&format!(
            "skipped: {} -- {}\n",
            s.query.chars().take(100).collect::<String>(),
            s.reason
        ));
    }
}

async fn advise(args: &AdviseArgs) -> Result<Answer, String> {
    let options = options(args).map_err(|e| e.to_string())?;
    if args.limit < 1 || args.limit > 100_000 {
        return Err(format!(
            "--limit must be between 1 and 100000, got {}",
            args.limit
        ));
    }
    let file = match &args.statements {
        Some(path) => Some(read_statements(path)?),
        None => None,
    };
    let (client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to --database-url: {e}"))?;
    actix_web::rt::spawn(connection);
    let (statements, options) = match file {
        Some(statements) => (statements, options),
        None => {
            let filter = SlowQueryFilter::builder()
                .limit(args.limit)
                .build()
                .map_err(|e| format!("--{e}"))?;
            let observed = perf_db::observed_workload(&client, &filter)
                .await
                .map_err(|e| e.to_string())?;
            let options = observed.options(options);
            (observed.statements, options)
        }
    };
    if args.per_statement {
        let queries: Vec<String> = statements.into_iter().map(|s| s.query).collect();
        let advice = perf_db::advise_indexes(&client, &queries, &options.advice)
            .await
            .map_err(|e| e.to_string())?;
        let found = !advice.indexes.is_empty();
        let text = if args.json {
            serde_json::to_string_pretty(&advice).map_err(|e| e.to_string())? + "\n"
        } else {
            render_per_statement(&advice)
        };
        return Ok(Answer {
            text,
            found,
            stopped_early: None,
        });
    }
    let advice = perf_db::advise_workload(&client, &statements, &options)
        .await
        .map_err(|e| e.to_string())?;
    let text = if args.json {
        serde_json::to_string_pretty(&advice).map_err(|e| e.to_string())? + "\n"
    } else {
        render(&advice)
    };
    Ok(Answer {
        text,
        found: !advice.indexes.is_empty(),
        stopped_early: advice.stopped_early,
    })
}

/// What `db advise` prints and what its exit code depends on.
struct Answer {
    text: String,
    /// An index is advised.
    found: bool,
    /// The selection did not finish (why).
    stopped_early: Option<String>,
}

/// Runs `perf-server db advise` and returns the exit code.
pub(crate) fn run(args: &AdviseArgs) -> u8 {
    let result = actix_web::rt::System::new().block_on(advise(args));
    match result {
        Ok(answer) => {
            crate::cli::print_out(&answer.text);
            match (args.fail_when_found, answer.found, answer.stopped_early) {
                (true, true, _) => 1,
                // Nothing found by a selection that did not finish: the
                // gate cannot tell that nothing is worth an index.
                (true, false, Some(why)) => {
                    eprintln!(
                        "perf-server db advise: cannot tell, {why}; raise --max-plans or drop it"
                    );
                    2
                }
                _ => 0,
            }
        }
        Err(e) => {
            eprintln!("perf-server db advise: {e}");
            2
        }
    }
}
