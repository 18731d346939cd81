//! HTTP/2 runs over real sockets: h2c with prior knowledge and TLS with
//! ALPN, multiplexing over a bounded set of connections, protocol reporting.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use perf_loadgen::{ScenarioFile, check, start};
use testkit::h2_target::H2Target;
use testkit::target::{Behavior, TargetServer, TargetTls};

fn scenario(yaml: &str) -> (String, perf_loadgen::Scenario) {
    let file = ScenarioFile::from_yaml(yaml).unwrap();
    file.load_tests.into_iter().next().unwrap()
}

fn ca() -> String {
    testkit::certs::path("ca.pem")
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_users_share_one_connection_as_streams() {
    let server = H2Target::start(Behavior {
        delay: Duration::from_millis(5),
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  h2:\n    target: {}\n    protocol: h2\n    duration: 1s\n    users: 16\n    requests: [{{path: /, checks: [{{body_contains: hello}}]}}]\n",
        server.url()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.protocol, "h2");
    assert_eq!(
        report.errors, 0,
        "{:?} {:?}",
        report.error_kinds, report.status_codes
    );
    assert!(report.requests > 500, "{}", report.requests);
    assert_eq!(server.connections(), 1, "one connection, multiplexed");
    assert_eq!(report.phases.connections_opened, 1);
    assert!(
        server.most_open_streams() > 4,
        "{}",
        server.most_open_streams()
    );
    assert_eq!(report.checks["GET /: body contains \"hello\""].fails, 0);
    assert!(report.phases.ttfb_ms.is_some());
    assert!(report.passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_multiplexes_within_the_stream_bound() {
    let server = H2Target::start(Behavior {
        delay: Duration::from_millis(50),
        tls: Some(TargetTls::default()),
        ..Behavior::default()
    })
    .unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  h2:\n    target: {}\n    protocol: auto\n    connections: 2\n    max_streams_per_connection: 4\n    duration: 2s\n    rate: 200/s\n    tls: {{ca_file: '{}'}}\n",
        server.url(),
        ca()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.protocol, "h2", "ALPN agreed on h2");
    assert_eq!(report.errors, 0, "{:?}", report.error_kinds);
    // Two, plus the ALPN probe that chose h2 before the run.
    assert_eq!(server.connections(), 3);
    assert_eq!(report.phases.tls_handshakes, 2);
    // At most 2 × 4 streams at once: 8 in flight × 50 ms = 160 req/s at most,
    // so the rest waited, and the corrected latency shows it.
    assert!(
        server.most_open_streams() <= 8,
        "{}",
        server.most_open_streams()
    );
    assert!(report.rps < 180.0, "{}", report.rps);
    let u = report.latency_uncorrected_ms.unwrap();
    assert!(
        report.latency_ms.p99 > u.p50,
        "{:?} vs {u:?}",
        report.latency_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_http1_and_h2_against_an_http1_server_is_refused() {
    let h1 = TargetServer::start(Behavior {
        tls: Some(TargetTls::default()),
        ..Behavior::default()
    })
    .unwrap();
    let yaml = |protocol: &str| {
        format!(
            "load_tests:\n  p:\n    target: {}\n    protocol: {protocol}\n    duration: 1s\n    users: 2\n    tls: {{ca_file: '{}'}}\n",
            h1.url(),
            ca()
        )
    };
    let (name, s) = scenario(&yaml("auto"));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.protocol, "http/1.1");
    assert!(report.passed && report.errors == 0);
    let (name, s) = scenario(&yaml("h2"));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(!report.passed);
    let why = report.no_success.unwrap();
    assert!(
        why.starts_with("target unreachable: tls:")
            && (why.contains("ALPN") || why.contains("NoApplicationProtocol")),
        "{why}"
    );
}

#[test]
fn http2_keys_are_checked() {
    let base =
        "load_tests:\n  p:\n    target: http://127.0.0.1:1\n    duration: 1s\n    users: 1\n";
    for (extra, key) in [
        ("    connections: 4\n", "connections"),
        ("    protocol: h2\n    connections: 0\n", "connections"),
        (
            "    protocol: h2\n    max_streams_per_connection: 5000\n",
            "max_streams_per_connection",
        ),
        ("    protocol: h3\n", "protocol"),
    ] {
        let err = ScenarioFile::from_yaml(&format!("{base}{extra}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
    let (name, s) = scenario(&format!("{base}    protocol: h2\n    connections: 4\n"));
    assert!(check(&name, &s).is_ok());
}

/// Each user's requests differ (two paths, a POST with a body, a feeder
/// column in a header): the conversions kept per thread must hand each
/// request its own method, path, headers and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_conversions_keep_every_request_its_own() {
    use std::sync::Arc;
    use testkit::target::{Handler, TargetReply, TargetRequest};
    let echo = |r: &TargetRequest| TargetReply {
        status: 200,
        headers: Vec::new(),
        body: format!(
            "{} {} {} {}",
            r.method,
            r.path,
            r.header("x-user").unwrap_or("-"),
            String::from_utf8_lossy(&r.body)
        ),
    };
    let server = H2Target::start(Behavior {
        handler: Some(Handler(Arc::new(echo))),
        ..Behavior::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.csv");
    std::fs::write(&users, "name\nada\nbob\n").unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  h2:\n    target: {url}\n    protocol: h2\n    duration: 1s\n    users: 8\n    data: {{file: {file}}}\n    requests:\n      - {{path: /a, headers: {{x-user: '${{name}}'}}, checks: [{{body_regex: '^GET /a (ada|bob) $'}}]}}\n      - {{method: POST, path: /b, body: 'payload', checks: [{{body_contains: 'POST /b - payload'}}]}}\n",
        url = server.url(),
        file = users.display()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_kinds);
    assert!(report.requests > 100, "{}", report.requests);
    for (check, counts) in &report.checks {
        assert_eq!(counts.fails, 0, "{check}: {counts:?}");
        assert!(counts.passes > 20, "{check}: {counts:?}");
    }
    assert_eq!(report.checks.len(), 2, "{:?}", report.checks.keys());
}
