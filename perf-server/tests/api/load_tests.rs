//! Load tests through the API: runs, presets, the queue, scenario files, comparisons, trends, simulations.

use super::*;

#[actix_web::test]
async fn a_load_test_runs_through_the_api_and_its_results_are_kept() {
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let (svc, _dir) = service(None).await;
    let body = json!({"name": "smoke", "target": target.url(), "duration": "1s", "users": 3, "think_time": "20ms", "thresholds": ["p95 < 1s"]});
    let resp = test::call_service(&svc, post_json("/performance/tests", &body)).await;
    assert_eq!(resp.status(), 202);
    let location = header(&resp, "location");
    let (_, accepted) = json_of(resp).await;
    assert!(
        accepted["status"] == "running" || accepted["status"] == "queued",
        "{accepted}"
    );
    let done = wait_for_status(&svc, &location, "completed").await;
    assert_eq!(done["passed"], true, "{done}");
    assert!(
        done["progress"]["requests"].as_u64().unwrap() > 10,
        "{done}"
    );

    let (status, report) = get_json(&svc, &format!("{location}/results")).await;
    assert_eq!(status, 200);
    assert!(report["requests"].as_u64().unwrap() > 10);
    assert_eq!(report["scenario"], "smoke");
    // A finished test is read from the store once, then from the cache,
    // whose counters reach Prometheus.
    let resp = test::call_service(&svc, TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    let hits = text
        .lines()
        .find(|l| l.starts_with("perf_cache_hits_total{cache=\"finished_tests\"}"))
        .unwrap_or_else(|| panic!("no cache counters in {text}"));
    assert!(
        hits.rsplit(' ').next().unwrap().parse::<f64>().unwrap() >= 1.0,
        "{hits}"
    );
    assert!(text.contains("memory_pressure "), "{text}");
    assert!(text.contains("memory_leak_suspected "), "{text}");
    // The finished test feeds the capacity advice.
    let (_, advice) = get_json(&svc, "/performance/recommendations?target_rps=1000").await;
    assert!(
        advice["sources"]["capacity"]
            .as_str()
            .unwrap()
            .starts_with("from load test"),
        "{advice}"
    );
    let capacity = advice["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "capacity")
        .unwrap_or_else(|| panic!("{advice}"));
    assert!(
        capacity["evidence"]["knee_rps"].as_f64().unwrap() > 0.0,
        "{capacity}"
    );
    let resp = test::call_service(
        &svc,
        TestRequest::get()
            .uri(&format!("{location}/results?format=csv"))
            .to_request(),
    )
    .await;
    assert!(header(&resp, "content-type").starts_with("text/csv"));
    assert!(
        String::from_utf8(test::read_body(resp).await.to_vec())
            .unwrap()
            .starts_with("t_s,")
    );
    let resp = test::call_service(
        &svc,
        TestRequest::get()
            .uri(&format!("{location}/results"))
            .insert_header(("accept", "text/html"))
            .to_request(),
    )
    .await;
    assert!(header(&resp, "content-type").starts_with("text/html"));
    let html = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(
        html.contains("<svg")
            && html.contains("Throughput and errors")
            && html.contains("p95 &lt; 1s"),
        "{html}"
    );
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "self-contained"
    );
    let (status, body) = get_json(&svc, &format!("{location}/results?format=pdf")).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "bad_request", Some("format"));

    let (status, history) = get_json(
        &svc,
        "/performance/tests/history?scenario=smoke&status=completed",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "{history}");
    let (_, none) = get_json(&svc, "/performance/tests/history?scenario=other").await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let (status, body) = get_json(&svc, "/performance/tests/history?status=sleeping").await;
    assert_eq!(status, 400);
    assert_error(&body, "bad_request", Some("status"));

    let (status, body) = call_json(&svc, TestRequest::delete().uri(&location).to_request()).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = call_json(
        &svc,
        TestRequest::delete()
            .uri("/performance/tests/0190c1d2-7a4b-7c3d-8e9f-0123456789ab")
            .to_request(),
    )
    .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn presets_take_overrides_and_bad_tests_are_refused_naming_the_field() {
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let (svc, _dir) = service(None).await;
    let post = |body: Value| post_json("/performance/tests", body);
    let resp = test::call_service(&svc, post(json!({"preset": "baseline", "target": target.url(), "duration": "1s", "users": 2, "ramp_up": "0s"}))).await;
    assert_eq!(resp.status(), 202);
    let (_, accepted) = json_of(resp).await;
    assert_eq!(accepted["scenario_name"], "baseline");
    // Every preset, as it is, is admitted by a server with the default limits
    // (each is then cancelled).
    for preset in ["baseline", "stress", "spike", "endurance", "volume"] {
        let resp = test::call_service(
            &svc,
            post(json!({"preset": preset, "target": target.url()})),
        )
        .await;
        let status = resp.status();
        let (_, body) = json_of(resp).await;
        assert_eq!(status, 202, "preset {preset}: {body}");
        let id = body["id"].as_str().unwrap();
        let cancel = TestRequest::delete()
            .uri(&format!("/performance/tests/{id}"))
            .to_request();
        let cancelled = test::call_service(&svc, cancel).await;
        assert_eq!(cancelled.status(), 200, "cancelling preset {preset}");
    }

    let cases = [
        (
            json!({"target": target.url(), "duration": "1s", "users": 0}),
            422,
            "users",
        ),
        (
            json!({"target": target.url(), "duration": "1s", "users": 2, "userz": 3}),
            422,
            "userz",
        ),
        (
            json!({"target": target.url(), "duration": "1s", "users": 20000}),
            422,
            "users",
        ),
        (
            json!({"target": target.url(), "duration": "5h", "users": 2}),
            422,
            "duration",
        ),
        (
            json!({"preset": "soak", "target": target.url()}),
            422,
            "preset",
        ),
        (json!({"duration": "1s", "users": 2}), 422, "target"),
        (
            json!({"target": "http://169.254.169.254/latest", "duration": "1s", "users": 2}),
            403,
            "target",
        ),
        (
            json!({"target": "http://10.0.0.1:80", "duration": "1s", "users": 2}),
            403,
            "target",
        ),
    ];
    for (body, status, field) in cases {
        let (got, json) = call_json(&svc, post(body.clone())).await;
        assert_eq!(got.as_u16(), status, "{body}: {json}");
        assert_eq!(json["error"]["field"], field, "{body}: {json}");
    }
}

#[actix_web::test]
async fn tests_beyond_the_limit_queue_and_cancel_keeps_what_was_measured() {
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let (svc, _dir) = service(None).await; // one test at a time
    let long = json!({"target": target.url(), "duration": "10m", "users": 2, "think_time": "10ms"});
    let first = test::call_service(&svc, post_json("/performance/tests", &long)).await;
    let first = header(&first, "location");
    let second = test::call_service(&svc, post_json("/performance/tests", &long)).await;
    let (_, queued) = json_of(second).await;
    assert_eq!(queued["status"], "queued", "{queued}");
    let second = format!("/performance/tests/{}", queued["id"].as_str().unwrap());

    let (status, cancelled) =
        call_json(&svc, TestRequest::delete().uri(&second).to_request()).await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "cancelled");

    wait_for_status(&svc, &first, "running").await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let (status, cancelled) = call_json(&svc, TestRequest::delete().uri(&first).to_request()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let (_, report) = get_json(&svc, &format!("{first}/results")).await;
    assert!(report["requests"].as_u64().unwrap() > 20, "{report}");
    assert_eq!(report["stopped_early"], "cancelled");
}

/// What the console reads besides the tests themselves: a scenario file
/// started as it is written (`scenario_yaml`), one run compared with
/// another, a scenario's p95 over its runs with its level shifts, and a
/// policy replayed over an uploaded trace.
#[actix_web::test]
async fn scenario_files_comparisons_trends_and_simulations_through_the_api() {
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let (svc, _dir) = service(None).await;
    let post = |body: Value| post_json("/performance/tests", body);
    let file = "load_tests:\n  home: {users: 2, duration: 1s, think_time: 20ms, requests: [{path: /}]}\n  other: {users: 1, duration: 1s}\n";
    // Two scenarios and none named: the field says which are there.
    let (status, body) = call_json(
        &svc,
        post(json!({"scenario_yaml": file, "target": target.url()})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "scenario", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("home, other"),
        "{body}"
    );
    // A scenario named by something other than a string.
    let (status, body) = call_json(
        &svc,
        post(json!({"scenario_yaml": file, "scenario": 5, "target": target.url()})),
    )
    .await;
    assert_refused(status, &body, 422, "scenario", None);
    // Not YAML of a scenario file: named too, with the parser's words.
    let (status, body) = call_json(
        &svc,
        post(json!({"scenario_yaml": "load_tests: [1, 2", "target": target.url()})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "scenario_yaml", "{body}");
    let (status, body) = call_json(&svc, post(json!({"scenario_yaml": file, "scenario": "home", "target": target.url(), "preset": "baseline"})))
    .await;
    assert_refused(status, &body, 422, "preset", None);

    // A name of spaces, and aliases that repeat a large value past the body's
    // size: refused, each named.
    let blank = "load_tests:\n  '   ': {users: 1, duration: 1s}\n";
    let (status, body) = call_json(
        &svc,
        post(json!({"scenario_yaml": blank, "target": target.url()})),
    )
    .await;
    assert_refused(status, &body, 422, "scenario", None);
    let big = "A".repeat(200_000);
    let repeated: String = (0..10).map(|_| "      - {path: /, body: *b}\n").collect();
    let aliases = format!(
        "load_tests:\n  s:\n    users: 1\n    duration: 1s\n    requests:\n      - {{path: /, body: &b \"{big}\"}}\n{repeated}"
    );
    let (status, body) = call_json(
        &svc,
        post(json!({"scenario_yaml": aliases, "target": target.url()})),
    )
    .await;
    assert_refused(status, &body, 422, "scenario_yaml", Some("aliases"));

    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, started) = call_json(
            &svc,
            post(json!({"scenario_yaml": file, "scenario": "home", "target": target.url()})),
        )
        .await;
        assert_eq!(status, 202, "{started}");
        assert_eq!(started["scenario_name"], "home");
        let id = started["id"].as_str().unwrap().to_owned();
        wait_for_status(&svc, &format!("/performance/tests/{id}"), "completed").await;
        ids.push(id);
    }
    let get = |uri: String| TestRequest::get().uri(&uri).to_request();
    let (status, cmp) = call_json(
        &svc,
        get(format!(
            "/performance/tests/{}/compare?baseline={}",
            ids[1], ids[0]
        )),
    )
    .await;
    assert_eq!(status, 200, "{cmp}");
    assert!(
        cmp["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["metric"] == "p95"),
        "{cmp}"
    );
    let (status, bad) = call_json(
        &svc,
        get(format!(
            "/performance/tests/{}/compare?baseline=nope",
            ids[1]
        )),
    )
    .await;
    assert_refused(status, &bad, 400, "baseline", None);
    let (status, trend) =
        call_json(&svc, get(format!("/performance/tests/{}/trend", ids[1]))).await;
    assert_eq!(status, 200, "{trend}");
    let runs = trend["trend"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{trend}");
    assert_eq!(runs[1]["id"], ids[1].as_str());
    assert!(runs[0]["p95_ms"].as_f64().unwrap() > 0.0);
    assert!(
        trend["trend"]["change_points"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(trend["comparison"]["metrics"].is_array(), "{trend}");

    // A policy over a trace: the replay, and a bad trace named.
    let policy = json!({"min_replicas": 1, "max_replicas": 10,
        "metrics": [{"name": "rps", "kind": "pods", "target": {"average_value": 100}}]});
    let simulate = |body: Value| post_json("/performance/scaling/simulate", body);
    let (status, report) = call_json(
        &svc,
        simulate(
            json!({"policy": policy, "trace_csv": "t,v\n0,100\n300,900\n600,900\n900,100\n",
                "settings": {"period_s": 15, "startup_s": 30, "request_per_replica": 100}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert!(report["peak_replicas"].as_u64().unwrap() >= 9, "{report}");
    let (status, bad) = call_json(
        &svc,
        simulate(json!({"policy": policy, "trace_csv": "t,v\n"})),
    )
    .await;
    assert_refused(status, &bad, 422, "trace_csv", None);
    let (status, bad) = call_json(
        &svc,
        simulate(
            json!({"policy": policy, "trace_csv": "t,v\n0,1\n60,2\n", "settings": {"period_s": 0}}),
        ),
    )
    .await;
    assert_refused(status, &bad, 422, "period_s", None);
    // More than a request may simulate (a year at 15 s): refused before any work.
    let (status, bad) = call_json(
        &svc,
        simulate(json!({"policy": policy, "trace_csv": "t,v\n0,1\n31536000,2\n"})),
    )
    .await;
    assert_refused(status, &bad, 422, "trace_csv", Some("scaling simulate"));
    // Without a policy in force and none given: said, not guessed.
    let (status, bad) = call_json(&svc, simulate(json!({"trace_csv": "t,v\n0,1\n60,2\n"}))).await;
    assert_refused(status, &bad, 422, "policy", None);
}
