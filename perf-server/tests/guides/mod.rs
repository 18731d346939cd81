//! Every shell block of the four guides in `docs/` runs here as a reader
//! would paste it, in order, in one scratch directory per guide that looks
//! like a checkout (`examples/`, `target/release/perf-server`), with
//! `perf-server` on the PATH. A block fails the test when any command in it
//! fails (`set -euo pipefail`; `curl` fails on HTTP errors).
//!
//! What is adapted, and nothing else:
//! - the binary is the debug build cargo made for this test: `cargo build
//!   --release -p perf-server` does nothing, `cargo run --release -p
//!   perf-server [-- ARGS]` runs it, `cargo run [--release] -p perf-examples
//!   --example X` runs the example in the debug profile;
//! - port 8080 becomes a free port, and `127.0.0.1:5432` a throwaway
//!   PostgreSQL (with the guide's role `app` and database `shop`);
//! - `curl` retries while the server is still starting.
//!
//! An HTML comment before a block can say `<!-- check: server ARGS -->`
//! (a `perf-server serve ARGS` runs during the block, for blocks that assume
//! one is running), `<!-- check: exit 0 1 -->` (exit code 1 is an outcome,
//! e.g. a regression verdict between two runs on a noisy machine), `<!--
//! check: file NAME -->` (a YAML block the next blocks use, written to NAME),
//! `<!-- check: append NAME -->` (added to it) or `<!-- check: skip REASON
//! -->`; several are separated by `;`. Whatever a block leaves running (its
//! process group) gets SIGTERM when it ends, then SIGKILL after 30 s.
//! `PERF_GUIDES_VERBOSE=1` prints what every block printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One guide at a time: they start servers and loads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The longest a block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Block {
    line: usize,
    language: String,
    directive: Option<String>,
    code: String,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut directive = None;
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(block) = open.as_mut() {
            if line.trim_start().starts_with("```") {
                out.extend(open.take());
            } else {
                block.code.push_str(line);
                block.code.push('\n');
            }
        } else if let Some(fence) = line.trim_start().strip_prefix("```") {
            open = Some(Block {
                line: i + 1,
                language: fence.trim().to_owned(),
                directive: directive.take(),
                code: String::new(),
            });
        } else if let Some(d) = line
            .trim()
            .strip_prefix("<!-- check:")
            .and_then(|d| d.strip_suffix("-->"))
        {
            directive = Some(d.trim().to_owned());
        } else if !line.trim().is_empty() {
            directive = None;
        }
    }
    assert!(open.is_none(), "a block is not closed");
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What every block starts with.
fn prelude(repo: &Path) -> String {
    format!(
        r#"set -euo pipefail
cargo() {{
    case "$*" in
        "build --release -p perf-server") ;;
        "run --release -p perf-server") perf-server ;;
        "run --release -p perf-server -- "*) shift 5; perf-server "$@" ;;
        "run --release -p perf-examples --example "*|"run -p perf-examples --example "*)
            local example="" rest=()
            while [ $# -gt 0 ]; do
                case "$1" in
                    --example) example=$2; shift 2 ;;
                    --) shift; rest=("$@"); break ;;
                    *) shift ;;
                esac
            done
            command cargo run -q --manifest-path '{repo}/Cargo.toml' -p perf-examples --example "$example" -- "${{rest[@]}}" ;;
        *) echo "the guides check does not know: cargo $*" >&2; return 97 ;;
    esac
}}
curl() {{ command curl --fail-with-body --retry 60 --retry-connrefused --retry-delay 1 "$@"; }}
"#,
        repo = repo.display()
    )
}

