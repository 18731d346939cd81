//! The real `perf-server` binary over real sockets: durability across kill -9
//! on both stores, graceful shutdown, refusal to listen unprotected, and live
//! CPU figures under load.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "guides/mod.rs"]
mod guides;

use std::process::Command;
use std::time::{Duration, Instant};

use common::ServerProcess;
use serde_json::Value;
use testkit::http;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Creates snapshots, kills the server with SIGKILL right after the last 201,
/// restarts it on the same store and finds every one of them.
fn kill_nine_loses_nothing(data_dir: &std::path::Path, extra: &[&str]) {
    let server = ServerProcess::start(data_dir, extra);
    let mut created = Vec::new();
    for i in 0..5 {
        let resp = server.send_json(
            "POST",
            "/performance/metrics/snapshots",
            &format!(r#"{{"label": "durable {i}"}}"#),
        );
        assert_eq!(resp.status, 201, "{}", resp.body);
        created.push((
            resp.header("location").unwrap().to_owned(),
            json(&resp.body),
        ));
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL, immediately after the last 201
    server.child.wait().unwrap();
    drop(server);

    let again = ServerProcess::start(data_dir, extra);
    for (location, body) in &created {
        let resp = http::get(again.addr, location).unwrap();
        assert_eq!(
            resp.status, 200,
            "{location} lost after kill -9: {}",
            resp.body
        );
        assert_eq!(&json(&resp.body), body);
    }
}

#[test]
fn kill_nine_after_201_loses_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill_nine_loses_nothing(dir.path(), &[]);
}

#[test]
fn kill_nine_after_201_loses_nothing_on_postgres() {
    let pg = testkit::PgCluster::start().unwrap();
    let url = pg.create_database("perf_kill").unwrap();
    let dir = tempfile::tempdir().unwrap();
    kill_nine_loses_nothing(dir.path(), &["--database-url", &url]);
    // The rows are in PostgreSQL, not in a local file.
    assert_eq!(
        pg.psql("perf_kill", "SELECT count(*) FROM metrics_snapshots")
            .unwrap(),
        "5"
    );
    assert!(!dir.path().join("perf.db").exists());
}

#[test]
fn sigterm_lets_the_in_flight_request_finish_then_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--sample-interval", "3s"]);
    // Right after start there is no sample yet: this request waits ~3 s for the first one.
    let addr = server.addr;
    let in_flight =
        std::thread::spawn(move || http::get(addr, "/performance/metrics/cpu").unwrap());
    std::thread::sleep(Duration::from_millis(500));
    server.signal("TERM");
    let resp = in_flight.join().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(
        json(&resp.body)["interval_ms"].as_u64().unwrap() >= 2_000,
        "{}",
        resp.body
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log_text();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn refuses_a_public_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("PERF_API_TOKEN")
        .env_remove("PERF_INSECURE_NO_AUTH")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listen") && stderr.contains("PERF_API_TOKEN"),
        "{stderr}"
    );

    // With the explicit flag it starts (bound to 0.0.0.0 on a free port).
    let server = ServerProcess::start(dir.path(), &["--listen", "0.0.0.0:0", "--insecure-no-auth"]);
    assert!(server.addr.ip().is_unspecified());
}

#[test]
fn environment_overrides_and_bad_values_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("PERF_SAMPLE_INTERVAL", "5ms")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sample_interval") && stderr.contains("100ms to 60s"),
        "{stderr}"
    );

    let config = dir.path().join("perf.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nsample_intervall: 1s\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sample_intervall"), "{stderr}");
}

