//! Starting the real `perf-server` binary for tests.
#![allow(dead_code, clippy::unwrap_used)]

pub(crate) mod state;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running perf-server process; killed on drop.
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `perf-server serve` with `args` on a free port and waits until it listens.
    pub(crate) fn start(data_dir: &Path, args: &[&str]) -> Self {
        Self::try_start(data_dir, args).unwrap()
    }

    pub(crate) fn try_start(data_dir: &Path, args: &[&str]) -> Result<Self, String> {
        Self::try_start_in(data_dir, args, &[])
    }

    /// Starts it as [`ServerProcess::start`] does, inside the cgroups whose
    /// `cgroup.procs` files are given (it joins them before it execs).
    pub(crate) fn try_start_in(
        data_dir: &Path,
        args: &[&str],
        cgroup_procs: &[std::path::PathBuf],
    ) -> Result<Self, String> {
        let mut command = if cgroup_procs.is_empty() {
            Command::new(env!("CARGO_BIN_EXE_perf-server"))
        } else {
            let mut sh = Command::new("sh");
            let joins: String = cgroup_procs
                .iter()
                .map(|p| format!("echo $$ > '{}' || exit 97; ", p.display()))
                .collect();
            sh.arg("-c")
                .arg(format!("{joins}exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_perf-server"));
            sh
        };
        let mut child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("PERF_LISTEN", "127.0.0.1:0")
            .env("PERF_SAMPLE_INTERVAL", "200ms")
            .env_remove("PERF_API_TOKEN")
            .env_remove("PERF_DATABASE_URL")
            .env("PERF_LOG_FORMAT", "text")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Ok(Self {
                child,
                addr: addr.parse().map_err(|e| format!("{addr}: {e}"))?,
                log,
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map_err(|e| e.to_string())?;
                std::thread::sleep(Duration::from_millis(100));
                Err(format!(
                    "server did not start ({status}): {}",
                    log.lock().unwrap().join("\n")
                ))
            }
        }
    }

    pub(crate) fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends `body` as JSON with `method` to `path`.
    pub(crate) fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> testkit::http::Response {
        testkit::http::send(
            self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            body,
        )
        .unwrap()
    }

    /// Sends a signal through `kill`.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metric names a PromQL expression reads (not its functions,
/// aggregations, keywords, label names or values, or durations).
pub(crate) fn promql_metric_names(expr: &str) -> Vec<String> {
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["bool", "and", "or", "unless", "offset"];
    let bytes = expr.as_bytes();
    // Past the `close` that ends what starts at `from`, stepping over
    // quoted strings (a label value may hold `}`).
    let skip_to = |from: usize, close: u8| {
        let mut j = from + 1;
        let mut quote = None;
        while j < bytes.len() {
            match (quote, bytes[j]) {
                (Some(q), b'\\') if q != b'`' => j += 1,
                (Some(q), b) if b == q => quote = None,
                (None, b'"' | b'\'' | b'`') if close != bytes[from] => quote = Some(bytes[j]),
                (None, b) if b == close => return j + 1,
                _ => {}
            }
            j += 1;
        }
        bytes.len()
    };
    let is_start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b':';
    let is_part = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' | b'`' => i = skip_to(i, bytes[i]),
            b'{' => i = skip_to(i, b'}'),
            b'[' => i = skip_to(i, b']'),
            b if is_start(b) && (i == 0 || !(is_part(bytes[i - 1]) || bytes[i - 1] == b'.')) => {
                let end = (i..bytes.len())
                    .find(|&j| !is_part(bytes[j]))
                    .unwrap_or(bytes.len());
                let name = &expr[i..end];
                let next = expr[end..].trim_start();
                if GROUPING.contains(&name) && next.starts_with('(') {
                    i = expr.len() - next.len();
                    i = skip_to(i, b')');
                    continue;
                }
                if !(next.starts_with('(')
                    || AGGREGATIONS.contains(&name)
                    || GROUPING.contains(&name)
                    || KEYWORDS.contains(&name)
                    || name.eq_ignore_ascii_case("inf")
                    || name.eq_ignore_ascii_case("nan"))
                {
                    names.push(name.to_owned());
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    names
}

/// A `scaling` section: python's http.server instances from `base_port`,
/// scaled on the running load tests' rps against `per_replica`.
pub(crate) fn local_scaling(min: u32, max: u32, per_replica: u32, base_port: u16) -> String {
    format!(
        r#"scaling:
  period_s: 1
  policy:
    min_replicas: {min}
    max_replicas: {max}
    metrics: [{{name: rps, kind: external, target: {{average_value: {per_replica}}}}}]
  manager:
    local:
      command: [python3, -m, http.server, "{{port}}", --bind, 127.0.0.1]
      base_port: {base_port}
      health_path: /
      drain_timeout_s: 2
  source:
    load_test: {{metric: rps}}
"#
    )
}
