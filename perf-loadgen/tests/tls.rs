//! Runs against `https://` targets on 127.0.0.1 (testkit's TLS target and
//! test certificates): verification, mutual TLS, resumption, the phases.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use perf_loadgen::{FeedAccess, ScenarioFile, check, check_with, start};
use testkit::target::{Behavior, Handler, TargetReply, TargetServer, TargetTls};

fn scenario(yaml: &str) -> (String, perf_loadgen::Scenario) {
    let file = ScenarioFile::from_yaml(yaml).unwrap();
    file.load_tests.into_iter().next().unwrap()
}

fn cert(name: &str) -> String {
    testkit::certs::path(name).to_string_lossy().into_owned()
}

fn tls_target(tls: TargetTls) -> TargetServer {
    TargetServer::start(Behavior {
        tls: Some(tls),
        ..Behavior::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_scenarios_ca_measures_handshake_and_time_to_first_byte() {
    let server = tls_target(TargetTls::default());
    let (name, s) = scenario(&format!(
        "load_tests:\n  secure:\n    target: {}\n    duration: 1s\n    users: 4\n    tls: {{ca_file: '{}'}}\n    thresholds: ['error_rate < 0.01']\n",
        server.url(),
        cert("ca.pem")
    ));
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(report.requests > 20, "{}", report.requests);
    assert_eq!(report.errors, 0, "{:?}", report.error_kinds);
    assert!(report.passed && report.no_success.is_none());
    assert_eq!(report.protocol, "http/1.1");
    let tls = report.tls.as_ref().unwrap();
    assert!(!tls.insecure_skip_verify && tls.session_resumption);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // Four keep-alive users: four connections, four handshakes.
    assert_eq!(report.phases.connections_opened, 4, "{:?}", report.phases);
    assert_eq!(report.phases.tls_handshakes, 4);
    let handshake = report.phases.tls_handshake_ms.unwrap();
    let ttfb = report.phases.ttfb_ms.unwrap();
    assert!(handshake.max > 0.0 && ttfb.p50 > 0.0, "{:?}", report.phases);
    // Time to first byte excludes the handshake, so it is below the total.
    assert!(ttfb.p50 <= report.latency_ms.p50 + 0.01);
    assert!(report.timeline.iter().any(|r| r.tls_handshake_p95_ms > 0.0));
    assert!(
        report
            .timeline
            .iter()
            .all(|r| r.requests == 0 || r.ttfb_p95_ms > 0.0)
    );
    assert!(
        report
            .timeline_csv()
            .lines()
            .next()
            .unwrap()
            .ends_with("tls_handshake_p95_ms")
    );
    let json = serde_json::to_value(&report).unwrap();
    assert!(
        json["phases"]["tls_handshake_ms"]["p95"].is_number(),
        "{json}"
    );
    // Merging keeps the phases exactly.
    let merged = perf_loadgen::RunReport::merge(&[report.clone(), report.clone()]).unwrap();
    assert_eq!(merged.phases.tls_handshakes, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_failure_and_never_passes() {
    let server = tls_target(TargetTls {
        untrusted: true,
        ..TargetTls::default()
    });
    let yaml = |extra: &str| {
        format!(
            "load_tests:\n  secure:\n    target: {}\n    duration: 1s\n    users: 2\n    tls: {{ca_file: '{}'{extra}}}\n",
            server.url(),
            cert("ca.pem")
        )
    };
    let (name, s) = scenario(&yaml(""));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(!report.passed);
    assert_eq!(report.status_codes.len(), 0);
    assert!(report.error_kinds["tls"] > 0, "{:?}", report.error_kinds);
    let why = report.no_success.as_deref().unwrap();
    assert!(
        why.starts_with("target unreachable: tls:") && why.contains("certificate"),
        "{why}"
    );
    // Users back off instead of spinning on failed handshakes.
    assert!(report.error_kinds["tls"] < 200, "{:?}", report.error_kinds);
    // Failed handshakes are outside the latency figures.
    assert!(report.histograms.latency.is_empty());

    // The same target with verification off passes, and says so loudly.
    let (name, s) = scenario(&format!(
        "load_tests:\n  secure:\n    target: {}\n    duration: 1s\n    users: 2\n    tls: {{insecure_skip_verify: true}}\n",
        server.url()
    ));
    let plan = check(&name, &s).unwrap();
    assert!(plan.contains("insecure_skip_verify is on"), "{plan}");
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(
        report.passed && report.errors == 0,
        "{:?}",
        report.error_kinds
    );
    assert!(report.tls.as_ref().unwrap().insecure_skip_verify);
    assert!(
        report.warnings.iter().any(|w| w.contains("NOT verified")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    let server = tls_target(TargetTls {
        client_auth: true,
        ..TargetTls::default()
    });
    let run = |extra: String| {
        let (name, s) = scenario(&format!(
            "load_tests:\n  mtls:\n    target: {}\n    duration: 1s\n    users: 2\n    tls: {{ca_file: '{}'{extra}}}\n",
            server.url(),
            cert("ca.pem")
        ));
        async move { start(&name, &s).await.unwrap().report().await.unwrap() }
    };
    let without = run(String::new()).await;
    assert!(
        !without.passed && without.no_success.is_some(),
        "{without:?}"
    );
    let with = run(format!(
        ", client_cert: '{}', client_key: '{}'",
        cert("client.pem"),
        cert("client.key")
    ))
    .await;
    assert!(with.passed && with.errors == 0, "{:?}", with.error_kinds);
    // Inline PEM works the same.
    let pem = |f: &str| serde_json::to_string(&std::fs::read_to_string(cert(f)).unwrap()).unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  mtls:\n    target: {}\n    duration: 1s\n    users: 1\n    tls: {{ca_pem: {}, client_cert_pem: {}, client_key_pem: {}}}\n",
        server.url(),
        pem("ca.pem"),
        pem("client.pem"),
        pem("client.key")
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert!(
        report.passed && report.errors == 0,
        "{:?}",
        report.error_kinds
    );
}

/// A target that closes the connection after each answer, so every request
/// opens a new connection and handshakes again.
fn closing_target() -> TargetServer {
    TargetServer::start(Behavior {
        tls: Some(TargetTls::default()),
        handler: Some(Handler(Arc::new(|_| TargetReply {
            status: 200,
            headers: vec![("Connection".into(), "close".into())],
            body: "bye".into(),
        }))),
        ..Behavior::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_by_default_and_a_switch_forces_full_handshakes() {
    for resumption in [true, false] {
        let server = closing_target();
        let (name, s) = scenario(&format!(
            "load_tests:\n  resume:\n    target: {}\n    duration: 1s\n    users: 2\n    tls: {{ca_file: '{}', session_resumption: {resumption}}}\n",
            server.url(),
            cert("ca.pem")
        ));
        let report = start(&name, &s).await.unwrap().report().await.unwrap();
        assert_eq!(report.errors, 0, "{:?}", report.error_kinds);
        let p = &report.phases;
        assert!(p.tls_handshakes >= 10, "{p:?}");
        assert_eq!(p.tls_handshakes, p.connections_opened);
        if resumption {
            // All but the first handshake of each user can resume.
            assert!(p.tls_resumed * 10 >= p.tls_handshakes * 8, "{p:?}");
            assert!(server.resumed_handshakes() > 0);
        } else {
            assert_eq!(p.tls_resumed, 0, "{p:?}");
            assert_eq!(server.resumed_handshakes(), 0);
            assert!(!report.tls.as_ref().unwrap().session_resumption);
        }
    }
}

#[test]
fn tls_settings_are_checked_where_they_enter_and_files_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "SECRET-CONTENT not a certificate\n").unwrap();
    let g = garbage.to_string_lossy().into_owned();
    let cases = [
        (format!("{{ca_file: '{g}'}}"), "tls.ca_file"),
        ("{ca_file: /no/such/file.pem}".to_owned(), "tls.ca_file"),
        ("{ca_file: /dev/zero}".to_owned(), "tls.ca_file"),
        (
            format!("{{client_cert: '{}'}}", cert("client.pem")),
            "tls.client_cert",
        ),
        (
            format!(
                "{{client_cert: '{}', client_key: '{g}'}}",
                cert("client.pem")
            ),
            "tls.client_key",
        ),
        (
            format!(
                "{{client_cert: '{}', client_key: '{}'}}",
                cert("client.pem"),
                cert("server.key")
            ),
            "tls.client_key",
        ),
        (format!("{{ca_file: '{g}', ca_pem: x}}"), "tls.ca_file"),
        ("{server_name: 'not a name'}".to_owned(), "tls.server_name"),
    ];
    for (tls, key) in cases {
        let (name, s) = scenario(&format!(
            "load_tests:\n  t:\n    target: https://127.0.0.1:1\n    duration: 1s\n    users: 1\n    tls: {tls}\n"
        ));
        let msg = check(&name, &s).unwrap_err().to_string();
        assert!(msg.contains(key) && msg.contains("\"t\""), "{tls}: {msg}");
        assert!(!msg.contains("SECRET"), "{msg}");
    }
    // Unknown keys are refused by the schema.
    assert!(
        ScenarioFile::from_yaml(
            "load_tests:\n  t: {target: 'https://h', duration: 1s, users: 1, tls: {verify: false}}\n"
        )
        .is_err()
    );
    // Through a service no TLS file is read, not even in its feeds directory
    // (where a caller could otherwise also name a key as data): inline PEM only.
    let (name, s) = scenario(&format!(
        "load_tests:\n  t:\n    target: https://127.0.0.1:1\n    duration: 1s\n    users: 1\n    tls: {{ca_file: '{}'}}\n",
        cert("ca.pem")
    ));
    for access in [
        FeedAccess::InlineOnly,
        FeedAccess::Within(testkit::certs::path("")),
    ] {
        let msg = check_with(&name, &s, &access).unwrap_err().to_string();
        assert!(
            msg.contains("tls.ca_file")
                && msg.contains("no TLS file paths")
                && msg.contains("tls.ca_pem"),
            "{msg}"
        );
    }
    // A key in a feeds directory cannot be read out as data either.
    let (name, s) = scenario(
        "load_tests:\n  t:\n    target: http://127.0.0.1:1\n    duration: 1s\n    users: 1\n    data: {file: client.key}\n    requests: [{path: /, body: '${x}'}]\n",
    );
    let msg = check_with(&name, &s, &FeedAccess::Within(testkit::certs::path("")))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("PEM") && !msg.contains("BEGIN"), "{msg}");
    // Plain http ignores the tls block's files entirely.
    let (name, s) = scenario(
        "load_tests:\n  t:\n    target: http://127.0.0.1:1\n    duration: 1s\n    users: 1\n    tls: {ca_file: /no/such}\n",
    );
    assert!(check(&name, &s).is_ok());
}