#[test]
fn cpu_utilization_rises_while_a_cpu_heavy_process_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--sample-interval", "500ms"]);
    let busy_cores = |v: &Value| {
        v["utilization_percent"].as_f64().unwrap() / 100.0 * v["cores"].as_f64().unwrap()
    };

    // A separate CPU-bound process, as an operator would see it.
    let mut burner = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    let under_load = json(
        &http::get(server.addr, "/performance/metrics/cpu")
            .unwrap()
            .body,
    );
    burner.kill().unwrap();
    burner.wait().unwrap();
    assert!(
        busy_cores(&under_load) >= 0.7,
        "one core busy should show: {under_load}"
    );
    let max_core = under_load["per_core_utilization_percent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(max_core >= 35.0, "{under_load}");

    // The series over the last seconds shows the load too.
    let started = Instant::now();
    let series = json(
        &http::get(server.addr, "/performance/metrics/cpu?window=10s")
            .unwrap()
            .body,
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        series["samples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| busy_cores(s) >= 0.7),
        "{series}"
    );
}

fn run_cli(args: &[&str]) -> std::process::Output {
    cli(&[&["run"], args].concat())
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_exits_0_on_pass_1_on_failed_threshold_2_on_bad_input() {
    use testkit::target::{Behavior, TargetServer};
    let dir = tempfile::tempdir().unwrap();
    let ok = TargetServer::start(Behavior::default()).unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        "load_tests:\n  quick:\n    duration: 1s\n    users: 4\n    think_time: 10ms\n    thresholds: ['p95 < 1s', 'error_rate < 0.1%']\n  other: {duration: 1s, users: 1}\n",
    )
    .unwrap();
    let (out_json, out_csv) = (dir.path().join("r.json"), dir.path().join("t.csv"));
    let out = run_cli(&[
        file.to_str().unwrap(),
        "--scenario",
        "quick",
        "--target",
        &ok.url(),
        "--out",
        out_json.to_str().unwrap(),
        "--csv",
        out_csv.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PASSED") && stdout.contains("p95 < 1s"),
        "{stdout}"
    );
    let report = json(&std::fs::read_to_string(&out_json).unwrap());
    assert!(report["requests"].as_u64().unwrap() > 10);
    assert!(
        std::fs::read_to_string(&out_csv)
            .unwrap()
            .starts_with("t_s,")
    );

    let failing = TargetServer::start(Behavior {
        status: 500,
        ..Behavior::default()
    })
    .unwrap();
    let out = run_cli(&[
        file.to_str().unwrap(),
        "--scenario",
        "quick",
        "--target",
        &failing.url(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));

    // Several scenarios and none chosen; a bad value; a missing file.
    let out = run_cli(&[file.to_str().unwrap(), "--target", &ok.url()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--scenario (other, quick)"));
    std::fs::write(&file, "load_tests:\n  bad: {duration: 1s, users: -3}\n").unwrap();
    let out = run_cli(&[file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("users"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_cli(&["/nonexistent.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn busy_polling_is_idle_time_not_the_generator_being_the_bottleneck() {
    use testkit::target::{Behavior, TargetServer};
    let dir = tempfile::tempdir().unwrap();
    let target = TargetServer::start(Behavior::default()).unwrap();
    let file = dir.path().join("s.yaml");
    // One user: the worker parks while each request is out, so a 200 µs
    // spin before each park keeps its core busy. Counted as work, that
    // reads as a saturated generator (measured: 96 % of the core, bound).
    std::fs::write(&file, "load_tests:\n  spin: {duration: 2s, users: 1}\n").unwrap();
    let out_json = dir.path().join("r.json");
    let out = run_cli(&[
        file.to_str().unwrap(),
        "--target",
        &target.url(),
        "--threads",
        "1",
        "--busy-poll",
        "200us",
        "--out",
        out_json.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&std::fs::read_to_string(&out_json).unwrap());
    let generator = &report["generator"];
    assert_eq!(generator["bound"], false, "{generator}");
    assert!(
        generator["cpu_utilization"].as_f64().unwrap() < 0.6,
        "{generator}"
    );
    // The work itself is still counted.
    assert!(generator["cpu_s"].as_f64().unwrap() > 0.0, "{generator}");
    assert!(report["requests"].as_u64().unwrap() > 100, "{report}");

    for (bad, names) in [
        ("1ms", "busy_poll"),
        ("0s", "busy_poll"),
        ("soon", "--busy-poll"),
    ] {
        let out = run_cli(&[file.to_str().unwrap(), "--busy-poll", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(names), "{bad}: {stderr}");
    }
}

#[test]
fn shards_run_separately_and_merge_into_one_report() {
    use testkit::target::{Behavior, TargetServer};
    let dir = tempfile::tempdir().unwrap();
    let target = TargetServer::start(Behavior::default()).unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        format!(
            "load_tests:\n  whole: {{target: '{}', duration: 1s, users: 5, think_time: 20ms}}\n",
            target.url()
        ),
    )
    .unwrap();
    let mut outs = Vec::new();
    for shard in ["1/2", "2/2"] {
        let out_path = dir.path().join(format!("shard-{}.json", &shard[..1]));
        let out = run_cli(&[
            file.to_str().unwrap(),
            "--shard",
            shard,
            "--out",
            out_path.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outs.push(out_path);
    }
    let users: Vec<u64> = outs
        .iter()
        .map(|p| {
            let r = json(&std::fs::read_to_string(p).unwrap());
            r["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row["users"].as_u64().unwrap())
                .max()
                .unwrap()
        })
        .collect();
    assert_eq!(users, [3, 2]);
    let merged_path = dir.path().join("merged.json");
    let out = Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .arg("merge")
        .args(&outs)
        .args(["--out", merged_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = json(&std::fs::read_to_string(&merged_path).unwrap());
    let sum: u64 = outs
        .iter()
        .map(|p| {
            json(&std::fs::read_to_string(p).unwrap())["requests"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(merged["requests"].as_u64().unwrap(), sum);

    let out = run_cli(&[file.to_str().unwrap(), "--shard", "3/2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("I/N"));
}

#[test]
fn baseline_comparison_gates_ci_and_writes_junit() {
    use testkit::target::{Behavior, TargetServer};
    let dir = tempfile::tempdir().unwrap();
    let fast = TargetServer::start(Behavior {
        delay: Duration::from_millis(4),
        ..Behavior::default()
    })
    .unwrap();
    let slow = TargetServer::start(Behavior {
        delay: Duration::from_millis(12),
        ..Behavior::default()
    })
    .unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        "load_tests:\n  gate: {duration: 2s, users: 4, thresholds: ['p95 < 1s']}\n",
    )
    .unwrap();
    let base = dir.path().join("base.json");
    let out = run_cli(&[
        file.to_str().unwrap(),
        "--target",
        &fast.url(),
        "--out",
        base.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let junit = dir.path().join("junit.xml");
    let out = run_cli(&[
        file.to_str().unwrap(),
        "--target",
        &slow.url(),
        "--baseline",
        base.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("regression  YES"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"<testcase name="threshold: p95 &lt; 1s" classname="perf"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"name="regression: p50" classname="perf">"#)
            && xml.contains("<failure message=\"p50 regressed"),
        "{xml}"
    );
    assert!(xml.contains(r#"tests="6""#), "{xml}");

    // A stored report judged against itself: nothing moved. Its p99 rests on
    // too few requests to judge (a 2 s run), so the verdict says it cannot
    // tell: exit 4, not a silent pass.
    let compare_self = |report: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_perf-server"))
            .args([
                "compare",
                report.to_str().unwrap(),
                "--baseline",
                report.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let out = compare_self(&base);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let requests = json(&std::fs::read_to_string(&base).unwrap())["requests"]
        .as_u64()
        .unwrap();
    if requests < 5000 {
        assert_eq!(out.status.code(), Some(4), "{stdout}");
        assert!(stdout.contains("regression  INCONCLUSIVE"), "{stdout}");
        assert!(stdout.contains("too few to judge"), "{stdout}");
    } else {
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(stdout.contains("regression  no"), "{stdout}");
    }
    assert!(!stdout.contains("Regressed"), "{stdout}");
}

/// Starts a long load test through the API and waits until its progress has been saved once.
fn start_long_test(server: &ServerProcess, target: &str) -> String {
    let body = format!(
        r#"{{"name": "long", "target": "{target}", "duration": "10m", "users": 2, "think_time": "10ms"}}"#
    );
    let resp = server.send_json("POST", "/performance/tests", &body);
    assert_eq!(resp.status, 202, "{}", resp.body);
    let location = resp.header("location").unwrap().to_owned();
    // Progress is saved every 2 s: wait for two saves.
    std::thread::sleep(Duration::from_millis(4500));
    location
}

#[test]
fn a_test_running_when_the_server_is_killed_reads_interrupted_with_its_measurements() {
    use testkit::target::{Behavior, TargetServer};
    let target = TargetServer::start(Behavior::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]);
    let location = start_long_test(&server, &target.url());
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    drop(server);

    let again = ServerProcess::start(dir.path(), &[]);
    let status = json(&http::get(again.addr, &location).unwrap().body);
    assert_eq!(status["status"], "interrupted", "{status}");
    let report = json(
        &http::get(again.addr, &format!("{location}/results"))
            .unwrap()
            .body,
    );
    assert!(report["requests"].as_u64().unwrap() > 50, "{report}");
    assert!(
        again.log_text().contains("interrupted"),
        "{}",
        again.log_text()
    );
}

#[test]
fn sigterm_stops_running_tests_saves_them_and_exits() {
    use testkit::target::{Behavior, TargetServer};
    let target = TargetServer::start(Behavior::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]);
    let location = start_long_test(&server, &target.url());
    let served_before = target.served();
    server.signal("TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    drop(server);
    // Nothing more was sent after the exit.
    let served_after = target.served();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(target.served(), served_after);
    assert!(served_after >= served_before);

    let again = ServerProcess::start(dir.path(), &[]);
    let record = json(&http::get(again.addr, &location).unwrap().body);
    assert_eq!(record["status"], "interrupted", "{record}");
    let report = json(
        &http::get(again.addr, &format!("{location}/results"))
            .unwrap()
            .body,
    );
    // Saved at shutdown: everything up to the stop, not just the last periodic save.
    assert!(
        report["requests"].as_u64().unwrap() as f64 >= served_before as f64 * 0.9,
        "{report}"
    );
}

fn wait_for(addr: std::net::SocketAddr, location: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = json(&http::get(addr, location).unwrap().body);
        if done(&v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_test_split_over_three_workers_merges_their_reports_exactly() {
    use testkit::target::{Behavior, TargetServer};
    let target = TargetServer::start(Behavior::default()).unwrap();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let workers: Vec<ServerProcess> = dirs[..3]
        .iter()
        .map(|d| ServerProcess::start(d.path(), &[]))
        .collect();
    let urls: Vec<String> = workers
        .iter()
        .map(|w| format!("http://{}", w.addr))
        .collect();
    let config = dirs[3].path().join("coordinator.yaml");
    std::fs::write(&config, format!("load_workers: [{}]\n", urls.join(", "))).unwrap();
    let coordinator = ServerProcess::start(dirs[3].path(), &["--config", config.to_str().unwrap()]);

    let too_many = format!(
        r#"{{"target": "{}", "duration": "2s", "users": 6, "shards": 4}}"#,
        target.url()
    );
    let resp = coordinator.send_json("POST", "/performance/tests", &too_many);
    assert_eq!(resp.status, 422, "{}", resp.body);
    assert!(
        resp.body.contains("\"field\":\"shards\"") && resp.body.contains("knows 3 workers"),
        "{}",
        resp.body
    );

    let body = format!(
        r#"{{"name": "dist", "target": "{}", "duration": "2s", "users": 6, "think_time": "10ms", "shards": 3}}"#,
        target.url()
    );
    let resp = coordinator.send_json("POST", "/performance/tests", &body);
    assert_eq!(resp.status, 202, "{}", resp.body);
    let location = resp.header("location").unwrap().to_owned();
    let done = wait_for(coordinator.addr, &location, |v| {
        v["status"] != "running" && v["status"] != "queued"
    });
    assert_eq!(done["status"], "completed", "{done}");
    let merged = json(
        &http::get(coordinator.addr, &format!("{location}/results"))
            .unwrap()
            .body,
    );

    // Each worker ran one shard of 2 users; the merge is exact.
    let mut shard_reports = Vec::new();
    for w in &workers {
        let history = json(
            &http::get(w.addr, "/performance/tests/history?scenario=dist")
                .unwrap()
                .body,
        );
        let items = history["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{history}");
        let id = items[0]["id"].as_str().unwrap();
        let report: perf_loadgen::RunReport = serde_json::from_str(
            &http::get(w.addr, &format!("/performance/tests/{id}/results"))
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(report.timeline.iter().map(|r| r.users).max(), Some(2));
        shard_reports.push(report);
    }
    let expected = perf_loadgen::RunReport::merge(&shard_reports).unwrap();
    let merged: perf_loadgen::RunReport = serde_json::from_value(merged).unwrap();
    assert_eq!(merged.requests, expected.requests);
    assert_eq!(merged.histograms.latency, expected.histograms.latency);
    assert_eq!(merged.latency_ms, expected.latency_ms);
    assert!(merged.requests > 100);
}

#[test]
fn a_worker_that_dies_fails_the_test_and_keeps_the_partial_merge() {
    use testkit::target::{Behavior, TargetServer};
    let target = TargetServer::start(Behavior::default()).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut workers: Vec<ServerProcess> = dirs[..2]
        .iter()
        .map(|d| ServerProcess::start(d.path(), &[]))
        .collect();
    let urls: Vec<String> = workers
        .iter()
        .map(|w| format!("\"http://{}\"", w.addr))
        .collect();
    // The workers a request may name are the configured ones (the worker
    // token goes nowhere else).
    let config = dirs[2].path().join("perf.yaml");
    std::fs::write(&config, format!("load_workers: [{}]\n", urls.join(", "))).unwrap();
    let coordinator = ServerProcess::start(dirs[2].path(), &["--config", config.to_str().unwrap()]);
    let body = format!(
        r#"{{"name": "fragile", "target": "{}", "duration": "1m", "users": 4, "think_time": "10ms", "workers": [{}]}}"#,
        target.url(),
        urls.join(", ")
    );
    let resp = coordinator.send_json("POST", "/performance/tests", &body);
    assert_eq!(resp.status, 202, "{}", resp.body);
    let location = resp.header("location").unwrap().to_owned();
    std::thread::sleep(Duration::from_secs(4));
    workers[1].child.kill().unwrap();
    workers[1].child.wait().unwrap();
    let killed_at = Instant::now();
    let done = wait_for(coordinator.addr, &location, |v| v["status"] != "running");
    assert_eq!(
        done["status"],
        "failed",
        "{done}\n{}",
        coordinator.log_text()
    );
    assert!(killed_at.elapsed() < Duration::from_secs(15));
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains(&workers[1].addr.to_string()),
        "{done}"
    );
    let partial = json(
        &http::get(coordinator.addr, &format!("{location}/results"))
            .unwrap()
            .body,
    );
    assert!(partial["requests"].as_u64().unwrap() > 50, "{partial}");
    // The coordinator stopped the surviving worker's shard, which kept its measurements.
    let history = json(
        &http::get(
            workers[0].addr,
            "/performance/tests/history?scenario=fragile",
        )
        .unwrap()
        .body,
    );
    assert_eq!(history["items"][0]["status"], "cancelled", "{history}");
}

#[test]
fn the_binary_takes_heap_profiles_and_reports_its_allocator() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let post = |path: &str, body: &str| server.send_json("POST", path, body);
    let listing = json(
        &http::get(server.addr, "/performance/profiling")
            .unwrap()
            .body,
    );
    assert_eq!(listing["heap_available"], true, "{listing}");
    let started = post("/performance/profiling/start", r#"{"kind": "heap"}"#);
    assert_eq!(started.status, 201, "{}", started.body);
    let id = json(&started.body)["id"].as_str().unwrap().to_owned();
    let busy = post("/performance/profiling/start", r#"{"kind": "cpu"}"#);
    assert_eq!(busy.status, 409, "{}", busy.body);
    for i in 0..50 {
        let resp = post(
            "/performance/metrics/snapshots",
            &format!(r#"{{"label": "alloc {i}"}}"#),
        );
        assert_eq!(resp.status, 201);
    }
    let stopped = post(
        "/performance/profiling/stop",
        &format!(r#"{{"id": "{id}"}}"#),
    );
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    let record = json(&stopped.body);
    assert_eq!(record["kind"], "heap");
    assert!(record["pprof_bytes"].as_u64().unwrap() > 0, "{record}");
    let svg = http::get(
        server.addr,
        &format!("/performance/profiling/{id}?format=svg"),
    )
    .unwrap();
    assert_eq!(svg.status, 200);
    assert!(
        svg.body.contains("<svg"),
        "{}",
        &svg.body[..200.min(svg.body.len())]
    );

    let memory = json(
        &http::get(server.addr, "/performance/metrics/memory")
            .unwrap()
            .body,
    );
    assert!(
        memory["allocator"]["allocated_bytes"].as_u64().unwrap() > 1 << 20,
        "{memory}"
    );
    assert!(memory["tuning"]["dirty_decay_ms"].is_i64(), "{memory}");
    assert_eq!(memory["budget"]["pressure"], "normal", "{memory}");
}

#[test]
fn scaling_simulate_prints_json_and_refuses_a_bad_policy_naming_the_field() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let policy = root.join("examples/scaling/policy.yaml");
    let trace = root.join("examples/scaling/spike.csv");
    let out = cli(&[
        "scaling",
        "simulate",
        "--policy",
        policy.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--startup",
        "20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["peak_replicas"], 20, "{report}");
    assert!(
        report["max_time_to_scale_up_s"].as_f64().unwrap() <= 60.0,
        "{report}"
    );
    assert!(report["over_provisioned_instance_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["timeline"].as_array().unwrap().len(), 41);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "min_replicas: 5\nmax_replicas: 2\nmetrics: []\n").unwrap();
    let out = cli(&[
        "scaling",
        "simulate",
        "--policy",
        bad.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_replicas"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_reports_not_ready_during_the_drain_delay_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["--drain-delay", "2s"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while http::get(server.addr, "/ready").unwrap().status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let draining = http::get(server.addr, "/ready").unwrap();
    assert_eq!(draining.status, 503, "{}", draining.body);
    assert!(draining.body.contains("draining"), "{}", draining.body);
    // Still serving while draining.
    assert_eq!(http::get(server.addr, "/health").unwrap().status, 200);
    let started = Instant::now();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

#[test]
fn the_autoscaler_runs_local_instances_and_answers_its_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let base = 31_000 + (std::process::id() % 1000) as u16 * 8;
    let config = dir.path().join("perf.yaml");
    std::fs::write(&config, common::local_scaling(2, 4, 100, base)).unwrap();
    let server = ServerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let post = |path: &str, body: &str| server.send_json("POST", path, body);
    let put = |path: &str, body: &str| server.send_json("PUT", path, body);
    // The loop starts the minimum and they become ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let s = json(
            &http::get(server.addr, "/performance/scaling/status")
                .unwrap()
                .body,
        );
        let ready = s["instances"]
            .as_array()
            .map_or(0, |i| i.iter().filter(|x| x["ready"] == true).count());
        if ready == 2 {
            break s;
        }
        assert!(Instant::now() < deadline, "2 ready instances expected: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["configured"], true);
    assert_eq!(status["current_replicas"], 2);
    assert!(status["manager"].as_str().unwrap().contains("python3"));

    let refused = post("/performance/scaling/manual", r#"{"replicas": 9}"#);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(json(&refused.body)["error"]["field"], "replicas");
    let forced = post(
        "/performance/scaling/manual",
        r#"{"replicas": 3, "force": true}"#,
    );
    assert_eq!(forced.status, 200, "{}", forced.body);
    assert_eq!(json(&forced.body)["kind"], "manual");

    let bad = put(
        "/performance/scaling/config",
        r#"{"min_replicas": 1, "max_replicas": 0, "metrics": []}"#,
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(json(&bad.body)["error"]["field"], "max_replicas");
    let good = put(
        "/performance/scaling/config",
        r#"{"min_replicas": 1, "max_replicas": 3, "metrics": [{"name": "rps", "kind": "external", "target": {"average_value": 100}}]}"#,
    );
    assert_eq!(good.status, 200, "{}", good.body);
    let s = json(
        &http::get(server.addr, "/performance/scaling/status")
            .unwrap()
            .body,
    );
    assert_eq!(s["policy"]["max_replicas"], 3, "{s}");
    // A predictive block is validated naming the field, and the status
    // shows the forecast (learning: no history yet).
    let refused = |body: &str, field: &str| {
        let bad = put("/performance/scaling/config", body);
        assert_eq!(bad.status, 422, "{}", bad.body);
        assert_eq!(json(&bad.body)["error"]["field"], field);
    };
    refused(
        r#"{"min_replicas": 1, "max_replicas": 3, "metrics": [{"name": "rps", "kind": "external", "target": {"average_value": 100}}],
            "predictive": {"mode": "scale", "lead_time": "2h"}}"#,
        "predictive.lead_time",
    );
    refused(
        r#"{"min_replicas": 1, "max_replicas": 3, "metrics": [{"name": "rps", "kind": "external", "target": {"value": 100}}],
            "predictive": {"mode": "scale", "lead_time": "3m"}}"#,
        "predictive.metric",
    );
    let predictive = put(
        "/performance/scaling/config",
        r#"{"min_replicas": 1, "max_replicas": 3, "metrics": [{"name": "rps", "kind": "external", "target": {"average_value": 100}}],
            "predictive": {"mode": "forecast_only", "lead_time": "3m", "min_history": "1h"}}"#,
    );
    assert_eq!(predictive.status, 200, "{}", predictive.body);
    // Wait for a few decisions (one per second).
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = json(
            &http::get(server.addr, "/performance/scaling/status")
                .unwrap()
                .body,
        );
        if s["history"]["recommendations"].as_u64().unwrap_or(0) >= 3 {
            break s;
        }
        assert!(Instant::now() < deadline, "no decisions: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // The HPA conditions are typed values.
    let conditions = s["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "ScalingActive" && c["reason"] == "ValidMetricFound"),
        "{s}"
    );
    assert_eq!(s["forecast"]["mode"], "forecast_only", "{s}");
    assert_eq!(s["forecast"]["active"], false, "{s}");
    assert!(
        s["forecast"]["reason"]
            .as_str()
            .unwrap()
            .contains("learning"),
        "{s}"
    );
    let held = s["history"]["recommendations"].as_u64().unwrap();

    let history = json(
        &http::get(server.addr, "/performance/scaling/history?limit=50")
            .unwrap()
            .body,
    );
    let items = history["items"].as_array().unwrap();
    assert!(
        items.iter().any(|e| e["kind"] == "manual" && e["to"] == 3),
        "{history}"
    );
    assert!(
        items
            .iter()
            .any(|e| e["kind"] == "auto" && e["from"] == 0 && e["to"] == 2),
        "{history}"
    );

    let metrics = http::get(server.addr, "/metrics").unwrap().body;
    for series in [
        "scaling_replicas{state=\"current\"}",
        "scaling_replicas{state=\"ready\"}",
        "scaling_events_total{kind=\"manual\",direction=\"up\"} 1",
        "scaling_events_total{kind=\"auto\",direction=\"up\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }

    // SIGTERM drains the instances before the server exits: nothing is
    // left listening. (SIGKILL, which dropping the process handle sends,
    // gives the server no chance to, and orphaned the instances.)
    let mut server = server;
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    for port in base..base + 4 {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "an instance still listens on {port}: {}",
            server.log_text()
        );
    }
    // Restarted on the same store, the autoscaler carries on from its
    // history (a fresh one would hold a single recommendation).
    let again = ServerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let s = json(
        &http::get(again.addr, "/performance/scaling/status")
            .unwrap()
            .body,
    );
    let restored = s["history"]["recommendations"].as_u64().unwrap_or(0);
    assert!(restored >= held, "{restored} < {held}: {s}");
    assert_eq!(s["forecast"]["mode"], "forecast_only", "{s}");
    let mut again = again;
    again.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while again.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{}", again.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_check_validates_the_configuration_without_serving() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "memory_tuning: {dirty_decay_ms: 1000}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .args(["serve", "--check", "--config"])
        .arg(&good)
        .env_remove("PERF_LISTEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "memory_tuning: {dirty_decay_ms: -2}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .args(["serve", "--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("memory_tuning.dirty_decay_ms"), "{stderr}");

    // A label filter that is not an exact matcher is refused by its field.
    std::fs::write(
        &bad,
        "scaling:\n  policy: {min_replicas: 1, max_replicas: 3, metrics: [{name: rps, kind: pods, target: {average_value: 100}}]}\n  manager:\n    local: {command: [sleep, '60'], base_port: 9000}\n  source:\n    scrape: {metric: rps, path: /metrics, series: rq, label_filter: 'cluster=~\"a.*\"', kind: counter}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_perf-server"))
        .args(["serve", "--check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("scaling.source.scrape.label_filter"),
        "{stderr}"
    );
}

#[test]
fn run_check_reads_a_scenario_without_sending_anything() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    // Nothing listens on the target: a check must not try it.
    std::fs::write(
        &file,
        "load_tests:\n  a: {target: http://127.0.0.1:9, duration: 1m, rate: 50/s}\n  b: {target: http://127.0.0.1:9, duration: 30s, users: 3, requests: [{path: '/items/${sku}'}]}\n",
    )
    .unwrap();
    let check = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_perf-server"))
            .arg("run")
            .arg(&file)
            .arg("--check")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = check(&["--scenario", "a"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("a: open model, up to 50 req/s for 1m"),
        "{stdout}"
    );
    // `b` uses a placeholder without a data file: named, exit 2.
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scenario \"b\"")
            && stderr.contains("requests[0]")
            && stderr.contains("${sku}"),
        "{stderr}"
    );
}

#[test]
fn db_advise_gates_ci_when_an_index_is_advised_and_names_bad_input() {
    let pg = testkit::PgCluster::start().unwrap();
    pg.require_hypopg();
    let url = pg.create_database("gate").unwrap();
    pg.psql(
        "gate",
        "CREATE TABLE orders (id int PRIMARY KEY, customer int, total int);
         INSERT INTO orders SELECT g, g % 10000, g % 500 FROM generate_series(1, 100000) g;
         ANALYZE orders;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let statements = dir.path().join("statements.json");
    std::fs::write(
        &statements,
        r#"[{"query": "SELECT * FROM orders WHERE customer = $1", "calls": 50000, "total_time_ms": 400000},
            {"query": "SELECT * FROM orders WHERE id = $1", "calls": 90000, "total_time_ms": 9000},
            {"query": "SELECT * FROM orders WHERE nope = $1", "calls": 1, "total_time_ms": 1}]"#,
    )
    .unwrap();
    let file = statements.to_str().unwrap();
    let advise = |extra: &[&str]| {
        let args = ["db", "advise", "--database-url", &url, "--statements", file];
        cli(&[args.as_slice(), extra].concat())
    };
    let out = advise(&["--fail-when-found"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CREATE INDEX CONCURRENTLY ON orders (customer);"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped: SELECT * FROM orders WHERE nope"),
        "{stdout}"
    );
    // Without the flag the same advice exits 0; JSON is the WorkloadAdvice.
    let out = advise(&["--json", "--not-concurrently"]);
    assert_eq!(out.status.code(), Some(0));
    let advice = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        advice["indexes"][0]["index"]["create_statement"],
        "CREATE INDEX ON orders (customer)"
    );
    assert!(advice["indexes"][0]["saved_ms_per_hour"].as_f64().unwrap() > 100_000.0);
    // Nothing to add: exit 0 even with the gate.
    let out = advise(&["--fail-when-found", "--exclude-table", "orders"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no index to add"));
    // A selection the planning budget stopped before it found anything: the
    // gate cannot tell, and says so (exit 2), printing what it had.
    let out = advise(&["--fail-when-found", "--max-plans", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot tell") && stderr.contains("max_plans 1"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped early"));
    // Bad input: named, never echoed, exit 2.
    std::fs::write(
        &statements,
        r#"[{"query": "secret-text", "calls": "many"}]"#,
    )
    .unwrap();
    let out = advise(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--statements") && stderr.contains("wrong field or type"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret-text") && !stderr.contains("many"),
        "{stderr}"
    );
    let out = advise(&["--min-saving", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("min_saving"));
    // A file over 64 MiB (sparse: its size is all it has) and a device whose
    // size says 0 but never ends are both refused before they fill memory.
    std::fs::File::create(&statements)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    for file in [file, "/dev/zero"] {
        let out = cli(&["db", "advise", "--database-url", &url, "--statements", file]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("larger than the 67108864 bytes allowed"),
            "{file}: {stderr}"
        );
    }
    let out = cli(&[
        "db",
        "advise",
        "--database-url",
        "postgres://127.0.0.1:1/none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn promql_names_are_the_series_only() {
    assert_eq!(
        common::promql_metric_names(
            r#"histogram_quantile(0.95, sum by (pool, le) (rate(db_pool_held_seconds_bucket{job=~"$job"}[$__rate_interval]))) > 0.010"#
        ),
        ["db_pool_held_seconds_bucket"]
    );
    assert_eq!(
        common::promql_metric_names(
            r#"sum(rate(a_total{s=~"5.."}[1m])) / clamp_min(sum by (c) (rate(b_total[5m])), 1e-9) and on (x) count(up == 1)"#
        ),
        ["a_total", "b_total", "up"]
    );
    assert_eq!(
        common::promql_metric_names(r#"sum(x{route="/a/{id}"}) / other_total"#),
        ["x", "other_total"]
    );
}

/// A live perf-server with a PostgreSQL store, an analyzed database, an
/// autoscaler, a finished load test (with checks and errors), a CPU profile
/// and a database report: every series the Grafana dashboards and the alert
/// rules name is in its `/metrics`, and Prometheus's own linter passes on
/// that scrape.
#[test]
fn dashboards_and_alerts_name_only_series_a_live_server_exposes() {
    let pg = testkit::PgCluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = 33_000 + (std::process::id() % 1000) as u16 * 8;
    let config = dir.path().join("perf.yaml");
    let scaling = common::local_scaling(1, 2, 100_000, base);
    std::fs::write(
        &config,
        format!("database_url: \"{}\"\n{scaling}", pg.url()),
    )
    .unwrap();
    let server = ServerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let post = |path: &str, body: &str| server.send_json("POST", path, body);
    // A load test with a check and a request that fails (a 404 is a status error).
    let target = format!("http://{}", server.addr);
    let started = post(
        "/performance/tests",
        &format!(
            r#"{{"name": "lint", "target": "{target}", "duration": "2s", "users": 2,
                "requests": [{{"name": "health", "path": "/health", "checks": [{{"status": 200}}]}},
                             {{"name": "missing", "path": "/nope"}}]}}"#
        ),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let scaled = post(
        "/performance/scaling/manual",
        r#"{"replicas": 2, "force": true}"#,
    );
    assert_eq!(scaled.status, 200, "{}", scaled.body);
    let profile = post(
        "/performance/profiling/start",
        r#"{"kind": "cpu", "duration_s": 1}"#,
    );
    assert_eq!(profile.status, 201, "{}", profile.body);
    let report = http::get(server.addr, "/performance/metrics/database").unwrap();
    assert_eq!(report.status, 200, "{}", report.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http::get(server.addr, "/performance/tests?status=completed")
        .unwrap()
        .body
        .contains("\"lint\"")
    {
        assert!(Instant::now() < deadline, "the load test did not complete");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500)); // the profile stops, a host sample lands
    let scrape = http::get(server.addr, "/metrics").unwrap();
    assert_eq!(scrape.status, 200);
    let exposed: std::collections::BTreeSet<&str> = scrape
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let named = series_named_in_dashboards_and_alerts();
    assert!(named.len() > 25, "{named:?}");
    // `up` is Prometheus's own series about the scrape; the `cgroup_` ones
    // appear only in a control group with limits, and the cgroup test below
    // checks them on a server it runs in one.
    let missing: Vec<_> = named
        .iter()
        .filter(|(name, _)| {
            name.as_str() != "up"
                && !name.starts_with("cgroup_")
                && !exposed.contains(name.as_str())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "named but not exposed: {missing:?}\n{}",
        scrape.body
    );

    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed: apt-get install prometheus (Debian)");
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), scrape.body.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every series the Grafana dashboards (panels, rows' panels, variables)
/// and the Prometheus alert rules read, with the file that names it.
fn series_named_in_dashboards_and_alerts() -> std::collections::BTreeMap<String, &'static str> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut named = std::collections::BTreeMap::new();
    for dashboard in [
        "deploy/grafana/perf-server.json",
        "deploy/grafana/load-tests.json",
    ] {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(dashboard)).unwrap()).unwrap();
        // Panels (and the panels of rows), and the variables' queries.
        let mut panels: Vec<&Value> = d["panels"].as_array().unwrap().iter().collect();
        while let Some(panel) = panels.pop() {
            panels.extend(panel["panels"].as_array().into_iter().flatten());
            for target in panel["targets"].as_array().into_iter().flatten() {
                for name in common::promql_metric_names(target["expr"].as_str().unwrap()) {
                    named.insert(name, dashboard);
                }
            }
        }
        for variable in d["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(query) = variable["query"]["query"].as_str() {
                // label_values(<series or selector>, <label>)
                let inner = query.trim_start_matches("label_values(");
                let series = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
                for name in common::promql_metric_names(series) {
                    named.insert(name, dashboard);
                }
            }
        }
    }
    let alerts: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).unwrap(),
    )
    .unwrap();
    for group in alerts["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            for name in common::promql_metric_names(rule["expr"].as_str().unwrap()) {
                named.insert(name, "deploy/prometheus/alerts.yaml");
            }
        }
    }
    named
}

/// A cgroup made for one test (v2 at the root of the unified hierarchy, or
/// v1 under this process's own memory and cpu cgroups); removed on drop.
struct TestCgroup {
    dirs: Vec<std::path::PathBuf>,
}

impl TestCgroup {
    /// A cgroup with this memory limit and a CPU quota of `quota_us` per
    /// 100 ms, or why none could be made.
    fn create(memory_limit: u64, quota_us: u64) -> Result<Self, String> {
        use std::path::{Path, PathBuf};
        let name = format!("perf-test-{}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
        };
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if has("memory") && has("cpu") {
            write(&root.join("cgroup.subtree_control"), "+memory +cpu")?;
            let dir = root.join(&name);
            std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let made = Self {
                dirs: vec![dir.clone()],
            };
            write(&dir.join("memory.max"), &memory_limit.to_string())?;
            write(&dir.join("cpu.max"), &format!("{quota_us} 100000"))?;
            return Ok(made);
        }
        let membership = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let own = |controller: &str| {
            membership.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, list, path) = (f.next()?, f.next()?, f.next()?);
                list.split(',')
                    .any(|c| c == controller)
                    .then(|| (list.to_owned(), path.to_owned()))
            })
        };
        let (_, memory_path) = own("memory").ok_or("no memory cgroup (v1 or v2)")?;
        let (cpu_list, cpu_path) = own("cpu").ok_or("no cpu cgroup (v1 or v2)")?;
        let memory: PathBuf = root
            .join("memory")
            .join(memory_path.trim_start_matches('/'))
            .join(&name);
        let cpu_mount = [cpu_list.as_str(), "cpu", "cpu,cpuacct"]
            .iter()
            .map(|m| root.join(m))
            .find(|m| m.is_dir())
            .ok_or("no cpu hierarchy mounted")?;
        let cpu = cpu_mount.join(cpu_path.trim_start_matches('/')).join(&name);
        let mut made = Self { dirs: Vec::new() };
        for dir in [&memory, &cpu] {
            std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            made.dirs.push(dir.clone());
        }
        write(
            &memory.join("memory.limit_in_bytes"),
            &memory_limit.to_string(),
        )?;
        write(&cpu.join("cpu.cfs_period_us"), "100000")?;
        write(&cpu.join("cpu.cfs_quota_us"), &quota_us.to_string())?;
        Ok(made)
    }

    fn procs(&self) -> Vec<std::path::PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// perf-server in a cgroup of 96 MiB and half a core: it reports the
/// cgroup's limit and quota beside the host's figures, its memory budget
/// takes the cgroup's limit (lower than the configured 512 MiB) and acts on
/// it (marks at 30 % and 35 % of 96 MiB: the process, ~40 MB resident, is
/// over the hard mark and refuses new work, which the same marks of 512 MiB
/// would not), and it runs one HTTP worker, not one per host core.
#[test]
fn in_a_cgroup_the_limits_are_reported_and_the_budget_and_workers_follow_them() {
    let cgroup = TestCgroup::create(96 << 20, 50_000).unwrap_or_else(|why| {
        panic!("this test runs perf-server in a cgroup it creates (needs root and cgroup v1 or v2 with memory and cpu): {why}")
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("perf.yaml");
    std::fs::write(
        &config,
        "memory_budget: {limit: 512MiB, soft_fraction: 0.3, hard_fraction: 0.35}\n",
    )
    .unwrap();
    let mut server = ServerProcess::try_start_in(
        dir.path(),
        &["--config", config.to_str().unwrap()],
        &cgroup.procs(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let memory = loop {
        let memory = json(
            &http::get(server.addr, "/performance/metrics/memory")
                .unwrap()
                .body,
        );
        if memory["budget"]["pressure"] == "hard" {
            break memory;
        }
        assert!(
            Instant::now() < deadline,
            "the budget never reached its hard mark: {memory}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(memory["cgroup"]["memory_limit_bytes"], 96 << 20, "{memory}");
    assert_eq!(memory["budget"]["budget"]["limit"], 96 << 20, "{memory}");
    assert_eq!(memory["budget"]["limit_source"], "cgroup", "{memory}");
    assert_eq!(memory["cgroup"]["cpu_quota_cores"], 0.5, "{memory}");
    // Over the hard mark new work is refused; the memory figures still answer.
    let refused = server.send_json(
        "POST",
        "/performance/metrics/snapshots",
        r#"{"label": "x"}"#,
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    let metrics = http::get(server.addr, "/metrics").unwrap().body;
    for line in [
        "cgroup_memory_limit_bytes 100663296",
        "memory_budget_limit_bytes 100663296",
        "cgroup_cpu_quota_cores 0.5",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    // Every cgroup series the dashboards graph is one this server exposes.
    let missing: Vec<_> = series_named_in_dashboards_and_alerts()
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("cgroup_")
                && !metrics.lines().any(|l| {
                    l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))
                })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "named but not exposed in a cgroup: {missing:?}\n{metrics}"
    );
    assert!(
        server.log_text().contains("workers=1"),
        "{}",
        server.log_text()
    );
    assert!(
        server
            .log_text()
            .contains("the memory budget's limit is the cgroup's"),
        "{}",
        server.log_text()
    );
    let _ = server.child.kill();
    let _ = server.child.wait();
}

/// `examples/perf.yaml`, the complete example configuration, names every
/// key (set or commented), checks clean, and so does its commented-out
/// `scaling` section once uncommented.
#[test]
fn the_example_configuration_checks_clean() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/perf.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    let keys = serde_json::to_value(perf_server::config::ServerConfig::default()).unwrap();
    let mut keys: Vec<String> = keys.as_object().unwrap().keys().cloned().collect();
    // Never serialized (secrets and the analyzed database's URL).
    keys.extend(["analyze_database_url", "api_token", "worker_token"].map(String::from));
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| {
            !text.lines().any(|l| {
                l.trim_start_matches(['#', ' '])
                    .starts_with(&format!("{k}:"))
            })
        })
        .collect();
    assert!(missing.is_empty(), "examples/perf.yaml lacks {missing:?}");
    let out = cli(&["serve", "--config", example.to_str().unwrap(), "--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
    let at = text
        .find("# scaling:")
        .expect("the example has a scaling section");
    let scaling = text[at..]
        .replace("# scaling:", "scaling:")
        .replace("\n#   ", "\n  ");
    let dir = tempfile::tempdir().unwrap();
    let with_scaling = dir.path().join("perf.yaml");
    std::fs::write(&with_scaling, format!("{}{scaling}", &text[..at])).unwrap();
    let out = cli(&[
        "serve",
        "--config",
        with_scaling.to_str().unwrap(),
        "--check",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scenario's `data.file` is read relative to the scenario file, whatever
/// directory the command runs in.
#[test]
fn scenario_paths_are_relative_to_the_scenario_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/ids.csv"), "id\n1\n2\n").unwrap();
    let scenario = dir.path().join("s.yaml");
    std::fs::write(
        &scenario,
        "load_tests:\n  s:\n    target: 'http://127.0.0.1:8080'\n    users: 1\n    duration: 1s\n    data: {file: data/ids.csv}\n    requests: [{path: '/items/${id}'}]\n",
    )
    .unwrap();
    // The test runs in perf-server/, not in the scenario's directory.
    let out = cli(&["run", scenario.to_str().unwrap(), "--check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(dir.path().join("data/ids.csv")).unwrap();
    let out = cli(&["run", scenario.to_str().unwrap(), "--check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("data/ids.csv: does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
