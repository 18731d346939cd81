//! User journeys over real sockets: login → token → authorized calls,
//! checks, captures, cookies, per-step figures (testkit's routed target).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use perf_loadgen::{ScenarioFile, check, start};
use testkit::target::{Behavior, Handler, TargetReply, TargetRequest, TargetServer};

fn scenario(yaml: &str) -> (String, perf_loadgen::Scenario) {
    let file = ScenarioFile::from_yaml(yaml).unwrap();
    file.load_tests.into_iter().next().unwrap()
}

/// A shop: `POST /login` answers `{"token": "tok-<user>"}` and sets the
/// cookie `sid=s-<user>`; `GET /cart` needs both, and answers `{"items": N}`.
fn shop(items: u64, logins: Arc<AtomicU64>) -> TargetServer {
    let reply = |status: u16, body: String| TargetReply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body,
    };
    let handler = move |r: &TargetRequest| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/login") => {
            logins.fetch_add(1, Ordering::Relaxed);
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let user = body["user"].as_str().unwrap_or("nobody").to_owned();
            let mut ok = reply(
                200,
                format!(r#"{{"token": "tok-{user}", "user": {{"name": "{user}"}}}}"#),
            );
            ok.headers.push((
                "Set-Cookie".into(),
                format!("sid=s-{user}; Path=/; HttpOnly"),
            ));
            ok
        }
        ("GET", path) if path.starts_with("/cart") => {
            let auth = r.header("authorization").unwrap_or_default();
            let cookie = r.header("cookie").unwrap_or_default();
            let user = auth.strip_prefix("Bearer tok-").unwrap_or("");
            if user.is_empty() || cookie != format!("sid=s-{user}") {
                return reply(401, r#"{"error": "login first"}"#.into());
            }
            reply(200, format!(r#"{{"items": {items}, "owner": "{user}"}}"#))
        }
        _ => reply(404, "{}".into()),
    };
    TargetServer::start(Behavior {
        handler: Some(Handler(Arc::new(handler))),
        ..Behavior::default()
    })
    .unwrap()
}

fn journey(url: &str, extra_step: &str, on_failure: &str) -> String {
    format!(
        r#"load_tests:
  shop:
    target: {url}
    duration: 2s
    users: 4
    data: {{csv: "user\nann\nbob\ncid\ndan\n", mode: per_user}}
    thresholds: ["checks > 0.99"]
    flows:
      - name: buyer
        on_check_failure: {on_failure}
        steps:
          - name: login
            method: POST
            path: /login
            body: '{{"user": "${{user}}"}}'
            once: true
            checks:
              - {{status: 200}}
              - {{json: /token}}
              - {{header: content-type, equals: application/json}}
            captures:
              - {{var: token, json: /token}}
              - {{var: name, regex: '"name": "([a-z]+)"'}}
          - name: cart
            path: /cart?u=${{name}}
            headers: {{Authorization: 'Bearer ${{token}}'}}
            checks:
              - {{status: [200]}}
              - {{json: /items, equals: 3}}
              - {{body_contains: owner}}
              - {{max_latency: 1s}}
{extra_step}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_captured_once_per_user_authorizes_every_later_call() {
    let logins = Arc::new(AtomicU64::new(0));
    let server = shop(3, Arc::clone(&logins));
    let (name, s) = scenario(&journey(&server.url(), "", "continue"));
    let plan = check(&name, &s).unwrap();
    assert!(plan.contains("login, cart"), "{plan}");
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    // Once per user: four logins, whatever the iterations.
    assert_eq!(logins.load(Ordering::Relaxed), 4);
    assert_eq!(report.per_request["login"].requests, 4);
    let carts = report.per_request["cart"].requests;
    assert!(carts > 50, "{carts}");
    assert_eq!(report.errors, 0, "{:?}", report.status_codes);
    // Per-step latency figures.
    assert!(report.per_request["cart"].latency_ms.p50 > 0.0);
    // Every check held, with its own count.
    for (label, c) in &report.checks {
        assert_eq!(c.fails, 0, "{label}: {c:?}");
        assert!((c.pass_rate - 1.0).abs() < 1e-9);
    }
    assert_eq!(report.checks["login: status in [200]"].passes, 4);
    assert_eq!(report.checks["login: capture token"].passes, 4);
    assert_eq!(report.checks["cart: json /items = 3"].passes, carts);
    assert_eq!(report.flows["buyer"].iterations, carts);
    assert_eq!(report.flows["buyer"].aborted, 0);
    assert!(report.passed, "{:?}", report.thresholds);
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["checks"]["cart: body contains \"owner\""]["pass_rate"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_body_fails_its_check_with_the_right_counts() {
    let logins = Arc::new(AtomicU64::new(0));
    let server = shop(2, Arc::clone(&logins));
    let (name, s) = scenario(&journey(&server.url(), "", "continue"));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    let carts = report.per_request["cart"].requests;
    let wrong = report.checks["cart: json /items = 3"];
    assert_eq!((wrong.passes, wrong.fails), (0, carts));
    // The other checks of the step still hold: counted one by one.
    assert_eq!(report.checks["cart: status in [200]"].fails, 0);
    assert_eq!(report.checks["cart: status in [200]"].passes, carts);
    // HTTP-wise nothing failed; the checks threshold fails the run.
    assert_eq!(report.errors, 0);
    assert!(!report.passed);
    let t = &report.thresholds[0];
    assert!(!t.passed && t.observed < 0.99, "{t:?}");

    // abort_iteration: the step after a failed check never runs.
    let extra = "          - {name: checkout, method: POST, path: /cart/checkout}\n";
    let (name, s) = scenario(&journey(&server.url(), extra, "abort_iteration"));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.per_request["checkout"].requests, 0);
    let flows = report.flows["buyer"];
    assert!(
        flows.aborted > 0 && flows.aborted == flows.iterations,
        "{flows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journeys_run_in_the_open_model_and_checks_work_on_a_plain_mix() {
    let logins = Arc::new(AtomicU64::new(0));
    let server = shop(3, Arc::clone(&logins));
    let yaml = journey(&server.url(), "", "continue")
        .replace("users: 4", "rate: 200/s")
        .replace("mode: per_user", "mode: sequential");
    let (name, s) = scenario(&yaml);
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    assert_eq!(report.model, "open");
    // User states are reused between arrivals: far fewer logins than iterations.
    let iterations = report.flows["buyer"].iterations;
    assert!(iterations > 200, "{iterations}");
    assert!(
        logins.load(Ordering::Relaxed) * 4 < iterations,
        "{} logins",
        logins.load(Ordering::Relaxed)
    );
    assert!(
        report.checks.values().all(|c| c.fails == 0),
        "{:?}",
        report.checks
    );

    // A request of a plain mix with checks.
    let plain = TargetServer::start(Behavior::default()).unwrap();
    let (name, s) = scenario(&format!(
        "load_tests:\n  plain:\n    target: {}\n    duration: 1s\n    users: 2\n    requests:\n      - {{path: /, checks: [{{body_contains: hello}}, {{body_regex: '^h.l+o$'}}, {{status: 201}}]}}\n",
        plain.url()
    ));
    let report = start(&name, &s).await.unwrap().report().await.unwrap();
    let n = report.requests;
    assert_eq!(report.checks["GET /: body contains \"hello\""].passes, n);
    assert_eq!(report.checks["GET /: body matches \"^h.l+o$\""].passes, n);
    assert_eq!(report.checks["GET /: status in [201]"].fails, n);
}

#[test]
fn journey_keys_are_checked_where_they_enter() {
    let base =
        "load_tests:\n  j:\n    target: http://127.0.0.1:1\n    duration: 1s\n    users: 1\n";
    let cases = [
        ("    flows: [{steps: []}]\n", "flows[0].steps"),
        (
            "    flows: [{steps: [{path: /, checks: [{}]}]}]\n",
            "flows[0].steps[0].checks[0]",
        ),
        (
            "    flows: [{steps: [{path: /, checks: [{status: 200, json: /a}]}]}]\n",
            "flows[0].steps[0].checks[0]",
        ),
        (
            "    flows: [{steps: [{path: /, checks: [{body_regex: '(unclosed'}]}]}]\n",
            "flows[0].steps[0].checks[0].body_regex",
        ),
        (
            "    flows: [{steps: [{path: /, checks: [{body_regex: 'a{1000}{1000}'}]}]}]\n",
            "flows[0].steps[0].checks[0].body_regex",
        ),
        (
            "    flows: [{steps: [{path: /, checks: [{status: 99}]}]}]\n",
            "flows[0].steps[0].checks[0].status",
        ),
        (
            "    flows: [{steps: [{path: /, checks: [{body_contains: x, equals: 1}]}]}]\n",
            "flows[0].steps[0].checks[0].equals",
        ),
        (
            "    flows: [{steps: [{path: /, captures: [{var: '1x', json: /a}]}]}]\n",
            "flows[0].steps[0].captures[0].var",
        ),
        (
            "    flows: [{steps: [{path: /, captures: [{var: x}]}]}]\n",
            "flows[0].steps[0].captures[0]",
        ),
        (
            "    flows: [{steps: [{path: /, headers: {Connection: close}}]}]\n",
            "flows[0].steps[0].headers",
        ),
        ("    flows: [{weight: 0, steps: [{path: /}]}]\n", "flows"),
        (
            "    requests: [{path: /}]\n    flows: [{steps: [{path: /}]}]\n",
            "flows",
        ),
        ("    flows: [{steps: [{path: '/${nope}'}]}]\n", "${nope}"),
    ];
    for (extra, key) in cases {
        let yaml = format!("{base}{extra}");
        let err = match ScenarioFile::from_yaml(&yaml) {
            Err(e) => e.to_string(),
            Ok(file) => {
                let (name, s) = file.load_tests.into_iter().next().unwrap();
                check(&name, &s).unwrap_err().to_string()
            }
        };
        assert!(err.contains(key), "{extra}: {err}");
    }
    // Too many steps in all.
    let steps = "{path: /}, ".repeat(101);
    let err = ScenarioFile::from_yaml(&format!("{base}    flows: [{{steps: [{steps}]}}]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 100 steps"), "{err}");
    // A threshold over checks that can never fail is named by --check.
    let (name, s) = scenario(&format!(
        "{base}    thresholds: ['checks >= 0']\n    flows: [{{steps: [{{path: /}}]}}]\n"
    ));
    assert!(check(&name, &s).unwrap().contains("can never fail"));
}