fn run_guide(name: &str) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let repo = repo().canonicalize().unwrap();
    let text = std::fs::read_to_string(repo.join("docs").join(name)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    std::os::unix::fs::symlink(repo.join("examples"), dir.join("examples")).unwrap();
    std::fs::create_dir_all(dir.join("target/release")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_perf-server"));
    std::os::unix::fs::symlink(binary, dir.join("target/release/perf-server")).unwrap();
    std::os::unix::fs::symlink(binary, dir.join("bin/perf-server")).unwrap();
    let port = free_port().to_string();
    let needs_pg = text.contains("127.0.0.1:5432");
    let pg = needs_pg.then(|| {
        let pg = testkit::PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        pg.psql(
            "postgres",
            "CREATE ROLE app LOGIN; GRANT pg_read_all_stats TO app;",
        )
        .unwrap();
        pg.psql("postgres", "CREATE DATABASE shop OWNER app")
            .unwrap();
        pg.psql("shop", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
            .unwrap();
        pg
    });
    let adapt = |code: &str| {
        let code = code.replace("8080", &port);
        match &pg {
            Some(pg) => code.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", pg.port())),
            None => code,
        }
    };
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for (n, block) in blocks(&text).into_iter().enumerate() {
        let directives = block.directive.clone().unwrap_or_default();
        let directives: Vec<(&str, &str)> = directives
            .split(';')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| d.split_once(' ').unwrap_or((d, "")))
            .collect();
        if let Some((_, why)) = directives.iter().find(|(verb, _)| *verb == "skip") {
            assert!(
                !why.is_empty(),
                "{name}:{}: say why it is skipped",
                block.line
            );
            eprintln!("{name}:{}: skipped ({why})", block.line);
            continue;
        }
        if let Some((_, file)) = directives.iter().find(|(verb, _)| *verb == "file") {
            std::fs::write(dir.join(file.trim()), adapt(&block.code)).unwrap();
            continue;
        }
        if let Some((_, file)) = directives.iter().find(|(verb, _)| *verb == "append") {
            use std::io::Write;
            std::fs::File::options()
                .append(true)
                .open(dir.join(file.trim()))
                .and_then(|mut f| f.write_all(adapt(&block.code).as_bytes()))
                .unwrap_or_else(|e| panic!("{name}:{}: append to {file}: {e}", block.line));
            continue;
        }
        if block.language != "sh" {
            continue;
        }
        let mut script = prelude(&repo);
        for (verb, args) in &directives {
            match *verb {
                "server" => script.push_str(&format!(
                    "perf-server serve {args} > server-{n}.log 2>&1 &\ncurl -s localhost:8080/ready > /dev/null\n"
                )),
                "exit" => script.push_str(&format!(
                    "set +e\ntrap 'rc=$?; case \" {args} \" in *\" $rc \"*) ;; *) exit $rc ;; esac' ERR\n"
                )),
                other => panic!("{name}:{}: unknown check directive {other:?}", block.line),
            }
        }
        script.push_str(&block.code);
        let script = adapt(&script);
        let started = Instant::now();
        let (status, output) = run_block(dir, &script, &path, &format!("127.0.0.1:{port}"));
        eprintln!(
            "{name}:{}: exit {status} after {:.1} s",
            block.line,
            started.elapsed().as_secs_f64()
        );
        if std::env::var_os("PERF_GUIDES_VERBOSE").is_some() {
            eprintln!("{output}");
        }
        assert_eq!(
            status, 0,
            "{name}:{} failed:\n{}\n--- output:\n{output}",
            block.line, block.code
        );
        ran += 1;
    }
    assert!(ran > 0, "{name} has no shell block");
    drop(pg);
}

/// Runs `script` with bash in its own process group; stops what it left.
fn run_block(dir: &Path, script: &str, path: &str, listen: &str) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let log = dir.join("block.log");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("PERF_DATA_DIR", dir.join("data"))
        .env("PERF_LOG_FORMAT", "text")
        .env_remove("PERF_API_TOKEN")
        .env_remove("PERF_DATABASE_URL")
        .env("PERF_LISTEN", listen)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = format!("-{}", child.id());
    let deadline = Instant::now() + BLOCK_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // What the block started in the background: SIGTERM, and time to drain.
    let alive = || {
        Command::new("kill")
            .args(["-0", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if alive() {
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let until = Instant::now() + Duration::from_secs(30);
        while alive() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn load_testing_guide() {
    run_guide("load-testing.md");
}

#[test]
fn performance_tuning_guide() {
    run_guide("performance-tuning.md");
}

#[test]
fn scaling_guide() {
    run_guide("scaling.md");
}

#[test]
fn database_optimization_guide() {
    run_guide("database-optimization.md");
}
