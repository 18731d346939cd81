//! Real runs over sockets on 127.0.0.1 against testkit's local target.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use perf_loadgen::{RunReport, ScenarioFile, split, start};
use testkit::target::{Behavior, TargetServer};

fn scenario(yaml: &str) -> (String, perf_loadgen::Scenario) {
    let file = ScenarioFile::from_yaml(yaml).unwrap();
    let (name, s) = file.load_tests.into_iter().next().unwrap();
    (name, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_model_counts_every_request_the_server_served() {
    let server = TargetServer::start(Behavior {
        delay: Duration::from_millis(2),
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  smoke:\n    target: {}\n    duration: 2s\n    users: 8\n    thresholds: ['p95 < 1s', 'error_rate < 0.1%']\n",
        server.url()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.model, "closed");
    assert!(report.requests > 100, "{}", report.requests);
    assert_eq!(report.errors, 0);
    assert_eq!(report.status_codes["200"], report.requests);
    // Nothing counted that the server did not answer (a request cut at the end is not counted).
    assert!(server.served() >= report.requests && server.served() <= report.requests + 8);
    assert!(
        server.connections() <= 8,
        "keep-alive: one connection per user, got {}",
        server.connections()
    );
    assert!(report.latency_ms.p50 >= 2.0, "{:?}", report.latency_ms);
    assert!(report.latency_uncorrected_ms.is_none());
    assert!(report.passed, "{:?}", report.thresholds);
    // Two full seconds, and possibly a fragment with the last responses.
    assert!(
        (2..=3).contains(&report.timeline.len()),
        "{:?}",
        report.timeline
    );
    assert_eq!(report.timeline[0].users, 8);
    let timeline_requests: u64 = report.timeline.iter().map(|r| r.requests).sum();
    assert_eq!(timeline_requests, report.requests);
    let csv = report.timeline_csv();
    assert_eq!(csv.lines().count(), report.timeline.len() + 1);
    assert!(csv.starts_with("t_s,span_s,requests"));
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "scenario",
        "started_at",
        "duration_s",
        "requests",
        "errors",
        "error_rate",
        "rps",
        "latency_ms",
        "latency_uncorrected_ms",
        "dropped",
        "status_codes",
        "thresholds",
        "passed",
        "timeline",
    ] {
        assert!(json.get(key).is_some(), "{key} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_up_starts_users_linearly_and_think_time_paces_them() {
    let server = TargetServer::start(Behavior::default()).unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  ramp:\n    target: {}\n    duration: 3s\n    users: 20\n    ramp_up: 2s\n    think_time: 100ms\n",
        server.url()
    ));
    let run = start(&name, &s).await.unwrap();
    let live = run.progress();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mid = live.borrow().users;
    let report = run.report().await.unwrap();
    assert!(
        (7..=14).contains(&mid),
        "about half the users after 1 s of a 2 s ramp, got {mid}"
    );
    // 20 users at ~10 iterations/s once ramped: well under 20 * 10 * 3 = 600.
    assert!(
        report.requests > 200 && report.requests < 600,
        "{}",
        report.requests
    );
    assert_eq!(report.timeline.iter().map(|r| r.users).max(), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_keeps_the_schedule_and_counts_drops() {
    let server = TargetServer::start(Behavior::default()).unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  open:\n    target: {}\n    duration: 2s\n    rate: 300/s\n",
        server.url()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.model, "open");
    assert!(
        (560..=640).contains(&report.requests),
        "{}",
        report.requests
    );
    assert_eq!(report.dropped, 0);
    let un = report.latency_uncorrected_ms.unwrap();
    assert!(report.latency_ms.p99 >= un.p99 * 0.99);

    // A slow server and a small bound: requests beyond it are dropped, not queued.
    let slow = TargetServer::start(Behavior {
        delay: Duration::from_millis(200),
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  bounded:\n    target: {}\n    duration: 1s\n    rate: 200/s\n    max_in_flight: 10\n",
        slow.url()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(report.dropped > 100, "{}", report.dropped);
    assert!(report.requests <= 70, "{}", report.requests);
    let dropped_in_timeline: u64 = report.timeline.iter().map(|r| r.dropped).sum();
    assert_eq!(dropped_in_timeline, report.dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_show_in_the_corrected_latency_of_the_open_model() {
    // 200 ms stall every second: about 20 % of requests wait up to 200 ms.
    let server = TargetServer::start(Behavior {
        stall: Some((Duration::from_secs(1), Duration::from_millis(200))),
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  stall:\n    target: {}\n    duration: 3s\n    rate: 200/s\n",
        server.url()
    ));
    let open = start(&name, &s).await.unwrap().report().await.unwrap();
    // True p90 of a uniform wait over the stall: about 100 ms; p99 about 180-200 ms.
    assert!(open.latency_ms.p99 > 150.0, "{:?}", open.latency_ms);
    assert!(open.latency_ms.p90 > 40.0, "{:?}", open.latency_ms);

    // The closed model on one user sees the stall once per period and hides the queue behind it.
    let (name, s) = scenario(&format!(
        "load_tests:\n  closed:\n    target: {}\n    duration: 3s\n    users: 1\n",
        server.url()
    ));
    let closed = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(
        closed.latency_ms.p90 < open.latency_ms.p90 / 4.0,
        "closed {:?} open {:?}",
        closed.latency_ms,
        open.latency_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified_and_thresholds_fail() {
    let failing = TargetServer::start(Behavior {
        status: 503,
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  bad:\n    target: {}\n    duration: 1s\n    users: 2\n    thresholds: ['error_rate < 0.1%']\n",
        failing.url()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.errors, report.requests);
    assert!(report.status_codes["503"] > 0);
    assert!(!report.passed);
    assert_eq!(report.thresholds[0].observed, 1.0);

    // Nothing listens on this port: connect errors.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (name, s) = scenario(&format!(
        "load_tests:\n  refused:\n    target: http://127.0.0.1:{port}\n    duration: 1s\n    users: 1\n    think_time: 50ms\n"
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(
        report.error_kinds["connect"] > 0,
        "{:?}",
        report.error_kinds
    );

    // Slower than the timeout: timeouts.
    let slow = TargetServer::start(Behavior {
        delay: Duration::from_millis(400),
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  slow:\n    target: {}\n    duration: 1s\n    users: 2\n    timeout: 100ms\n",
        slow.url()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(
        report.error_kinds["timeout"] > 0,
        "{:?}",
        report.error_kinds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_within_a_second_and_still_reports() {
    let server = TargetServer::start(Behavior {
        delay: Duration::from_millis(300),
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  long:\n    target: {}\n    duration: 1h\n    users: 50\n    think_time: 10s\n",
        server.url()
    ));
    let run = start(&name, &s).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cancelled_at = Instant::now();
    run.cancel();
    let report = run.report().await.unwrap();
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(
        report.stopped_early,
        Some(perf_loadgen::StopReason::Cancelled)
    );
    assert!(report.requests >= 50, "{}", report.requests);
    assert!(report.duration_s < 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_fail_stops_a_failing_run() {
    let failing = TargetServer::start(Behavior {
        status: 500,
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  abort:\n    target: {}\n    duration: 1m\n    users: 2\n    think_time: 20ms\n    thresholds: ['error_rate < 1%']\n    abort_on_fail: true\n",
        failing.url()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(report.duration_s < 8.0, "{}", report.duration_s);
    assert!(
        matches!(
            &report.stopped_early,
            Some(perf_loadgen::StopReason::ThresholdFailed { threshold }) if threshold.contains("error_rate")
        ),
        "{:?}",
        report.stopped_early
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_merge_into_the_statistics_of_one_run() {
    let server = TargetServer::start(Behavior {
        delay: Duration::from_millis(1),
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  whole:\n    target: {}\n    duration: 2s\n    users: 6\n    thresholds: ['p99 < 1s']\n",
        server.url()
    ));
    let parts = split(&name, &s, 3).unwrap();
    let mut reports = Vec::new();
    for part in &parts {
        reports.push(start(&name, part).await.unwrap().report().await.unwrap());
    }
    let merged = RunReport::merge(&reports).unwrap();
    assert_eq!(
        merged.requests,
        reports.iter().map(|r| r.requests).sum::<u64>()
    );
    // Exact: the merged histogram is the histogram of all samples together.
    let mut all = perf_core::LatencyHistogram::new();
    for r in &reports {
        all.merge(&r.histograms.latency).unwrap();
    }
    assert_eq!(merged.histograms.latency, all);
    assert_eq!(merged.latency_ms, perf_loadgen::LatencyMs::of(&all));
    assert_eq!(merged.thresholds.len(), 1);
    // Through JSON, as shards on other machines would send them.
    let wire: Vec<RunReport> = reports
        .iter()
        .map(|r| serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap())
        .collect();
    assert_eq!(
        RunReport::merge(&wire).unwrap().latency_ms,
        merged.latency_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_rows_and_chunked_responses_work_end_to_end() {
    let server = TargetServer::start(Behavior {
        chunked: true,
        body: "chunked body".into(),
        ..Behavior::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ids.csv");
    std::fs::write(&csv, "id\n1\n2\n3\n").unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  data:\n    target: {}\n    duration: 1s\n    users: 3\n    data: {{file: '{}', mode: per_user}}\n    requests:\n      - {{name: item, path: '/items/${{id}}', weight: 3}}\n      - {{name: create, method: POST, path: /items, body: '{{\"id\": ${{id}}}}'}}\n",
        server.url(),
        csv.display()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_kinds);
    assert!(report.per_request["item"].requests > report.per_request["create"].requests);
    assert!(report.bytes_received > 0);
}

#[test]
fn validation_names_scenario_key_value_and_range() {
    let cases = [
        (
            "load_tests:\n  a: {duration: 1m, users: 0}\n",
            ["\"a\"", "users", "0", "1 to"],
        ),
        (
            "load_tests:\n  b: {duration: 1m, users: 5, rate: 10/s}\n",
            ["\"b\"", "rate", "", "not both"],
        ),
        (
            "load_tests:\n  c: {duration: 1m, users: 5, ramp_up: 2m}\n",
            ["\"c\"", "ramp_up", "2m", "at most"],
        ),
        (
            "load_tests:\n  d: {duration: 1m, rate: 5/s, think_time: 1s}\n",
            ["\"d\"", "think_time", "", "closed model"],
        ),
        (
            "load_tests:\n  e: {duration: 1m, users: 5, target: 'ftp://x'}\n",
            ["\"e\"", "target[0]", "ftp://x", "https://localhost:8443"],
        ),
        (
            "load_tests:\n  f: {duration: 1m, users: 5, requests: [{method: FETCH}]}\n",
            ["\"f\"", "requests[0].method", "FETCH", "one of GET"],
        ),
        (
            "load_tests:\n  g: {duration: 1m, users: 5, max_in_flight: 3}\n",
            ["\"g\"", "max_in_flight", "3", "open model"],
        ),
    ];
    for (yaml, needles) in cases {
        let err = ScenarioFile::from_yaml(yaml).unwrap_err().to_string();
        for n in needles {
            assert!(err.contains(n), "{yaml}: {err} lacks {n}");
        }
    }
    let err =
        ScenarioFile::from_yaml("load_tests:\n  h: {duration: 1m, users: 5, thinktime: 1s}\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("thinktime"), "{err}");
    let err = ScenarioFile::from_yaml("load_tests:\n  i: {duration: forever, users: 5}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("forever"), "{err}");
}

#[test]
fn the_mission_file_loads_as_is() {
    let file = ScenarioFile::from_yaml(
        "load_tests:\n  baseline: {duration: 10m, users: 1000, ramp_up: 2m, think_time: 1s}\n  stress:   {duration: 15m, users: 5000, ramp_up: 5m, think_time: 500ms}\n  spike:    {duration: 5m, users: 10000, ramp_up: 30s, think_time: 100ms}\n",
    )
    .unwrap();
    assert_eq!(file.get("stress").unwrap().users, Some(5000));
    assert!(
        file.get("soak")
            .unwrap_err()
            .to_string()
            .contains("baseline, spike, stress")
    );
}

#[test]
fn every_example_scenario_file_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let file = ScenarioFile::from_yaml(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            kinds.extend(file.load_tests.into_keys());
        }
    }
    for kind in ["baseline", "stress", "spike", "endurance", "volume"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no example for {kind}: {kinds:?}"
        );
    }
}
